// The probe endpoints every process serves (protocol/process-endpoints.ts): /healthz fails after
// the event loop was blocked beyond the limit, then recovers; a process's own liveness and
// readiness rules decide the rest.
import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { listeningPort, serveProcessEndpoints } from '../protocol/index.js';

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
  server = await serveProcessEndpoints(0, '127.0.0.1', { registry: new Registry(), isReady: () => ready, notLiveReason: () => stuck });
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
