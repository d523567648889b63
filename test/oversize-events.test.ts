// Events near the server's max_payload: the producer takes them, but what the runtime would write
// about them (a dead letter with its headers, a late record, a repartition bundle) is larger. A
// publish past max_payload fails its batch again on every retry, so one such event used to stop
// its task for good. Now the dead letter and the late record go out without the event's bytes
// (saying how many there were; the event stays in its topic), and an event too large to cross the
// repartition hop is dead-lettered `too-large` by the route task. Everything else is counted.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from '@msgpack/msgpack';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopic } from '../client/topics.js';
import { Producer } from '../client/producer.js';
import { streams, subjects } from '../protocol/index.js';
import { systemClock } from '../protocol/clock.js';
import type { ActorContext } from '../worker/actor-context.js';
import { validateJob } from '../worker/job.js';
import { WorkerMetrics } from '../worker/metrics.js';
import { StandaloneWorker } from '../worker/standalone.js';
import { pollUntil } from './harness/poll.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';

const MAX_PAYLOAD = 65_536;
const nats = useNatsServer({ server: { extraConfig: `max_payload: ${MAX_PAYLOAD}` } });
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-oversize-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Click {
  user: string;
  ts?: number;
  pad?: string;
}

/** Publishes the clicks; a click with `pad: 'max'` is padded to the largest message the producer takes. */
async function produce(topic: string, clicks: Click[]): Promise<number[]> {
  await createTopic(nats.nc, { name: topic, partitions: 1, key: 'user' });
  const producer = await Producer.forTopic(nats.nc, topic);
  const sizes: number[] = [];
  for (const [index, click] of clicks.entries()) {
    if (click.pad !== 'max') {
      producer.publish({ key: click.user, time: index, value: click });
      continue;
    }
    // The largest pad the producer accepts: the message then is within bytes of max_payload.
    for (let length = MAX_PAYLOAD; ; length -= 8) {
      try {
        producer.publish({ key: click.user, time: index, value: { ...click, pad: 'x'.repeat(length) } });
        sizes.push(length);
        break;
      } catch {
        continue;
      }
    }
  }
  await producer.flush();
  return sizes;
}

/** A standalone worker running every partition of the job, in this process. */
function startWorker(job: ReturnType<typeof validateJob>): Promise<StandaloneWorker> {
  return StandaloneWorker.start({
    nc: nats.nc,
    job,
    stateDir: join(dir, job.name),
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    metrics: new WorkerMetrics(),
  });
}

async function runUntilRead(job: ReturnType<typeof validateJob>, events: number): Promise<number[]> {
  const worker = await startWorker(job);
  try {
    // Every event read and its results written: no task is stuck retrying a batch it cannot write.
    await pollUntil(() => worker.progress(), {
      what: `${events} events processed`,
      until: (tasks) => tasks.reduce((sum, task) => sum + task.processed, 0) >= events,
      timeoutMs: 20_000,
      intervalMs: 50,
    });
    expect(worker.notReadyReason()).toBeUndefined();
    return worker.progress().map((task) => task.processed);
  } finally {
    await worker.stop();
  }
}

describe('an event near max_payload', () => {
  it('is dead-lettered or reported late without its bytes, saying how many, and the task goes on', async () => {
    const clicks: Click[] = [
      { user: 'ana', ts: 1_000 },
      { user: 'ana', pad: 'max' }, // no time: dead-lettered
      { user: 'ana', ts: 20_000 }, // the watermark passes window [0, 10 s)
      { user: 'ana', ts: 2_000, pad: 'max' }, // late for that window
      { user: 'ana', ts: 21_000 },
    ];
    const [noTimeBytes, lateBytes] = await produce('big-direct', clicks);
    const job = validateJob({
      name: 'big-direct',
      version: 'v1',
      source: { topic: 'big-direct' },
      key: 'user',
      time: (click: Click) => click.ts,
      watermark: { maxOutOfOrderness: 0 },
      window: { kind: 'tumbling', size: '10s' },
      sink: { kind: 'none' },
      aggregate: { init: () => 0, add: (count: number) => count + 1 },
    });
    // Four events with a time are processed (the late one too); the one without is not.
    expect(await runUntilRead(job, 4)).toEqual([4]);

    const letters = await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter('big-direct', 'v1'));
    expect(letters).toHaveLength(1);
    const letter = letters[0]!;
    expect(letter.headers?.get('Kappa-Reason')).toBe('no-time');
    expect(letter.headers?.get('Kappa-Sequence')).toBe('2');
    expect(Number(letter.headers?.get('Kappa-Omitted-Bytes'))).toBeGreaterThan(noTimeBytes!);
    expect(letter.data.length).toBe(0);

    const late = await readSubject(nats.nc, streams.lateData, subjects.lateData('big-direct', 'v1'));
    expect(late).toHaveLength(1);
    const record = decode(late[0]!.data) as Record<string, unknown>;
    expect(record).toMatchObject({ key: 'ana', time: 2_000, value: null, sequence: 4 });
    expect(record.valueOmittedBytes).toBeGreaterThan(lateBytes!);
  });

  it('is dead-lettered too-large by the route task when it cannot cross the repartition hop; the rest is counted', async () => {
    const clicks: Click[] = [
      { user: 'bo', ts: 1_000 },
      { user: 'bo', ts: 1_500, pad: 'max' },
      { user: 'cy', ts: 2_000 },
      { user: 'bo', ts: 2_500 },
    ];
    const [bigBytes] = await produce('big-hop', clicks);
    const job = validateJob({
      name: 'big-hop',
      version: 'v1',
      source: { topic: 'big-hop' },
      key: (click: Click) => click.user, // a function: the job is repartitioned
      time: (click: Click) => click.ts,
      watermark: { maxOutOfOrderness: 0 },
      window: { kind: 'tumbling', size: '10s' },
      sink: { kind: 'none' },
      aggregate: { init: () => 0, add: (count: number) => count + 1 },
    });
    // Route task: 3 of 4 routed; keyed task: those 3.
    const processed = await runUntilRead(job, 6);
    expect(processed.reduce((sum, count) => sum + count, 0)).toBe(6);

    const letters = await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter('big-hop', 'v1'));
    expect(
      letters.map((letter) => [letter.headers?.get('Kappa-Reason'), letter.headers?.get('Kappa-Sequence')]),
    ).toEqual([['too-large', '2']]);
    expect(letters[0]!.headers?.get('Kappa-Error')).toMatch(/cannot cross to the keyed stage/);
    expect(Number(letters[0]!.headers?.get('Kappa-Omitted-Bytes'))).toBeGreaterThan(bigBytes!);
  });

  it('as an output the table cannot store fails its task with an error naming the row and both sizes', async () => {
    await produce('big-output', [{ user: 'dee', ts: 1_000 }]);
    const job = validateJob({
      name: 'big-output',
      version: 'v1',
      source: { topic: 'big-output' },
      key: 'user',
      time: (click: Click) => click.ts,
      watermark: { maxOutOfOrderness: 0 },
      actor: {
        onEvent(ctx: ActorContext) {
          ctx.emit('y'.repeat(MAX_PAYLOAD));
        },
      },
    });
    const worker = await startWorker(job);
    try {
      const reason = await pollUntil(() => worker.notReadyReason(), {
        what: 'the task failing on its output',
        until: (why) => why !== undefined && why.includes('max_payload'),
        timeoutMs: 20_000,
        intervalMs: 50,
      });
      expect(reason).toMatch(
        new RegExp(
          `a message to \\$KV\\.[^ ]+\\.dee is \\d+ bytes with its headers, more than the server's max_payload of ${MAX_PAYLOAD} bytes`,
        ),
      );
    } finally {
      await worker.stop();
    }
  });
});
