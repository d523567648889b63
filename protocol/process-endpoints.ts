// What every Kappa process shows the platform: HTTP for Prometheus (/metrics) and Kubernetes
// probes (/healthz: the event loop answers; /readyz: the process's own readiness rule), plus a
// few JSON endpoints, and JSON logs. Worker and coordinator share it; only their rules differ.
import { createServer, type Server } from 'node:http';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';

export interface ProcessEndpoints {
  /** A prom-client Registry, or anything that renders metrics the same way (a worker's merged view). */
  registry: Pick<Registry, 'metrics' | 'contentType'>;
  isReady: () => boolean;
  /** Extra JSON endpoints: path → body. A body of undefined answers 503 (e.g. a follower's status). */
  json?: Record<string, () => unknown>;
}

export async function serveProcessEndpoints(port: number, host: string, endpoints: ProcessEndpoints): Promise<Server> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0]!;
    const json = endpoints.json?.[path];
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
    } else if (json) {
      const body = json();
      response
        .writeHead(body === undefined ? 503 : 200, { 'content-type': 'application/json' })
        .end(JSON.stringify(body ?? { error: 'not available on this process (is it the leader?)' }));
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

/** The port a server listens on (the real one when it was started on port 0). */
export function listeningPort(server: Server, fallback: number): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : fallback;
}

/** Structured JSON logs on stderr (stdout stays free for command output). */
export function createLogger(fields: Record<string, unknown>, level = process.env.KAPPA_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid, ...fields } }, pino.destination(2));
}
