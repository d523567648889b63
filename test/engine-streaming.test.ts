// The same job run by `kappa worker --standalone` over a 4-partition topic and by
// `kappa run --partitions 4` over the same events gives identical results for every window the
// streaming run fired; late data and dead letters land on their subjects with a counter.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decode } from '@msgpack/msgpack';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEvent, partitionOf, streams, subjects } from '../protocol/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { produceClicks } from './harness/clicks.js';
import { pollUntil } from './harness/poll.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
const OUT_OF_ORDERNESS_MS = 2_000;

const nats = useNatsServer();
let dir: string;

interface Click {
  id: number;
  user: string;
  ts: number;
  page?: string;
}

/** 4,000 clicks over ~400 s of event time, mostly in order, some up to 1.5 s early/late, 1% very late. */
function clicks(): Click[] {
  const start = Date.UTC(2026, 10, 24, 12);
  const events: Click[] = [];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let id = 0; id < 4000; id++) {
    const veryLate = random() < 0.01;
    const ts = start + id * 100 - Math.floor(random() * 1500) - (veryLate ? 20_000 + Math.floor(random() * 20_000) : 0);
    events.push({ id, user: `user-${Math.floor(random() * 17)}`, ts, ...(random() < 0.5 ? { page: '/home' } : {}) });
  }
  return events;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-streaming-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('kappa worker --standalone and kappa run', () => {
  it('give identical results for every window the streaming run fired, and the same late set', async () => {
    const events = clicks();
    const input = join(dir, 'clicks.jsonl');
    const url = nats.url;
    expect((await kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--nats', url])).code).toBe(
      0,
    );
    await produceClicks(url, input, events);

    // Bad input straight onto partition 0: bytes that are not an envelope, and an event with no time.
    const js = jetstream(nats.nc);
    await js.publish(`clicks.0.garbage`, new Uint8Array([0xc1, 0xff, 0x00]));
    await js.publish(`clicks.0.user-x`, encodeEvent({ key: 'user-x', time: 0, value: { id: -1, user: 'user-x' } }));

    const worker = new KappaProcess([
      'worker',
      '--job',
      JOB,
      '--standalone',
      '--nats',
      url,
      '--state-dir',
      join(dir, 'state'),
      '--http-port',
      '0',
    ]);
    try {
      const [, port] = await worker.waitForLog(/"httpPort":(\d+)/);
      // Wait until every partition is processed to its last sequence.
      const jsm = await jetstreamManager(nats.nc);
      const lastSequences: number[] = [];
      for (let partition = 0; partition < PARTITIONS; partition++) {
        lastSequences.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
      }
      await pollUntil(
        async () =>
          (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Array<{
            partition: number;
            sequence: number;
          }>,
        {
          what: 'the worker caught up with every partition',
          until: (status) => status.every((task) => task.sequence >= lastSequences[task.partition]!),
          timeoutMs: 60_000,
          intervalMs: 200,
          context: () => worker.logs.slice(-2000),
        },
      );
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/kappa_dead_letters_total\{job="clicks",version="v1",reason="undecodable"\} 1/);
      expect(metrics).toMatch(/kappa_dead_letters_total\{job="clicks",version="v1",reason="no-time"\} 1/);
      expect(await worker.stop()).toBe(0);
    } finally {
      await worker.kill();
    }

    const viewed = await kappa(['view', 'clicks', '--json', '--nats', url]);
    expect(viewed.code, viewed.stderr).toBe(0);
    const streamed = viewed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; start: number; end: number; value: unknown });

    const batchOut = join(dir, 'batch.jsonl');
    const batchLate = join(dir, 'late.jsonl');
    const batch = await kappa([
      'run',
      JOB,
      '--input',
      input,
      '--partitions',
      String(PARTITIONS),
      '--key',
      'user',
      '--time',
      'ts',
      '--output',
      batchOut,
      '--late',
      batchLate,
    ]);
    expect(batch.code, batch.stderr).toBe(0);
    const batchRows = readFileSync(batchOut, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; start: number; end: number; value: unknown });

    // The streaming run fired exactly the windows its partition's final watermark passed (end − 1 ≤ wm).
    const finalWatermark = new Map<number, number>();
    for (const event of events) {
      const partition = partitionOf(event.user, PARTITIONS);
      finalWatermark.set(
        partition,
        Math.max(finalWatermark.get(partition) ?? -Infinity, event.ts - OUT_OF_ORDERNESS_MS),
      );
    }
    const fired = batchRows.filter((row) => row.end - 1 <= finalWatermark.get(partitionOf(row.key, PARTITIONS))!);
    expect(fired.length).toBeGreaterThan(100);
    expect(streamed).toEqual(fired);

    // Late data: the same events, decided by the same watermark rule.
    const lateMessages = (await readSubject(nats.nc, streams.lateData, subjects.lateData('clicks', 'v1'))).map(
      (message) => decode(message.data) as { value: Click },
    );
    const batchLateIds = readFileSync(batchLate, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { value: Click }).value.id);
    expect(batchLateIds.length).toBeGreaterThan(5);
    expect(lateMessages.map((record) => record.value.id).sort((a, b) => a - b)).toEqual(
      batchLateIds.sort((a, b) => a - b),
    );

    // Dead letters: the original bytes with the reason in headers.
    const reasons = (await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter('clicks', 'v1'))).map(
      (message) => message.headers!.get('Kappa-Reason'),
    );
    expect(reasons.sort()).toEqual(['no-time', 'undecodable']);
  });
});
