// Dead letters and outputs as they land in JetStream (a real nats-server): every dead letter is
// stored (three timer failures under one event are three messages, and a replay adds none), an
// output of a key with a newline is published, and the far-future guard reads the log's own
// timestamps in a streaming run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from '@msgpack/msgpack';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopic } from '../client/topics.js';
import { Producer } from '../client/producer.js';
import { encodeEvent, encodeRoutedBundle, encodeRoutedEvent, streams, subjects } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import type { ActorContext } from '../worker/actor-context.js';
import { ManualClock, systemClock } from '../protocol/clock.js';
import { validateJob } from '../worker/job.js';
import { WorkerMetrics } from '../worker/metrics.js';
import { JobSinks } from '../worker/sinks.js';
import { StandaloneWorker } from '../worker/standalone.js';
import { TaskProcessor } from '../worker/task-processor.js';
import { pollUntil } from './harness/poll.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-engine-sinks-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function storedCount(stream: string, subject: string): Promise<number> {
  const info = await (await jetstreamManager(nats.nc)).streams.info(stream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

describe('sinks on a real nats-server', () => {
  it('store every dead letter: three failing timers under one event are three messages, and writing them again adds none', async () => {
    const job = validateJob({
      name: 'timers',
      version: 'v1',
      source: { topic: 'unused' },
      time: (event: { ts: number }) => event.ts,
      watermark: { maxOutOfOrderness: 0 },
      handlerRetries: 0,
      sink: { kind: 'none' },
      actor: {
        onEvent(ctx: ActorContext, event: { ts: number }) {
          if (event.ts === 0) for (const tag of ['a', 'b', 'c']) ctx.setEventTimeTimer(50, tag);
        },
        onTimer() {
          throw new Error('timer failed');
        },
      },
    });
    const store = await TaskStore.open(join(dir, 'timers'));
    try {
      const processor = new TaskProcessor(job, 0, new KeyedState(store), new ManualClock(0));
      const messages = [0, 100].map((ts, index) => ({
        data: encodeEvent({ key: 'k', time: ts, value: { ts } }),
        sequence: index + 1,
      }));
      const result = await processor.processBatch(messages);
      expect(result.deadLetters).toHaveLength(3);
      const sinks = await JobSinks.open(nats.nc, job);
      await sinks.write(result);
      await sinks.write(result); // a replay after a crash writes the same letters again
      expect(await storedCount(streams.deadLetter, subjects.deadLetter('timers', 'v1'))).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('store a bad record of a repartition bundle with the bundle’s sequence and its part', async () => {
    const job = validateJob({
      name: 'bundled',
      version: 'v1',
      source: { topic: 'unused', key: (click: { user: string }) => click.user },
      time: (click: { t: number }) => click.t,
      watermark: { maxOutOfOrderness: 0 },
      window: { kind: 'tumbling', size: 10 },
      sink: { kind: 'none' },
      aggregate: { init: () => 0, add: (count: number) => count + 1 },
    });
    const store = await TaskStore.open(join(dir, 'bundled'));
    try {
      const processor = new TaskProcessor(job, 0, new KeyedState(store), new ManualClock(), undefined, {
        kind: 'merged',
        partitions: 1,
        upstreamPartitions: [1],
      });
      const routed = (sequence: number) =>
        encodeRoutedEvent({ source: 0, partition: 0, sequence, watermarkMs: 1, key: 'u', time: 1, value: {} });
      const bundle = encodeRoutedBundle([routed(1), new Uint8Array([0xc1]), routed(2)]);
      const result = await processor.processBatch([{ data: bundle, sequence: 7 }]);
      await (await JobSinks.open(nats.nc, job)).write(result);
      const letters = await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter('bundled', 'v1'));
      expect(
        letters.map((letter) =>
          ['Kappa-Reason', 'Kappa-Sequence', 'Kappa-Part'].map((name) => letter.headers?.get(name)),
        ),
      ).toEqual([['undecodable', '7', '1']]);
      expect([...letters[0]!.data]).toEqual([0xc1]);
    } finally {
      await store.close();
    }
  });

  it('publish outputs of keys holding any character (a newline included) to the output stream, once per revision', async () => {
    const job = validateJob({
      name: 'odd-keys',
      version: 'v1',
      source: { topic: 'unused' },
      time: () => 0,
      watermark: { maxOutOfOrderness: 0 },
      sink: { kind: 'stream' },
      actor: { onEvent: (ctx: ActorContext) => ctx.emit(ctx.key) },
    });
    const store = await TaskStore.open(join(dir, 'odd-keys'));
    try {
      const processor = new TaskProcessor(job, 0, new KeyedState(store), new ManualClock(0));
      const keys = ['line\nbreak', 'tab\there', 'ünïcödé ✓', 'a.b*>'];
      const result = await processor.processBatch(
        keys.map((key, index) => ({ data: encodeEvent({ key, time: 0, value: {} }), sequence: index + 1 })),
      );
      const sinks = await JobSinks.open(nats.nc, job);
      await sinks.write(result);
      await sinks.write(result);
      const stored = await readSubject(nats.nc, streams.output, subjects.output('odd-keys', 'v1'));
      expect(stored.map((message) => (decode(message.data) as { value: string }).value).sort()).toEqual(
        [...keys].sort(),
      );
    } finally {
      await store.close();
    }
  });

  it('publish every revision an actor emits to its row within one batch to the output stream, in order (a pass-through)', async () => {
    const job = validateJob({
      name: 'pass-through',
      version: 'v1',
      source: { topic: 'unused' },
      time: (value: { n: number }) => value.n,
      watermark: { maxOutOfOrderness: 0 },
      sink: { kind: 'stream' },
      actor: { onEvent: (ctx: ActorContext, value: { n: number }) => ctx.emit(value.n) },
    });
    const store = await TaskStore.open(join(dir, 'pass-through'));
    try {
      const processor = new TaskProcessor(job, 0, new KeyedState(store), new ManualClock(0));
      // Ten events of one key in one batch: one row, ten revisions, each a record of the stream.
      const result = await processor.processBatch(
        Array.from({ length: 10 }, (_, n) => ({
          data: encodeEvent({ key: 'a', time: n, value: { n } }),
          sequence: n + 1,
        })),
      );
      const sinks = await JobSinks.open(nats.nc, job);
      await sinks.write(result);
      await sinks.write(result); // again, as after a crash: nothing more stored
      const stored = await readSubject(nats.nc, streams.output, subjects.output('pass-through', 'v1'));
      expect(stored.map((message) => (decode(message.data) as { value: number }).value)).toEqual(
        Array.from({ length: 10 }, (_, n) => n),
      );
      await sinks.close();
    } finally {
      await store.close();
    }
  });

  it('dead-letter an event far in the future of the time the log stored it, and keep the partition on time', async () => {
    await createTopic(nats.nc, { name: 'readings', partitions: 1 });
    const producer = await Producer.forTopic(nats.nc, 'readings');
    const now = Date.now();
    const times = [now - 60_000, 8.64e15, ...Array.from({ length: 200 }, (_, index) => now - 50_000 + index * 100)];
    for (const [index, ts] of times.entries()) producer.publish({ key: 'sensor', time: index, value: { ts } });
    await producer.flush();
    const job = validateJob({
      name: 'future',
      version: 'v1',
      source: { topic: 'readings' },
      time: (reading: { ts: number }) => reading.ts,
      watermark: { maxOutOfOrderness: 0 },
      window: { kind: 'tumbling', size: '10s' },
      sink: { kind: 'none' },
      aggregate: { init: () => 0, add: (count: number) => count + 1 },
    });
    const metrics = new WorkerMetrics();
    const worker = await StandaloneWorker.start({
      nc: nats.nc,
      job,
      stateDir: join(dir, 'future'),
      clock: systemClock,
      logger: pino({ level: 'warn' }),
      metrics,
    });
    try {
      const processed = () => worker.progress().reduce((sum, task) => sum + task.processed, 0);
      await pollUntil(processed, {
        what: `${times.length - 1} events processed`,
        until: (count) => count >= times.length - 1,
        timeoutMs: 20_000,
        intervalMs: 50,
      });
      expect(processed()).toBe(times.length - 1);
    } finally {
      await worker.stop();
    }
    const letters = await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter('future', 'v1'));
    expect(
      letters.map((letter) => [letter.headers?.get('Kappa-Reason'), letter.headers?.get('Kappa-Sequence')]),
    ).toEqual([['future-time', '2']]);
    expect(await storedCount(streams.lateData, subjects.lateData('future', 'v1'))).toBe(0);
  });
});
