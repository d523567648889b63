// Hybrid replay as a property (issue 17): for random events (some late), partition counts, window
// kinds, lateness settings, hand-over points, segment sizes, batch sizes and trims of the stream,
// a task processor fed by the archive-then-live source ends with the same table (newest revision
// per row, retractions applied) and the same late set as one fed the whole log as the stream held
// it before anything was archived or trimmed. Real nats-server, archive in its Object Store,
// RocksDB per processor. The streaming run reads the log with the test's own consumer; nothing of
// the hybrid path (catalog, segments, hand-over) takes part in it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archiver } from '../archive/archiver.js';
import { ArchiveCatalog, handOverSequence } from '../archive/catalog.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { createTopic, Producer } from '../client/index.js';
import { ManualClock, streams } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { ArchiveThenLiveSource } from '../worker/archive-source.js';
import { validateJob, type JobSpec } from '../worker/job.js';
import { ServingView } from '../worker/serving-view.js';
import { TaskProcessor, type RawMessage } from '../worker/task-processor.js';
import { useNatsServer } from './harness/use-nats.js';
import { lateness, windowSpec, type GeneratedWindowSpec } from './reference/event-streams.js';

const nats = useNatsServer();
const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-hybrid-prop-'));
let stores: [TaskStore, TaskStore];
beforeAll(async () => {
  stores = [await TaskStore.open(join(stateRoot, 'streaming')), await TaskStore.open(join(stateRoot, 'hybrid'))];
});
afterAll(async () => {
  for (const store of stores) await store.close();
  rmSync(stateRoot, { recursive: true, force: true });
});

/** Every row of a store gone: encoded keys never start with 0xff. */
async function emptied(store: TaskStore): Promise<TaskStore> {
  await store.deleteRange(new Uint8Array(0), new Uint8Array(8).fill(0xff));
  return store;
}

interface Click {
  id: number;
  user: string;
  t: number;
}

const USERS = ['ana', 'bo', 'cy', 'dee', 'eli'];

// The ids in a window, sorted: names every event counted, whatever the order (sessions merge).
const ids = {
  init: (): number[] => [],
  add: (list: number[], click: Click) => [...list, click.id],
  merge: (left: number[], right: number[]) => [...left, ...right],
  result: (list: number[]) => [...list].sort((a, b) => a - b),
};

function jobOf(window: GeneratedWindowSpec, maxOutOfOrdernessMs: number, allowedLatenessMs: number): JobSpec {
  return validateJob({
    name: 'hybrid-prop',
    version: 'v1',
    source: { topic: 'clicks' },
    key: 'user',
    time: (click: Click) => click.t,
    watermark: { maxOutOfOrderness: maxOutOfOrdernessMs },
    window: {
      kind: window.kind,
      size: window.sizeMs,
      slide: window.slideMs,
      gap: window.gapMs,
      offset: window.offsetMs,
    },
    allowedLateness: allowedLatenessMs,
    aggregate: ids,
  });
}

/** Every message a partition stream holds now, as a source delivers it. */
async function streamMessages(topic: string, partition: number): Promise<RawMessage[]> {
  const stream = streams.partition(topic, partition);
  const { state } = await (await jetstreamManager(nats.nc)).streams.info(stream);
  const out: RawMessage[] = [];
  if (state.messages === 0) return out;
  const consumer = await jetstream(nats.nc).consumers.get(stream);
  for await (const message of await consumer.fetch({ max_messages: state.messages, expires: 5_000 })) {
    out.push({
      data: message.data,
      sequence: message.seq,
      logTimeMs: Math.floor(message.info.timestampNanos / 1_000_000),
    });
    if (out.length === state.messages) break;
  }
  return out;
}

interface RunResult {
  table: Record<string, unknown>;
  late: { id: number; windows: unknown }[];
}

/** A fresh processor over the batches `next` hands out until it returns none. */
async function run(
  job: JobSpec,
  partition: number,
  partitions: number,
  store: TaskStore,
  next: () => Promise<RawMessage[]>,
): Promise<RunResult> {
  const processor = new TaskProcessor(
    job,
    partition,
    new KeyedState(await emptied(store)),
    new ManualClock(0),
    undefined,
    {
      kind: 'direct',
      partitions,
    },
  );
  const view = new ServingView();
  const late: RunResult['late'] = [];
  for (let batch = await next(); batch.length > 0; batch = await next()) {
    const result = await processor.processBatch(batch);
    expect(result.deadLetters).toEqual([]);
    view.apply(result.outputs);
    for (const record of result.late) late.push({ id: (record.value as Click).id, windows: record.windows });
  }
  const table: Record<string, unknown> = {};
  for (const row of view.values()) table[`${row.id}#${row.revision}`] = row.value;
  return { table, late };
}

let topics = 0;

describe('hybrid replay, as a property', () => {
  it("ends with the streaming run's table and late set, whatever the hand-over point, trims, segments and batches", async () => {
    const store = await NatsObjectSegmentStore.open(nats.nc);
    const catalog = await ArchiveCatalog.open(nats.nc);
    // What the runs covered, so the property cannot pass on empty cases alone.
    const seen = { archived: 0, live: 0, late: 0, rows: 0, trimmed: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          partitions: fc.integer({ min: 1, max: 3 }),
          window: windowSpec(),
          lateness: lateness(),
          steps: fc.array(
            fc.record({ user: fc.constantFrom(...USERS), stepMs: fc.nat({ max: 6 }), jitter: fc.nat({ max: 1_000 }) }),
            { minLength: 20, maxLength: 200 },
          ),
          /** Percent of the events archived before the rest is produced (fc.double would favour 0 and 1). */
          handOverPercent: fc.integer({ min: 0, max: 100 }),
          segmentEvents: fc.integer({ min: 1, max: 40 }),
          trimmed: fc.boolean(),
          streamingBatch: fc.integer({ min: 1, max: 50 }),
          hybridBatch: fc.integer({ min: 1, max: 50 }),
        }),
        async ({ partitions, window, lateness: late, steps, handOverPercent, segmentEvents, trimmed, ...batches }) => {
          let clockMs = 1_000;
          const clicks = steps.map((step, id): Click => {
            clockMs += step.stepMs;
            // Mostly within the watermark bound; one in five far behind it (late, or dropped).
            const behind =
              step.jitter % 5 === 0
                ? late.maxOutOfOrdernessMs + (step.jitter % 60)
                : step.jitter % (late.maxOutOfOrdernessMs + 1);
            return { id, user: step.user, t: clockMs - behind };
          });
          const job = jobOf(window, late.maxOutOfOrdernessMs, late.allowedLatenessMs);
          const topic = `hybrid_prop_${++topics}`;
          await createTopic(nats.nc, { name: topic, partitions, key: 'user' });
          const archivedCount = Math.floor((handOverPercent * clicks.length) / 100);
          const publish = async (from: number, to: number) => {
            const producer = await Producer.forTopic(nats.nc, topic);
            for (const click of clicks.slice(from, to))
              if (!producer.publish({ key: click.user, time: click.t, value: click })) await producer.ready();
            await producer.close();
          };
          await publish(0, archivedCount);
          await new Archiver({
            nc: nats.nc,
            store,
            catalog,
            clock: new ManualClock(Date.now()),
            maxSegmentEvents: segmentEvents,
          }).archiveTopic(topic, { force: true });
          await publish(archivedCount, clicks.length);

          for (let partition = 0; partition < partitions; partition++) {
            const log = await streamMessages(topic, partition);
            // Nothing archived, nothing to trim (nats-server 2.9 takes a purge below 1 for a purge of all).
            if (trimmed && handOverSequence(await catalog.read(topic, partition)) > 1)
              await (
                await jetstreamManager(nats.nc)
              ).streams.purge(streams.partition(topic, partition), {
                seq: handOverSequence(await catalog.read(topic, partition)),
              });
            let at = 0;
            const streaming = await run(job, partition, partitions, stores[0], async () => {
              const batch = log.slice(at, at + batches.streamingBatch);
              at += batch.length;
              return batch;
            });
            const source = new ArchiveThenLiveSource(
              nats.nc,
              { store, catalog, topic, partition },
              { stream: streams.partition(topic, partition), startSequence: 1, batchMessages: 64 },
            );
            await source.start();
            let read = 0;
            const hybrid = await run(job, partition, partitions, stores[1], async () => {
              let batch: RawMessage[] = [];
              for (
                const giveUpAt = Date.now() + 3_000;
                read < log.length && batch.length === 0 && Date.now() < giveUpAt;
              ) {
                await source.waitForMessages(500);
                batch = source.take(batches.hybridBatch);
              }
              read += batch.length;
              return batch;
            });
            await source.stop();
            expect(read).toBe(log.length);
            expect(hybrid.table).toEqual(streaming.table);
            expect(hybrid.late).toEqual(streaming.late);
            const end = handOverSequence(await catalog.read(topic, partition)) - 1;
            seen.archived += end;
            seen.live += log.length - end;
            seen.late += streaming.late.length;
            seen.rows += Object.keys(streaming.table).length;
            if (trimmed && end > 0) seen.trimmed++;
          }
        },
      ),
      { numRuns: 30 },
    );
    expect(seen.archived).toBeGreaterThan(100);
    expect(seen.live).toBeGreaterThan(100);
    expect(seen.late).toBeGreaterThan(10);
    expect(seen.rows).toBeGreaterThan(50);
    expect(seen.trimmed).toBeGreaterThan(2);
  }, 300_000);
});
