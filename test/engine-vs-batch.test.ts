// The engine (TaskProcessor over real RocksDB, in any batch sizes) against the independent
// batch reference: the final revision of every window plus the late-data output must agree.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { runBatch } from '../worker/batch-run.js';
import { validateJob } from '../worker/job.js';
import { batchWindows, windowId } from './reference/batch-windows.js';
import { eventStream, reemittingLateness, windowSpec, type StreamEvent } from './reference/event-streams.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-engine-prop-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

interface Totals {
  count: number;
  sum: number;
}

// Commutative, so session merges (which combine accumulators) equal the reference's in-order fold.
const aggregate = {
  init: (): Totals => ({ count: 0, sum: 0 }),
  add: (totals: Totals, event: StreamEvent): Totals => ({ count: totals.count + 1, sum: totals.sum + event.n }),
  merge: (left: Totals, right: Totals): Totals => ({ count: left.count + right.count, sum: left.sum + right.sum }),
};

let runs = 0;
/** Runs in which some event updated an already-fired window (a late update within the allowed lateness). */
const reemittedRuns = { tumbling: 0, hopping: 0, session: 0 };

const latenessMix = reemittingLateness();

describe('streaming engine equals the batch computation', () => {
  for (const kind of ['tumbling', 'hopping', 'session'] as const) {
    it(`for ${kind} windows, with random disorder, late events, partitions and batch sizes`, async () => {
      await fc.assert(
        fc.asyncProperty(
          windowSpec().filter((spec) => spec.kind === kind),
          latenessMix,
          eventStream({ minLength: 10, maxLength: 80 }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 50 }),
          async (window, { maxOutOfOrdernessMs, allowedLatenessMs }, events, partitions, batchSize) => {
            const job = validateJob({
              name: 'prop',
              version: 'v1',
              source: { topic: 'events' },
              key: (event: StreamEvent) => event.user,
              time: (event: StreamEvent) => event.ts,
              watermark: { maxOutOfOrderness: maxOutOfOrdernessMs },
              window: {
                kind: window.kind,
                size: window.sizeMs,
                slide: window.slideMs,
                gap: window.gapMs,
                offset: window.offsetMs,
              },
              allowedLateness: allowedLatenessMs,
              aggregate,
            });
            const expected = batchWindows(
              {
                window,
                maxOutOfOrdernessMs,
                allowedLatenessMs,
                aggregate,
                key: (event) => event.user,
                time: (event) => event.ts,
              },
              events,
              partitions,
            );
            const run = await runBatch(
              job,
              events.map((event) => ({ key: event.user, time: event.ts, value: event })),
              { partitions, stateDir: join(stateRoot, String(runs++)), batchSize },
            );
            const actual = new Map(
              [...run.table.values()].map((output) => [
                windowId(output.key, output.window!.start, output.window!.end),
                { key: output.key, start: output.window!.start, end: output.window!.end, value: output.value },
              ]),
            );
            expect(actual).toEqual(expected.windows);
            const lateIds = (records: Array<{ value: unknown; windows: unknown }>) =>
              records
                .map((record) => ({ id: (record.value as StreamEvent).id, windows: record.windows }))
                .sort((a, b) => a.id - b.id);
            expect(lateIds(run.late)).toEqual(lateIds(expected.late));
            expect(run.deadLetters).toEqual([]);
            // Coverage: an event updated a window after it had fired (the re-emission path).
            if (run.lateUpdates > 0) reemittedRuns[kind]++;
          },
        ),
        { numRuns: 80 },
      );
      // The property must have covered re-emissions, or it proved little about lateness.
      expect(reemittedRuns[kind]).toBeGreaterThan(10);
    });
  }
});

describe('late data, by example', () => {
  const count = { init: () => 0, add: (total: number) => total + 1 };
  const definition = {
    name: 'clicks',
    version: 'v1',
    source: { topic: 'clicks' },
    key: (event: { user: string }) => event.user,
    time: (event: { ts: number }) => event.ts,
    watermark: { maxOutOfOrderness: 0 },
    window: { kind: 'tumbling' as const, size: 10 },
    allowedLateness: 10,
    aggregate: count,
  };
  const job = validateJob(definition);
  const events = (times: number[]) => times.map((ts, id) => ({ key: 'a', time: ts, value: { user: 'a', ts, id } }));

  it('re-emits an updated window for an event within allowed lateness, with a higher revision', async () => {
    // 15 fires [0,10) (wm 15 >= 9); 6 arrives at wm 15 < 9 + 10: updates and re-emits.
    const run = await runBatch(job, events([5, 15, 6]), { partitions: 1, stateDir: join(stateRoot, 'late-1') });
    const first = run.outputs.filter((output) => output.window?.start === 0);
    expect(first.map((output) => [output.value, output.revision])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(run.late).toEqual([]);
  });

  it('merges a late event into a fired session, retracting the old session and emitting the merged one', async () => {
    const sessions = validateJob({
      ...definition,
      window: { kind: 'session', gap: 10 },
      aggregate: { ...count, merge: (a: number, b: number) => a + b },
    });
    // [0,10) fires at wm 16 (>= 9, < 9 + 10); 3 proposes [3,13), merges into [0,13): retract [0,10), emit [0,13) = 2.
    const run = await runBatch(sessions, events([0, 16, 3]), { partitions: 1, stateDir: join(stateRoot, 'late-3') });
    const early = run.outputs.filter((output) => output.window!.start === 0);
    expect(early.map((output) => [output.kind, output.window, output.value])).toEqual([
      ['update', { start: 0, end: 10 }, 1],
      ['retract', { start: 0, end: 10 }, null],
      ['update', { start: 0, end: 13 }, 2],
    ]);
    const table = [...run.table.values()].map((output) => [output.window, output.value]);
    expect(table).toEqual([
      [{ start: 0, end: 13 }, 2],
      [{ start: 16, end: 26 }, 1],
    ]);
  });

  it('sends an event for a purged window to the late output, naming the window', async () => {
    // 30 moves wm to 30 >= 9 + 10: [0,10) is purged; 7 is late.
    const run = await runBatch(job, events([5, 30, 7]), { partitions: 1, stateDir: join(stateRoot, 'late-2') });
    expect(run.late.map((record) => [record.time, record.windows])).toEqual([[7, [{ start: 0, end: 10 }]]]);
    expect([...run.table.values()].map((output) => [output.window?.start, output.value])).toEqual([
      [0, 1],
      [30, 1],
    ]);
  });
});
