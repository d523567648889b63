// The window operator keeps open windows in memory and writes them to keyed state only when a
// checkpoint syncs (worker/window/operator.ts). A run checkpointed at random points — sync, flush
// to RocksDB, then at about half of them a new processor restored from the store and the engine
// snapshot, at the others the same processor going on, as a worker does — must emit
// exactly what one uninterrupted run emits: every revision and retraction in the same order, the
// same late set and dead letters, and the same rows left in RocksDB at the end. The restarted run
// also has a memory budget of a few rows, so windows (whole tumbling or hopping windows, a key's
// sessions) are spilled to the scratch store after nearly every batch and read back when an event
// or the watermark needs them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeEvent } from '../protocol/index.js';
import { ManualClock } from '../protocol/clock.js';
import { decodeKey } from '../state/key-encoding.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { validateJob, type JobSpec } from '../worker/job.js';
import { TaskProcessor, type EngineSnapshot, type RawMessage } from '../worker/task-processor.js';
import type { DeadLetter, LateRecord, Output } from '../worker/types.js';
import { eventStream, reemittingLateness, windowSpec, type StreamEvent } from './reference/event-streams.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-window-restore-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));
let runs = 0;

interface Totals {
  count: number;
  sum: number;
}

interface RunRecord {
  outputs: Output[];
  late: LateRecord[];
  deadLetters: DeadLetter[];
  rows: string[];
  /** Window rows in RocksDB at the restarts: what the restarts carried across. */
  carried: number;
  /** Batches after which some windows were spilled, and batches that read spilled rows back. */
  spilledBatches: number;
  readBackBatches: number;
  /** Checkpoints the run went on from without a restart. */
  checkpointsOnly: number;
}

/**
 * The job's events through one processor, checkpointed before each index in `cuts` and restored
 * from the checkpoint at the even ones.
 */
async function run(
  job: JobSpec,
  messages: RawMessage[],
  cuts: readonly number[],
  batchSize: number,
  maxRows?: number,
): Promise<RunRecord> {
  const store = await TaskStore.open(join(stateRoot, String(runs++)));
  const record: RunRecord = {
    outputs: [],
    late: [],
    deadLetters: [],
    rows: [],
    carried: 0,
    spilledBatches: 0,
    readBackBatches: 0,
    checkpointsOnly: 0,
  };
  try {
    let state = new KeyedState(store);
    let processor = new TaskProcessor(job, 0, state, new ManualClock(0), undefined, undefined, undefined, maxRows);
    const take = (result: Awaited<ReturnType<TaskProcessor['processBatch']>>) => {
      record.outputs.push(...structuredClone(result.outputs));
      record.late.push(...structuredClone(result.late));
      record.deadLetters.push(...structuredClone(result.deadLetters));
    };
    const bounds = [...new Set([0, ...cuts, messages.length])].sort((a, b) => a - b);
    for (let segment = 0; segment + 1 < bounds.length; segment++) {
      if (segment > 0) {
        // A checkpoint: open windows written to keyed state, flushed to RocksDB.
        await processor.syncState();
        const snapshot = JSON.parse(JSON.stringify(processor.snapshot())) as EngineSnapshot;
        await state.flush();
        let stored = 0;
        for await (const batch of store.scanBatches()) stored += batch.length;
        // What the operator counts as open is what the checkpoint holds (kappa_open_windows).
        expect(processor.openWindows).toBe(stored);
        record.carried += stored;
        // At an odd index the run goes on with the same processor, as a worker does after a
        // checkpoint: spilled windows synced then are purged or read back later.
        if (bounds[segment]! % 2 === 1) record.checkpointsOnly++;
        else {
          state = new KeyedState(store);
          processor = await TaskProcessor.restore(
            job,
            0,
            state,
            new ManualClock(0),
            snapshot,
            undefined,
            undefined,
            maxRows,
          );
        }
      }
      for (let start = bounds[segment]!; start < bounds[segment + 1]!; start += batchSize) {
        const spilledBefore = processor.spilledWindows;
        take(await processor.processBatch(messages.slice(start, Math.min(start + batchSize, bounds[segment + 1]!))));
        if (maxRows !== undefined)
          expect(processor.openWindows - processor.spilledWindows).toBeLessThanOrEqual(maxRows);
        if (processor.spilledWindows > 0) record.spilledBatches++;
        if (spilledBefore > 0 && processor.spilledWindows < spilledBefore) record.readBackBatches++;
      }
    }
    await processor.syncState();
    await state.flush();
    for await (const batch of store.scanBatches())
      for (const [rowKey, value] of batch) record.rows.push(JSON.stringify([decodeKey(rowKey), value]));
    expect(processor.openWindows).toBe(record.rows.length);
    take(await processor.endOfInput());
    return record;
  } finally {
    await store.close();
  }
}

describe('window state checkpointed and restored mid-stream', () => {
  const restartedWithOpenWindows = { tumbling: 0, hopping: 0, session: 0 };
  const spilledAndReadBack = { tumbling: 0, hopping: 0, session: 0 };
  for (const kind of ['tumbling', 'hopping', 'session'] as const) {
    it(`${kind} windows: the same revisions, late set, dead letters and stored rows as one uninterrupted run`, async () => {
      await fc.assert(
        fc.asyncProperty(
          windowSpec().filter((spec) => spec.kind === kind),
          reemittingLateness(),
          eventStream({ minLength: 10, maxLength: 80 }),
          fc.uniqueArray(fc.integer({ min: 1, max: 79 }), { maxLength: 4 }),
          fc.integer({ min: 1, max: 30 }),
          // Some events make `add` throw once (retried) or always (dead-lettered).
          fc.integer({ min: 0, max: 9 }),
          fc.integer({ min: 1, max: 6 }),
          async (window, { maxOutOfOrdernessMs, allowedLatenessMs }, events, cuts, batchSize, failEvery, maxRows) => {
            const failures = new Map<number, number>();
            const job = validateJob({
              name: 'restore',
              version: 'v1',
              source: { topic: 'events' },
              key: (event: StreamEvent) => event.user,
              time: (event: StreamEvent) => event.ts,
              watermark: { maxOutOfOrderness: maxOutOfOrdernessMs },
              window: { kind, size: window.sizeMs, slide: window.slideMs, gap: window.gapMs, offset: window.offsetMs },
              allowedLateness: allowedLatenessMs,
              handlerRetries: 1,
              aggregate: {
                init: (): Totals => ({ count: 0, sum: 0 }),
                add: (totals: Totals, event: StreamEvent): Totals => {
                  if (failEvery > 0 && event.id % 10 === failEvery) throw new Error(`event ${event.id} refused`);
                  // Throws on the first try only: the retry succeeds.
                  if (failEvery > 0 && event.id % 10 === failEvery - 1 && !failures.has(event.id)) {
                    failures.set(event.id, 1);
                    totals.count += 100; // changed, then thrown: the retry must see the accumulator as it was
                    throw new Error('once');
                  }
                  totals.count++; // in place: the operator must hand add a copy
                  totals.sum += event.n;
                  return totals;
                },
                merge: (a: Totals, b: Totals): Totals => ({ count: a.count + b.count, sum: a.sum + b.sum }),
              },
            });
            const messages = events.map((event, index) => ({
              data: encodeEvent({ key: event.user, time: event.ts, value: event }),
              sequence: index + 1,
            }));
            const validCuts = cuts.filter((cut) => cut < messages.length);
            failures.clear();
            const straight = await run(job, messages, [], batchSize);
            failures.clear();
            const restarted = await run(job, messages, validCuts, batchSize, maxRows);
            expect(restarted.outputs).toEqual(straight.outputs);
            expect(restarted.late).toEqual(straight.late);
            expect(restarted.deadLetters).toEqual(straight.deadLetters);
            expect(restarted.rows).toEqual(straight.rows);
            if (restarted.carried > 0) restartedWithOpenWindows[kind]++;
            if (restarted.spilledBatches > 0 && restarted.readBackBatches > 0) spilledAndReadBack[kind]++;
          },
        ),
        { numRuns: 60 },
      );
      // Coverage: restarts that had to carry open windows across, not only empty ones.
      expect(restartedWithOpenWindows[kind]).toBeGreaterThan(10);
      // … and runs that spilled windows and read them back.
      expect(spilledAndReadBack[kind]).toBeGreaterThan(10);
    });
  }
});
