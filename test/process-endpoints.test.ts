// The probe endpoints every process serves (protocol/process-endpoints.ts): /healthz fails after
// the event loop was blocked beyond the limit, then recovers; a process's own liveness and
// readiness rules decide the rest. With real processes: no malformed request ends a coordinator
// (4xx with a reason, and it keeps serving), a view lists any table page by page, and a port
// already in use ends a coordinator or worker at once with exit code 2 and one line.
import { mkdtempSync } from 'node:fs';
import { request as httpRequest, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { servingTableRowKey, type ServingTableRow } from '../protocol/index.js';
import { listeningPort, serveProcessEndpoints } from '../runtime/index.js';
import { AliasRegistry, DEFAULT_PAGE_ROWS, KvTables } from '../tables/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { useNatsServer } from './harness/use-nats.js';

const JOB = fileURLToPath(new URL('../examples/clicks-per-window.mjs', import.meta.url));

let server: Server | undefined;
afterEach(() => {
  server?.close();
  server = undefined;
});

function blockEventLoop(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: nothing else runs on this thread meanwhile
  }
}

it('fails /healthz for a while after the event loop was blocked longer than the limit', async () => {
  server = await serveProcessEndpoints(0, '127.0.0.1', {
    registry: new Registry(),
    isReady: () => true,
    eventLoop: { maxEventLoopDelayMs: 200, failForMs: 1_000, sampleIntervalMs: 50 },
  });
  const url = `http://127.0.0.1:${listeningPort(server, 0)}/healthz`;
  expect((await fetch(url)).status).toBe(200);

  blockEventLoop(500);
  const stalled = await fetch(url);
  expect(stalled.status).toBe(503);
  expect(await stalled.text()).toMatch(/event loop blocked for \d+ ms/);

  await sleep(1_200);
  expect((await fetch(url)).status).toBe(200);
});

it('serves the process’s own liveness and readiness rules', async () => {
  let ready = false;
  let stuck: string | undefined = 'task host thread 1 silent for 61 s (limit 60 s)';
  server = await serveProcessEndpoints(0, '127.0.0.1', {
    registry: new Registry(),
    isReady: () => ready,
    notLiveReason: () => stuck,
  });
  const base = `http://127.0.0.1:${listeningPort(server, 0)}`;
  const health = await fetch(`${base}/healthz`);
  expect(health.status).toBe(503);
  expect(await health.text()).toContain('task host thread 1 silent');
  expect((await fetch(`${base}/readyz`)).status).toBe(503);
  ready = true;
  stuck = undefined;
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
  expect((await fetch(`${base}/readyz`)).status).toBe(200);
});

describe('a real coordinator process', () => {
  const nats = useNatsServer();
  let coordinator: KappaProcess | undefined;
  let base = '';
  beforeAll(async () => {
    coordinator = new KappaProcess([
      'coordinator',
      '--nats',
      nats.url,
      '--http-port',
      '0',
      '--http-host',
      '127.0.0.1',
      '--id',
      'http-test',
    ]);
    const [, port] = await coordinator.waitForLog(/"httpPort":(\d+)/);
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await coordinator?.stop();
  });

  it('answers every malformed request with a 4xx and a reason, and keeps serving', async () => {
    const port = Number(new URL(base).port);
    const cases: Array<[method: string, path: string, status: number]> = [
      ['GET', '/v1/views/%E0%A4%A', 400], // what once ended the process: decodeURIComponent threw outside any handler
      ['GET', '/v1/views/%FF%FE', 400],
      ['GET', '/v1/views/%', 400],
      ['GET', '/v1/views/a%2Fb', 400],
      ['GET', '/v1/views/a.b', 400],
      ['GET', `/v1/views/${'j'.repeat(8_000)}`, 400],
      ['GET', `/${'x'.repeat(20_000)}`, 431], // past Node's header limit: answered by the HTTP parser itself
      ['GET', '//', 400],
      ['GET', '/nothing/here', 404],
      ['GET', '/v1/views/', 400],
      ['GET', '/v1/views/clicks?limit=abc', 400],
      ['GET', '/v1/views/clicks?limit=0', 400],
      ['GET', '/v1/views/clicks?limit=-5', 400],
      ['GET', '/v1/views/clicks?limit=1001', 400],
      ['GET', '/v1/views/clicks?limit=1e3', 400],
      ['GET', '/v1/views/clicks?after=%ZZ', 400],
      ['GET', '/v1/views/clicks?after=a..b', 400],
      ['GET', '/v1/views/clicks?key=', 400],
      ['GET', `/v1/views/clicks?key=${'k'.repeat(2_000)}`, 400],
      ['GET', '/v1/views/clicks?key=a&key=b', 400],
      ['GET', '/v1/views/clicks?key=a&limit=5', 400],
      ['GET', '/v1/views/clicks?version=v.1', 400],
      ['GET', '/v1/views/clicks?verison=v1', 400],
      ['GET', '/v1/views/clicks', 404], // a good request for a job with no table: not found, not a crash
      ['POST', '/v1/status', 405],
      ['DELETE', '/v1/views/clicks', 405],
    ];
    for (const [method, path, status] of cases) {
      const answer = await rawRequest(port, method, path);
      expect({ method, path: path.slice(0, 60), status: answer.status }).toEqual({
        method,
        path: path.slice(0, 60),
        status,
      });
      if (status !== 431) expect(JSON.parse(answer.body)).toMatchObject({ error: expect.any(String) });
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(coordinator!.child.exitCode).toBeNull();
    // 4xx are the client's mistakes: none was logged as a failure.
    expect(coordinator!.logs).not.toMatch(/HTTP request failed/);
  });

  it('lists a table of more rows than a page completely and in order, page by page, over HTTP and in `kappa view`', async () => {
    const job = 'paged';
    const tables = new KvTables(nats.nc);
    const writer = await tables.writer(job, 'v1');
    const outputs = Array.from({ length: 2_345 }, (_, index) => ({
      key: index % 5 === 0 ? `user ${index}/é` : `user-${index}`,
      ...(index % 2 === 0 ? { window: { start: index * 1000, end: index * 1000 + 1000 } } : {}),
      value: { n: index },
      revision: 1,
      kind: 'update' as const,
    }));
    await writer.write(outputs);
    await (await AliasRegistry.open(nats.nc)).set(job, 'v1', 'kv');
    const rowKey = (row: { key: string; start?: number; end?: number }) =>
      servingTableRowKey(row.key, row.start === undefined ? undefined : { start: row.start, end: row.end! });
    const expected = outputs
      .map((output) => ({
        key: output.key,
        ...(output.window ? { start: output.window.start, end: output.window.end } : {}),
        value: output.value,
      }))
      .sort((a, b) => (rowKey(a) < rowKey(b) ? -1 : 1));

    for (const limit of [undefined, 1000]) {
      const rows: unknown[] = [];
      let after: string | undefined;
      let pages = 0;
      do {
        const query = new URLSearchParams({ ...(limit ? { limit: String(limit) } : {}), ...(after ? { after } : {}) });
        const response = await fetch(`${base}/v1/views/${job}?${query}`);
        expect(response.status).toBe(200);
        const page = (await response.json()) as { version: string; rows: ServingTableRow[]; next?: string };
        expect(page.version).toBe('v1');
        expect(page.rows.length).toBeLessThanOrEqual(limit ?? DEFAULT_PAGE_ROWS);
        rows.push(...page.rows.map(({ revision: _revision, ...row }) => row));
        after = page.next;
        pages++;
      } while (after !== undefined);
      expect(pages).toBe(Math.ceil(outputs.length / (limit ?? DEFAULT_PAGE_ROWS)));
      expect(rows).toEqual(expected);
    }

    const viewed = await kappa(['view', job, '--json', '--nats', nats.url]);
    expect(viewed.code, viewed.stderr).toBe(0);
    expect(
      viewed.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as unknown),
    ).toEqual(expected);
  });
});

describe('a port already in use', () => {
  const nats = useNatsServer();
  let occupier: NetServer | undefined;
  let port = 0;
  beforeAll(async () => {
    occupier = createNetServer();
    await new Promise<void>((resolve) => occupier!.listen(0, '127.0.0.1', resolve));
    port = (occupier.address() as AddressInfo).port;
  });
  afterAll(async () => {
    occupier?.close();
  });

  it.each([
    ['coordinator', () => ['coordinator', '--nats', nats.url, '--http-host', '127.0.0.1', '--http-port', String(port)]],
    [
      'worker',
      () => [
        'worker',
        '--job',
        JOB,
        '--nats',
        nats.url,
        '--http-host',
        '127.0.0.1',
        '--http-port',
        String(port),
        '--threads',
        '1',
      ],
    ],
    [
      'standalone worker',
      () => [
        'worker',
        '--standalone',
        '--job',
        JOB,
        '--nats',
        nats.url,
        '--http-host',
        '127.0.0.1',
        '--http-port',
        String(port),
      ],
    ],
  ])('ends a %s at once with exit code 2 and one line naming --http-port, no stack', async (_name, args) => {
    const started = Date.now();
    const child = new KappaProcess(args(), { KAPPA_STATE_DIR: mkdtempSync(join(tmpdir(), 'kappa-port-')) });
    let stderr = '';
    child.child.stderr!.on('data', (chunk) => (stderr += chunk));
    const code = await Promise.race([
      new Promise<number | null>((resolve) => child.child.once('exit', (exitCode) => resolve(exitCode))),
      sleep(10_000).then(() => 'still running'),
    ]);
    await child.kill();
    expect(code).toBe(2);
    expect(Date.now() - started).toBeLessThan(10_000);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^kappa: cannot serve HTTP on 127\\.0\\.0\\.1:${port}: the port is already in use .*--http-port.*0 picks a free port`,
      ),
    );
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});

/** One request with its path exactly as given (fetch would normalize it), its status and body. */
function rawRequest(port: number, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, method, path, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
    request.end();
  });
}
