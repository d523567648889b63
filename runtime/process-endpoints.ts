// What every Kappa process shows the platform: HTTP for Prometheus (/metrics) and Kubernetes
// probes, plus a few JSON endpoints, and JSON logs. Worker and coordinator share it; only their
// rules differ.
//
// Probe meanings (what a Kubernetes probe may act on):
// - /healthz (liveness): the event loop is responsive. It fails for a while after the event loop
//   was blocked longer than `maxEventLoopDelayMs` (measured by a timer's drift, so a stall
//   between two probes is seen too), or when the process's own liveness rule says why not (a
//   worker's stuck thread). A failing liveness probe restarts the
//   pod, so it must not depend on anything outside the process (NATS, other replicas).
// - /readyz (readiness): the process's own rule (a worker: every assigned task restored and
//   consuming; a coordinator: connected and leading or following a known leader).
//
// /metrics, /healthz and /readyz are always open (Prometheus and the kubelet carry no secrets);
// every other path (the status and query API, /v1/…) wants `Authorization: Bearer <token>` when an
// API token is configured, compared in constant time, and answers 401 otherwise.
//
// No request can end the process: every handler runs inside one guard, bad input (a path that is
// not percent-encoding, a bad query value) answers 400 with a JSON body naming it, an unknown path
// 404, a method other than GET/HEAD 405, and anything unexpected 500 with a JSON body and a log line.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { BadRequestError, ConfigError, KappaError } from '../protocol/index.js';
import type { Logger } from 'pino';
import { createLogger } from './logger.js';

export interface EventLoopLivenessOptions {
  /** A stall longer than this makes /healthz fail (default 5 s). */
  maxEventLoopDelayMs?: number;
  /** How long /healthz keeps failing after such a stall, so a probe period of 10 s sees it (default 30 s). */
  failForMs?: number;
  /** Period of the timer whose drift measures the stalls (default 500 ms). */
  sampleIntervalMs?: number;
}

export interface ProcessEndpoints {
  /** A prom-client Registry, or anything that renders metrics the same way (a worker's merged view). */
  registry: Pick<Registry, 'metrics' | 'contentType'>;
  isReady: () => boolean;
  /** Why the process is not ready (said in the 503 body of /readyz), or undefined. */
  notReadyReason?: () => string | undefined;
  /** A liveness rule beyond the event loop: why the process is not live, or undefined when it is. */
  notLiveReason?: () => string | undefined;
  eventLoop?: EventLoopLivenessOptions;
  /** Extra JSON endpoints: path → body. A body of undefined answers 503 (e.g. a follower's status). */
  json?: Record<string, () => unknown>;
  /**
   * JSON endpoints under a path prefix (e.g. '/v1/views/'), answered asynchronously: the handler
   * gets the rest of the path (percent-decoded) and the query, and returns a status and body. A
   * thrown BadRequestError answers 400, a KappaError with a not-found code 404, anything else 500.
   */
  jsonPrefix?: Record<string, (rest: string, query: URLSearchParams) => Promise<{ status: number; body: unknown }>>;
  /** Where a 500's error is logged (default: a JSON logger on stderr). */
  logger?: Pick<Logger, 'error'>;
  /** When set, every path but /metrics, /healthz and /readyz wants `Authorization: Bearer <apiToken>`. */
  apiToken?: string;
}

/** The paths that never want a token: scrapes and probes. */
const OPEN_PATHS = new Set(['/metrics', '/healthz', '/readyz']);

/**
 * Whether the request carries the API token: `Authorization: Bearer <token>`. Both sides are
 * hashed first, so the comparison takes the same time whatever the length or content of a guess.
 */
export function carriesBearerToken(authorization: string | undefined, token: string): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  if (!match) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(match[1]!), digest(token));
}

/**
 * Watches the event loop through the drift of a timer: a tick that comes later than its
 * interval means the loop was blocked that long. (perf_hooks' monitorEventLoopDelay is not used
 * here: after each reset() it drops its first delay, so a stall right after a read goes unseen;
 * prom-client's nodejs_eventloop_lag_* metrics use it for the long-run picture.)
 */
export class EventLoopLiveness {
  private readonly timer: NodeJS.Timeout;
  private readonly maxDelayMs: number;
  private readonly failForMs: number;
  private readonly intervalMs: number;
  private lastTickMs = performance.now();
  private lastStall: { delayMs: number; atMs: number } | undefined;

  constructor(options: EventLoopLivenessOptions = {}) {
    this.maxDelayMs = options.maxEventLoopDelayMs ?? 5_000;
    this.failForMs = options.failForMs ?? 30_000;
    this.intervalMs = options.sampleIntervalMs ?? 500;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Why the event loop counts as unresponsive, or undefined. */
  notLiveReason(): string | undefined {
    // A probe answered right after a stall may run before the overdue tick: count the gap so far.
    this.record(performance.now() - this.lastTickMs - this.intervalMs);
    const stall = this.lastStall;
    if (stall === undefined || performance.now() - stall.atMs > this.failForMs) return undefined;
    return `event loop blocked for ${Math.round(stall.delayMs)} ms ${Math.round((performance.now() - stall.atMs) / 1000)} s ago (limit ${this.maxDelayMs} ms)`;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const now = performance.now();
    this.record(now - this.lastTickMs - this.intervalMs);
    this.lastTickMs = now;
  }

  private record(delayMs: number): void {
    if (delayMs > this.maxDelayMs) this.lastStall = { delayMs, atMs: performance.now() };
  }
}

export async function serveProcessEndpoints(port: number, host: string, endpoints: ProcessEndpoints): Promise<Server> {
  const eventLoop = new EventLoopLiveness(endpoints.eventLoop);
  const logger = endpoints.logger ?? createLogger({});
  const server = createServer((request, response) => {
    answer(request, response).catch((error: unknown) => fail(response, error));
  });

  async function answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      sendJson(
        response,
        405,
        { error: `method ${request.method} is not allowed: expected GET` },
        { allow: 'GET, HEAD' },
      );
      return;
    }
    const url = parseRequestUrl(request.url ?? '/');
    const path = url.pathname;
    if (
      endpoints.apiToken !== undefined &&
      !OPEN_PATHS.has(path) &&
      !carriesBearerToken(request.headers.authorization, endpoints.apiToken)
    ) {
      sendJson(
        response,
        401,
        { error: `${path.length > 200 ? 'this path' : path} wants 'Authorization: Bearer <token>' with the API token` },
        { 'www-authenticate': 'Bearer realm="kappa"' },
      );
      return;
    }
    const json = endpoints.json?.[path];
    const prefix = Object.keys(endpoints.jsonPrefix ?? {}).find((candidate) => path.startsWith(candidate));
    if (path === '/metrics') {
      const body = await endpoints.registry.metrics();
      response.writeHead(200, { 'content-type': endpoints.registry.contentType }).end(body);
    } else if (path === '/healthz') {
      const reason = eventLoop.notLiveReason() ?? endpoints.notLiveReason?.();
      response
        .writeHead(reason === undefined ? 200 : 503, { 'content-type': 'text/plain' })
        .end(reason === undefined ? 'ok\n' : `not live: ${reason}\n`);
    } else if (path === '/readyz') {
      const reason = endpoints.notReadyReason?.();
      const ready = reason === undefined && endpoints.isReady();
      response
        .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(ready ? 'ready\n' : reason === undefined ? 'not ready\n' : `not ready: ${reason}\n`);
    } else if (json) {
      const body = json();
      sendJson(
        response,
        body === undefined ? 503 : 200,
        body ?? { error: 'not available on this process (is it the leader?)' },
      );
    } else if (prefix !== undefined) {
      const { status, body } = await endpoints.jsonPrefix![prefix]!(
        decodePathSegment(path.slice(prefix.length)),
        url.searchParams,
      );
      sendJson(response, status, body);
    } else {
      sendJson(response, 404, {
        error: `no endpoint at ${JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path)}`,
      });
    }
  }

  function fail(response: ServerResponse, error: unknown): void {
    const code = error instanceof KappaError ? error.code : undefined;
    const status = error instanceof BadRequestError ? 400 : code?.endsWith('NOT_FOUND') ? 404 : 500;
    if (status === 500) logger.error({ err: error }, 'HTTP request failed');
    const message = error instanceof Error ? error.message : String(error);
    if (response.headersSent) {
      response.destroy();
      return;
    }
    sendJson(response, status, { error: message, ...(code !== undefined ? { code } : {}) });
  }

  server.on('close', () => eventLoop.close());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      eventLoop.close();
      reject(listenError(error, port, host));
    });
    server.listen(port, host, () => resolve());
  });
  return server;
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

/** The request target as a URL; one that is not a path (`//`, `//[`) is the client's mistake, a 400. */
function parseRequestUrl(target: string): URL {
  try {
    return new URL(target, 'http://localhost');
  } catch {
    throw new BadRequestError(
      `request target ${JSON.stringify(target.length > 80 ? `${target.slice(0, 80)}…` : target)} is not a path`,
    );
  }
}

/** A path segment's text; a malformed percent-encoding (`%E0%A4%A`) is the client's mistake, a 400. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequestError(
      `path segment ${JSON.stringify(segment.length > 80 ? `${segment.slice(0, 80)}…` : segment)} is not valid percent-encoded UTF-8`,
    );
  }
}

/**
 * Why the HTTP port could not be served, as a one-line ConfigError (exit 2) naming the setting:
 * another process (often a second replica on the same host) holds the port, or it needs privileges.
 */
function listenError(error: NodeJS.ErrnoException, port: number, host: string): Error {
  const where = `${host}:${port}`;
  const fix = 'choose another with --http-port or KAPPA_HTTP_PORT (0 picks a free port)';
  switch (error.code) {
    case 'EADDRINUSE':
      return new ConfigError(`cannot serve HTTP on ${where}: the port is already in use by another process; ${fix}`, {
        cause: error,
      });
    case 'EACCES':
      return new ConfigError(
        `cannot serve HTTP on ${where}: permission denied (ports below 1024 need privileges); ${fix}`,
        { cause: error },
      );
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new ConfigError(
        `cannot serve HTTP on ${where}: the address ${host} is not one of this host's; choose another with --http-host or KAPPA_HTTP_HOST`,
        { cause: error },
      );
    default:
      return error;
  }
}

/**
 * Runs the rest of a process's start-up once its endpoints are served (they go first, so a port in
 * use fails at once). If start-up fails the server is closed, so that it does not keep a process
 * that never started alive, and the error goes on to the command's exit code.
 */
export async function startBehindEndpoints<T>(server: Server, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    server.closeAllConnections();
    server.close();
    throw error;
  }
}

/** The port a server listens on (the real one when it was started on port 0). */
export function listeningPort(server: Server, fallback: number): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : fallback;
}
