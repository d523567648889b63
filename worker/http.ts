// The worker's HTTP endpoints: /metrics (Prometheus), /healthz (the event loop answers),
// /readyz (every task restored and consuming).
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface HttpEndpoints {
  /** A prom-client Registry, or anything that renders metrics the same way (the pool's merged view). */
  registry: Pick<Registry, 'metrics' | 'contentType'>;
  isReady: () => boolean;
  status?: () => unknown;
}

export async function serveHttp(port: number, host: string, endpoints: HttpEndpoints): Promise<Server> {
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
    } else if (path === '/status' && endpoints.status) {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(endpoints.status()));
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
