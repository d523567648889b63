// Repartitioning, as a property over random jobs and inputs: a job keyed by `user` over topics
// produced by `page`, with 1 or 2 sources of 1–8 partitions each and 1–4 keyed partitions. The
// route processors run over each source partition (random batches, a clock that makes them mark
// now and then), the merged processors over a RANDOM interleaving of what reached each keyed
// partition (each upstream's order kept, marks included), with and without repeats of records
// already delivered (a route task re-publishing after a restart). No NATS: processors over real
// RocksDB, as `kappa run` runs them. Checked against test/reference/, never against the engine:
// (a) when no event is late in its own source partition, the table is the group-by over all events;
// (b) otherwise every event reported late is late in its source partition, and the late set and
//     table are exactly what the min rule over that interleaving gives;
// (c) repeats change nothing; and `runBatch` (its own interleaving) keeps (a) and (b).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeEvent,
  encodeRoutedBundle,
  encodeRoutedEvent,
  encodeWatermarkMark,
  ManualClock,
  partitionOf,
} from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { runBatch } from '../worker/batch-run.js';
import { validateJob, type JobSpec } from '../worker/job.js';
import { ServingView } from '../worker/serving-view.js';
import { MARK_INTERVAL_MS, TaskProcessor, type BatchResult } from '../worker/task-processor.js';
import type { RawMessage } from '../worker/operator.js';
import { positionOf, type LateRecord, type Window } from '../worker/types.js';
import {
  windowId,
  windowsOverPartitions,
  type ReferenceEvent,
  type ReferenceResult,
  type ReferenceWindowResult,
} from './reference/batch-windows.js';
import { windowSpec, type GeneratedWindowSpec } from './reference/event-streams.js';
import {
  isPurged,
  keyedWatermarks,
  sourcePartitionWatermarks,
  windowsOfEvent,
  type Delivery,
} from './reference/repartitioned-watermarks.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-repartition-prop-'));
let runs = 0;
// Route processors keep no keyed state: all of them share one store they never write. Keyed
// partitions each get a real store, emptied before every use (opening hundreds costs seconds).
let routeStore: TaskStore;
const keyedStores: TaskStore[] = [];
const MAX_KEYED_PARTITIONS = 4;
beforeAll(async () => {
  routeStore = await TaskStore.open(join(stateRoot, 'route'));
  for (let partition = 0; partition < MAX_KEYED_PARTITIONS; partition++)
    keyedStores.push(await TaskStore.open(join(stateRoot, `keyed-${partition}`)));
});
afterAll(async () => {
  for (const store of [routeStore, ...keyedStores]) await store.close();
  rmSync(stateRoot, { recursive: true, force: true });
});

/** Every row of a store gone: encoded keys never start with 0xff. */
async function emptied(store: TaskStore): Promise<TaskStore> {
  await store.deleteRange(new Uint8Array(0), new Uint8Array(8).fill(0xff));
  return store;
}

interface Click {
  id: number;
  /** The producer's key. */
  page: string;
  /** The job's key. */
  user: string;
  t: number;
  source: 'a' | 'b';
}

const PAGES = Array.from({ length: 40 }, (_, index) => `p${index}`);
const USERS = ['ana', 'bo', 'cy', 'dee', 'eli', 'fay'];
const SOURCES = ['a', 'b'] as const;

// The ids in a window, sorted: order-free (sessions merge), and it names every event counted.
const ids = {
  init: (): number[] => [],
  add: (list: number[], click: Click) => [...list, click.id],
  merge: (left: number[], right: number[]) => [...left, ...right],
  result: (list: number[]) => [...list].sort((a, b) => a - b),
};

interface Scenario {
  window: GeneratedWindowSpec;
  maxOutOfOrdernessMs: number;
  allowedLatenessMs: number;
  clicks: Click[];
  sourceCount: 1 | 2;
  sourcePartitions: [number, number];
  keyedPartitions: number;
  seed: number;
}

function scenario(kind: GeneratedWindowSpec['kind']): fc.Arbitrary<Scenario> {
  return fc
    .record({
      window: windowSpec().filter((spec) => spec.kind === kind),
      maxOutOfOrdernessMs: fc.integer({ min: 1, max: 20 }),
      allowedLatenessMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 20 })),
      // Jitter below maxOutOfOrderness (no event late in its source partition), or some very late events.
      lateMode: fc.boolean(),
      startMs: fc.integer({ min: -200, max: 500 }),
      steps: fc.array(
        fc.record({
          page: fc.constantFrom(...PAGES),
          user: fc.constantFrom(...USERS),
          stepMs: fc.nat({ max: 8 }),
          jitter: fc.nat({ max: 10_000 }),
          source: fc.constantFrom(...SOURCES),
        }),
        { minLength: 10, maxLength: 80 },
      ),
      sourceCount: fc.constantFrom(1 as const, 2 as const),
      sourcePartitions: fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 })),
      keyedPartitions: fc.integer({ min: 1, max: MAX_KEYED_PARTITIONS }),
      seed: fc.integer(),
    })
    .map(({ lateMode, startMs, steps, ...rest }) => {
      let clockMs = startMs;
      const clicks = steps.map((step, id): Click => {
        clockMs += step.stepMs;
        // Below maxOutOfOrderness, or (late mode, one in four) 50–200 ms further behind.
        const veryLate = lateMode && step.jitter % 4 === 0;
        const jitterMs = veryLate
          ? rest.maxOutOfOrdernessMs + 50 + (step.jitter % 150)
          : step.jitter % rest.maxOutOfOrdernessMs;
        return {
          id,
          page: step.page,
          user: step.user,
          t: clockMs - jitterMs,
          source: rest.sourceCount === 1 ? 'a' : step.source,
        };
      });
      return { ...rest, clicks };
    });
}

function jobOf(s: Scenario): JobSpec {
  return validateJob({
    name: 'by-user',
    version: 'v1',
    ...(s.sourceCount === 1
      ? { source: { topic: 'clicks-a' } }
      : { sources: { a: { topic: 'clicks-a' }, b: { topic: 'clicks-b' } } }),
    key: 'user',
    time: (click: Click) => click.t,
    watermark: { maxOutOfOrderness: s.maxOutOfOrdernessMs },
    window: {
      kind: s.window.kind,
      size: s.window.sizeMs,
      slide: s.window.slideMs,
      gap: s.window.gapMs,
      offset: s.window.offsetMs,
    },
    allowedLateness: s.allowedLatenessMs,
    aggregate: ids,
  });
}

/** A deterministic random stream from the scenario's seed (mulberry32), for interleavings and batch sizes. */
function randomOf(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = Math.imul(state ^ (state >>> 15), state | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

function below(random: () => number, n: number): number {
  return Math.floor(random() * n);
}

/** The source partitions in flat order (source after source), each with its clicks in publish order. */
function upstreamsOf(s: Scenario): Array<{ source: number; partition: number; clicks: Click[] }> {
  const upstreams: Array<{ source: number; partition: number; clicks: Click[] }> = [];
  for (let source = 0; source < s.sourceCount; source++) {
    const partitions = s.sourcePartitions[source]!;
    for (let partition = 0; partition < partitions; partition++)
      upstreams.push({
        source,
        partition,
        clicks: s.clicks.filter(
          (click) => click.source === SOURCES[source] && partitionOf(click.page, partitions) === partition,
        ),
      });
  }
  return upstreams;
}

/** A record for a keyed partition: what the min rule needs, its bytes, and for an event its click. */
interface RoutedRecord extends Delivery {
  data: Uint8Array;
  click?: Click;
}

/**
 * The route stage, one processor per source partition: random batches, and between them a clock
 * step of 0–300 ms, so marks come when the processor's 200 ms rule lets them; at the end the mark
 * a route task sends when its input runs dry. Returns, per upstream and keyed partition, the
 * records in upstream order. Checks what it carries against the independent source watermarks.
 */
async function routeStage(s: Scenario, random: () => number): Promise<RoutedRecord[][][]> {
  const routed: RoutedRecord[][][] = [];
  // One after the other: the random stream must be drawn in the same order on every replay.
  for (const [index, upstream] of upstreamsOf(s).entries())
    routed.push(await routeUpstream(s, index, upstream, random));
  return routed;
}

/** One route processor over its source partition's clicks; per keyed partition, the records for it. */
async function routeUpstream(
  s: Scenario,
  upstream: number,
  { source, partition, clicks }: { source: number; partition: number; clicks: Click[] },
  random: () => number,
): Promise<RoutedRecord[][]> {
  const toKeyed: RoutedRecord[][] = Array.from({ length: s.keyedPartitions }, () => []);
  if (clicks.length === 0) return toKeyed;
  const reference = sourcePartitionWatermarks(
    clicks.map((click) => click.t),
    s.maxOutOfOrdernessMs,
  );
  const clock = new ManualClock(1_000_000);
  const processor = new TaskProcessor(jobOf(s), partition, new KeyedState(routeStore), clock, undefined, {
    kind: 'route',
    sourceIndex: source,
    targetTopic: 'rp',
    targetPartitions: s.keyedPartitions,
  });
  const messages = clicks.map((click, index) => ({
    data: encodeEvent({ key: click.page, time: click.t, value: click }),
    sequence: index + 1,
  }));
  const marks: number[] = [];
  const take = (result: BatchResult) => {
    expect(result.deadLetters).toEqual([]);
    for (const { target, ...event } of result.routed) {
      expect(event.watermarkMs).toBe(reference.after[event.sequence - 1]);
      const click = event.value as Click;
      expect(target).toBe(partitionOf(click.user, s.keyedPartitions));
      toKeyed[target]!.push({
        upstream,
        kind: 'event',
        sequence: event.sequence,
        watermarkMs: reference.after[event.sequence - 1]!,
        data: encodeRoutedEvent(event),
        click,
      });
    }
    if (result.mark) {
      const watermarkMs = reference.after[result.mark.sequence - 1]!;
      expect(result.mark.watermarkMs).toBe(watermarkMs);
      marks.push(watermarkMs);
      for (const records of toKeyed)
        records.push({
          upstream,
          kind: 'mark',
          sequence: result.mark.sequence,
          watermarkMs,
          data: encodeWatermarkMark(result.mark),
        });
    }
  };
  for (let start = 0; start < messages.length;) {
    const size = 1 + below(random, 10);
    clock.advance(below(random, 300));
    take(await processor.processBatch(messages.slice(start, start + size)));
    start += size;
  }
  clock.advance(MARK_INTERVAL_MS);
  take(await processor.onIdle());
  // Every keyed partition hears the upstream's final watermark.
  expect(marks.at(-1)).toBe(reference.after.at(-1));
  return toKeyed;
}

/**
 * A random interleaving of the upstreams' records for one keyed partition, each upstream in its
 * order. With `repeats`, now and then a run of records an upstream already delivered comes again
 * (marked `repeat`), as a route task restarted from an older checkpoint re-publishes them.
 */
function interleave(
  streams: readonly RoutedRecord[][],
  random: () => number,
): Array<{ record: RoutedRecord; repeat: boolean }> {
  const next = streams.map(() => 0);
  const out: Array<{ record: RoutedRecord; repeat: boolean }> = [];
  for (;;) {
    const open = streams.flatMap((stream, index) => (next[index]! < stream.length ? [index] : []));
    if (open.length === 0) return out;
    const started = streams.flatMap((_, index) => (next[index]! > 0 ? [index] : []));
    if (started.length > 0 && random() < 0.15) {
      const upstream = started[below(random, started.length)]!;
      const from = below(random, next[upstream]!);
      const to = from + 1 + below(random, next[upstream]! - from);
      for (const record of streams[upstream]!.slice(from, to)) out.push({ record, repeat: true });
      continue;
    }
    const upstream = open[below(random, open.length)]!;
    out.push({ record: streams[upstream]![next[upstream]!++]!, repeat: false });
  }
}

interface KeyedRun {
  table: ServingView;
  late: LateRecord[];
}

/** The keyed stage: one merged processor per keyed partition over its delivered records, in random batches. */
async function keyedStage(s: Scenario, deliveries: readonly RoutedRecord[][], random: () => number): Promise<KeyedRun> {
  const job = jobOf(s);
  const run: KeyedRun = { table: new ServingView(), late: [] };
  for (let partition = 0; partition < deliveries.length; partition++) {
    const records = deliveries[partition]!;
    if (records.length === 0) continue;
    const store = await emptied(keyedStores[partition]!);
    const processor = new TaskProcessor(job, partition, new KeyedState(store), new ManualClock(), undefined, {
      kind: 'merged',
      partitions: s.keyedPartitions,
      upstreamPartitions: s.sourcePartitions.slice(0, s.sourceCount),
    });
    const messages = bundled(
      records.map((record) => record.data),
      random,
    );
    const lateIdsSeen = new Set<string>();
    const lateBefore = run.late.length;
    const collect = (result: BatchResult) => {
      expect(result.deadLetters).toEqual([]);
      run.table.apply(result.outputs);
      run.late.push(...result.late);
      // Several events share a bundle's sequence: each late record still has an id of its own.
      for (const late of result.late) lateIdsSeen.add(positionOf(late));
      expect(lateIdsSeen.size).toBe(run.late.length - lateBefore);
    };
    for (let start = 0; start < messages.length;) {
      const size = 1 + below(random, 12);
      collect(await processor.processBatch(messages.slice(start, start + size)));
      start += size;
    }
    collect(await processor.endOfInput());
  }
  return run;
}

/**
 * The keyed partition's records as the repartition topic stores them: in bundles of 1–6
 * consecutive records (a route task's batch for the partition), now and then a record alone.
 */
function bundled(records: readonly Uint8Array[], random: () => number): RawMessage[] {
  const messages: RawMessage[] = [];
  for (let start = 0; start < records.length;) {
    const size = 1 + below(random, 6);
    const chunk = records.slice(start, start + size);
    const data = chunk.length === 1 && random() < 0.5 ? chunk[0]! : encodeRoutedBundle(chunk);
    messages.push({ data, sequence: messages.length + 1 });
    start += size;
  }
  return messages;
}

function tableOf(table: ServingView): Map<string, ReferenceWindowResult<number[]>> {
  return new Map(
    [...table.values()].map((output) => [
      windowId(output.key, output.window!.start, output.window!.end),
      { key: output.key, start: output.window!.start, end: output.window!.end, value: output.value as number[] },
    ]),
  );
}

function lateIds(
  records: ReadonlyArray<{ value: unknown; windows: Window[] }>,
): Array<{ id: number; windows: Window[] }> {
  return records
    .map((record) => ({ id: (record.value as Click).id, windows: record.windows }))
    .sort((a, b) => a.id - b.id);
}

/** The group-by over all clicks, each in its windows except those `missed` lists for it: no watermark. */
function groupBy(s: Scenario, missed: ReadonlyMap<number, Window[]> = new Map()): ReferenceResult<Click, number[]> {
  const events: ReferenceEvent<Click>[] = s.clicks.map((click) => ({
    index: click.id,
    key: click.user,
    time: click.t,
    value: click,
    watermarkBefore: -Infinity,
  }));
  const result = windowsOverPartitions(referenceJob(s), [events]);
  if (missed.size === 0) return result;
  // Take each click out of the windows it missed (a hopping event can miss some and count in others).
  const windows = new Map<string, ReferenceWindowResult<number[]>>();
  for (const [id, window] of result.windows) {
    const value = window.value.filter((clickId) => {
      return !missed.get(clickId)?.some((gone) => gone.start === window.start && gone.end === window.end);
    });
    if (value.length > 0) windows.set(id, { ...window, value });
  }
  return { windows, late: [] };
}

function referenceJob(s: Scenario) {
  return {
    window: s.window,
    maxOutOfOrdernessMs: s.maxOutOfOrdernessMs,
    allowedLatenessMs: s.allowedLatenessMs,
    aggregate: ids,
  };
}

/** Per click id, the windows it is late for in its own source partition (watermark before it). */
function lateInSourcePartitions(s: Scenario): Map<number, Window[]> {
  const late = new Map<number, Window[]>();
  for (const { clicks } of upstreamsOf(s)) {
    const { before } = sourcePartitionWatermarks(
      clicks.map((click) => click.t),
      s.maxOutOfOrdernessMs,
    );
    clicks.forEach((click, index) => {
      const gone = windowsOfEvent(s.window, click.t).filter((window) =>
        isPurged(window, before[index]!, s.allowedLatenessMs),
      );
      if (gone.length > 0) late.set(click.id, gone);
    });
  }
  return late;
}

/**
 * Whether a session could be gone just as a click touching it comes (its end = the click's time,
 * closed at end − 1 + allowedLateness): the click is not late, but it starts a session of its own
 * where the group-by merges the two. Only possible when the source watermark before the click
 * reaches t − 1 + allowedLateness (jitter of exactly maxOutOfOrderness − 1).
 */
function sessionMayCloseUnderAClick(s: Scenario): boolean {
  if (s.window.kind !== 'session') return false;
  return upstreamsOf(s).some(({ clicks }) => {
    const { before } = sourcePartitionWatermarks(
      clicks.map((click) => click.t),
      s.maxOutOfOrdernessMs,
    );
    return clicks.some((click, index) => before[index]! >= click.t - 1 + s.allowedLatenessMs);
  });
}

/** Every reported late click missed only windows that were gone in its own source partition. */
function expectLateInSourcePartition(late: readonly LateRecord[], s: Scenario, sourceLate: Map<number, Window[]>) {
  for (const record of late) {
    const click = record.value as Click;
    const gone = sourceLate.get(click.id) ?? [];
    for (const window of record.windows)
      expect(gone, `click ${click.id} reported late for [${window.start}, ${window.end})`).toContainEqual(window);
  }
}

const coverage = {
  noSourceLate: { tumbling: 0, hopping: 0, session: 0 },
  keyedLate: { tumbling: 0, hopping: 0, session: 0 },
  repeats: { tumbling: 0, hopping: 0, session: 0 },
  /** Runs where the keyed stage accepted an event late in its source partition (the min rule at work). */
  acceptedThoughSourceLate: { tumbling: 0, hopping: 0, session: 0 },
  batchLate: { tumbling: 0, hopping: 0, session: 0 },
};

describe('a repartitioned job equals the batch reference', () => {
  for (const kind of ['tumbling', 'hopping', 'session'] as const) {
    it(`for ${kind} windows: whatever the interleaving at the keyed stage, with repeats, P of 1–8 and 1 or 2 sources`, async () => {
      await fc.assert(
        fc.asyncProperty(scenario(kind), async (s) => {
          const random = randomOf(s.seed);
          const routed = await routeStage(s, random);
          const interleavings = Array.from({ length: s.keyedPartitions }, (_, target) =>
            interleave(
              routed.map((toKeyed) => toKeyed[target]!),
              random,
            ),
          );
          const withRepeats = interleavings.map((list) => list.map((entry) => entry.record));
          const withoutRepeats = interleavings.map((list) =>
            list.filter((entry) => !entry.repeat).map((entry) => entry.record),
          );
          if (interleavings.some((list) => list.some((entry) => entry.repeat))) coverage.repeats[kind]++;

          const once = await keyedStage(s, withoutRepeats, random);
          const sourceLate = lateInSourcePartitions(s);
          const noneLate = sourceLate.size === 0 && !sessionMayCloseUnderAClick(s);
          if (noneLate) {
            // (a) No event is late in its source partition: the group-by, nothing late.
            coverage.noSourceLate[kind]++;
            expect(once.late).toEqual([]);
            expect(tableOf(once.table)).toEqual(groupBy(s).windows);
          }
          // (b) Late only if late in its source partition; the table is the group-by without what was missed.
          expectLateInSourcePartition(once.late, s, sourceLate);
          if (once.late.length > 0) coverage.keyedLate[kind]++;
          if (once.late.length < sourceLate.size) coverage.acceptedThoughSourceLate[kind]++;
          // (Not for sessions: a click next to a closed session starts its own, where the group-by merges.)
          if (kind !== 'session')
            expect(tableOf(once.table)).toEqual(
              groupBy(s, new Map(lateIds(once.late).map((late) => [late.id, late.windows]))).windows,
            );
          // (b) exactly: the min rule over this interleaving, in the reference.
          const upstreamCount = s.sourcePartitions.slice(0, s.sourceCount).reduce((sum, count) => sum + count, 0);
          const keyedPartitions = withoutRepeats.map((records) => {
            const watermarks = keyedWatermarks(records, upstreamCount);
            return records.flatMap((record, index): ReferenceEvent<Click>[] =>
              watermarks[index]!.taken
                ? [
                    {
                      index: record.click!.id,
                      key: record.click!.user,
                      time: record.click!.t,
                      value: record.click!,
                      watermarkBefore: watermarks[index]!.watermarkBefore,
                    },
                  ]
                : [],
            );
          });
          const expected = windowsOverPartitions(referenceJob(s), keyedPartitions);
          expect(tableOf(once.table)).toEqual(expected.windows);
          expect(lateIds(once.late)).toEqual(lateIds(expected.late));

          // (c) Repeats of delivered records change nothing.
          const repeated = await keyedStage(s, withRepeats, random);
          expect(tableOf(repeated.table)).toEqual(tableOf(once.table));
          expect(lateIds(repeated.late)).toEqual(lateIds(once.late));

          // `kappa run`'s own interleaving keeps (a) and (b).
          const batchDir = join(stateRoot, `batch-${runs++}`);
          const job = jobOf(s);
          const batch = await runBatch(
            job,
            s.clicks.map((click) => ({
              key: click.page,
              time: click.t,
              value: click,
              source: SOURCES.indexOf(click.source),
            })),
            {
              partitions: Object.fromEntries(
                job.sources.map((source, index) => [source.name, s.sourcePartitions[index]!]),
              ),
              producerKey: 'page',
              keyedPartitions: s.keyedPartitions,
              stateDir: batchDir,
              batchSize: 1 + below(random, 20),
            },
          );
          rmSync(batchDir, { recursive: true, force: true });
          expect(batch.plan.repartition?.partitions).toBe(s.keyedPartitions);
          expect(batch.deadLetters).toEqual([]);
          if (noneLate) expect(tableOf(batch.table)).toEqual(groupBy(s).windows);
          expectLateInSourcePartition(batch.late, s, sourceLate);
          if (batch.late.length > 0) coverage.batchLate[kind]++;
          if (kind !== 'session')
            expect(tableOf(batch.table)).toEqual(
              groupBy(s, new Map(lateIds(batch.late).map((late) => [late.id, late.windows]))).windows,
            );
        }),
        { numRuns: 80 },
      );
      // The property must have met both sides of the rule, or it proved little.
      expect(coverage.noSourceLate[kind]).toBeGreaterThan(10);
      expect(coverage.keyedLate[kind]).toBeGreaterThan(5);
      expect(coverage.acceptedThoughSourceLate[kind]).toBeGreaterThan(5);
      expect(coverage.batchLate[kind]).toBeGreaterThan(3);
      expect(coverage.repeats[kind]).toBeGreaterThan(50);
    });
  }
});
