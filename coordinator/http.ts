// The coordinator's HTTP endpoints: /metrics (Prometheus), /healthz (the event loop answers),
// /readyz (connected, and leading with state loaded or following), /v1/status (the status reply).
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface CoordinatorEndpoints {
  registry: Registry;
  isReady: () => boolean;
  /** The cluster status, or undefined on a follower (which answers 503 and names no leader). */
  status: () => unknown;
}

export async function serveCoordinatorHttp(port: number, host: string, endpoints: CoordinatorEndpoints): Promise<Server> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      endpoints.registry.metrics().then(
        (body) => response.writeHead(200, { 'content-type': endpoints.registry.contentType }).end(body),
        (error: Error) => response.writeHead(500).end(error.message),
      );
    } else if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = endpoints.isReady();
      response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else if (path === '/v1/status') {
      const status = endpoints.status();
      if (status === undefined) {
        response.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'this coordinator is not the leader' }));
      } else {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status));
      }
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
