// The HTTP API token: a real `kappa coordinator` and `kappa worker`, each given the token (a file
// for the coordinator, the environment for the worker). /metrics, /healthz and /readyz stay open
// for Prometheus and the kubelet; the status and query API (/v1/status, /v1/views/<job>, the
// worker's /status) answers 401 without `Authorization: Bearer <token>` or with a wrong one.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { carriesBearerToken } from '../runtime/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const TOKEN = 'k4ppa-api-token-0123456789abcdef';
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

describe('carriesBearerToken', () => {
  it('takes only the exact token after Bearer (any case of the scheme)', () => {
    expect(carriesBearerToken(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(carriesBearerToken(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(carriesBearerToken(undefined, TOKEN)).toBe(false);
    expect(carriesBearerToken('Bearer', TOKEN)).toBe(false);
    expect(carriesBearerToken(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(carriesBearerToken(`Bearer ${TOKEN.slice(0, -1)}`, TOKEN)).toBe(false);
    expect(carriesBearerToken(`Basic ${TOKEN}`, TOKEN)).toBe(false);
    expect(carriesBearerToken(`Bearer ${TOKEN} extra`, TOKEN)).toBe(false);
  });
});

describe('a coordinator and a worker with an API token', () => {
  const nats = useNatsServer();
  let dir: string;
  let coordinatorUrl: string;
  let workerUrl: string;
  const processes: KappaProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kappa-api-token-'));
    const tokenFile = join(dir, 'api-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const coordinator = new KappaProcess(
      ['coordinator', '--id', 'c1', '--nats', nats.url, '--http-port', '0', '--api-token-file', tokenFile],
      { KAPPA_API_TOKEN: undefined, KAPPA_API_TOKEN_FILE: undefined, KAPPA_CONFIG: undefined },
    );
    const worker = new KappaProcess(
      ['worker', '--job', JOB, '--id', 'w1', '--threads', '1', '--nats', nats.url, '--http-port', '0'],
      { KAPPA_API_TOKEN: TOKEN, KAPPA_STATE_DIR: join(dir, 'w1'), KAPPA_CONFIG: undefined },
    );
    processes.push(coordinator, worker);
    coordinatorUrl = `http://127.0.0.1:${(await coordinator.waitForLog(/"httpPort":(\d+)/))[1]}`;
    workerUrl = `http://127.0.0.1:${(await worker.waitForLog(/"httpPort":(\d+)/))[1]}`;
    await coordinator.waitForLog(/leading/, 30_000);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(processes.map((process) => process.kill()));
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (url: string, authorization?: string) =>
    fetch(url, authorization === undefined ? {} : { headers: { authorization } });

  it('keeps /metrics, /healthz and /readyz open without a token', async () => {
    for (const base of [coordinatorUrl, workerUrl]) {
      expect((await get(`${base}/metrics`)).status).toBe(200);
      expect((await get(`${base}/healthz`)).status).toBe(200);
      await pollUntil(async () => ((await get(`${base}/readyz`)).status === 200 ? true : undefined), {
        what: `${base}/readyz without a token`,
        timeoutMs: 30_000,
      });
    }
  });

  it('answers 401 on the status and query API without the token or with a wrong one, and serves it with the token', async () => {
    for (const url of [`${coordinatorUrl}/v1/status`, `${coordinatorUrl}/v1/views/clicks`, `${workerUrl}/status`]) {
      for (const authorization of [undefined, 'Bearer wrong-token-0123456789', `Basic ${TOKEN}`, 'Bearer ']) {
        const refused = await get(url, authorization);
        expect(refused.status, `${url} with ${authorization}`).toBe(401);
        expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="kappa"');
        expect(JSON.stringify(await refused.json())).not.toContain(TOKEN);
      }
    }
    const status = await get(`${coordinatorUrl}/v1/status`, `Bearer ${TOKEN}`);
    expect(status.status).toBe(200);
    expect(((await status.json()) as { workers: unknown[] }).workers).toBeDefined();
    // No job 'clicks' is running: past the token, the API answers the request itself.
    expect([404, 503]).toContain((await get(`${coordinatorUrl}/v1/views/clicks`, `Bearer ${TOKEN}`)).status);
    expect((await get(`${workerUrl}/status`, `Bearer ${TOKEN}`)).status).toBe(200);
    // An unknown path is not told apart from a known one without the token.
    expect((await get(`${coordinatorUrl}/v1/nothing-here`)).status).toBe(401);
  });

  it('refuses to start with a token too short to be one (exit 2)', async () => {
    const result = await kappa(['coordinator', '--nats', nats.url, '--http-port', '0'], {
      env: { KAPPA_API_TOKEN: 'short', KAPPA_API_TOKEN_FILE: undefined, KAPPA_CONFIG: undefined },
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe('kappa: the API token must be at least 16 characters with no spaces');
  });
});
