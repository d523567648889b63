// The window operator's second memory budget (worker/heap-pressure.ts): a full collection
// that leaves more than half of the heap live lowers the row budget to half the rows in memory,
// once per collection, and a reading below 30% puts the configured budget back. Readings are
// given here; test/engine-run-cli.test.ts runs the real ones under a small heap.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { validateJob, type WindowJobSpec } from '../worker/job.js';
import type { OperatorOutput } from '../worker/operator.js';
import { HeapWatch, type HeapReading } from '../worker/heap-pressure.js';
import { WindowOperator } from '../worker/window/operator.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-heap-pressure-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const job = validateJob({
  name: 'lists',
  version: 'v1',
  source: { topic: 'clicks' },
  time: (click: { t: number }) => click.t,
  watermark: { maxOutOfOrderness: 0 },
  window: { kind: 'tumbling', size: 10 },
  aggregate: { init: () => [] as number[], add: (list: number[], click: { t: number }) => [...list, click.t] },
}) as WindowJobSpec;

const out: OperatorOutput = { outputs: [], late: [], deadLetter: () => undefined, sequence: 0, source: 'clicks' };

describe('the window operator under heap pressure', () => {
  it('spills down to a quarter of its rows per full collection past half the heap, and keeps its budget until the heap is back under 30%', async () => {
    const store = await TaskStore.open(join(dir, 'store'));
    try {
      const heap: HeapReading = { collections: 0, liveShare: 0 };
      const watch = new HeapWatch(
        () => heap,
        () => 0,
      );
      const operator = new WindowOperator(job, new KeyedState(store), out, 0, 1_000_000, watch);
      // 8 windows of 100 keys, none fired (the watermark stays before the first window's end).
      let sequence = 0;
      const add = (windows: number[]) => {
        for (const window of windows)
          for (let key = 0; key < 100; key++) {
            const t = window * 10 + (key % 10);
            operator.onEvent(`k${key}`, t, { t }, -Infinity, { data: new Uint8Array(0), sequence: ++sequence });
          }
      };
      const resident = () => operator.openWindows - operator.spilledWindows;
      add([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(resident()).toBe(800);

      await operator.spillIfOverBudget(-Infinity);
      expect(resident(), 'no reading yet').toBe(800);

      heap.collections = 1;
      heap.liveShare = 0.6;
      await operator.spillIfOverBudget(-Infinity);
      // Budget 400, spilled (whole windows, those that end last first) down to half of it.
      expect(resident()).toBe(200);
      expect(operator.openWindows).toBe(800);
      expect(operator.heapSpills).toBe(1);

      // The same collection again: no new reading, no lower budget; but the lowered one holds.
      add([8, 9, 10]);
      await operator.spillIfOverBudget(-Infinity);
      expect(resident(), 'past the lowered budget of 400').toBe(200);
      expect(operator.heapSpills).toBe(1);

      // A new collection between the shares: the budget stays where it is.
      heap.collections = 2;
      heap.liveShare = 0.4;
      add([11, 12]);
      await operator.spillIfOverBudget(-Infinity);
      expect(resident()).toBeLessThanOrEqual(400);
      expect(operator.heapSpills).toBe(1);

      // Back under 30%: the configured budget again, nothing more spills.
      heap.collections = 3;
      heap.liveShare = 0.2;
      const before = resident();
      add([13, 14, 15, 16, 17]);
      await operator.spillIfOverBudget(-Infinity);
      expect(resident()).toBe(before + 500);
    } finally {
      await store.close();
    }
  });

  it('stands in for a report that has not come when the heap in use nears the limit, once per 5% of growth', () => {
    const heap: HeapReading = { collections: 0, liveShare: 0 };
    let inUse = 0.6;
    const watch = new HeapWatch(
      () => heap,
      () => inUse,
    );
    expect(watch.newReading()).toBeUndefined();
    inUse = 0.8;
    expect(watch.newReading()).toEqual({ collections: 0, liveShare: 0.8 });
    expect(watch.pressed(), 'the same use again').toBe(false);
    inUse = 0.83;
    expect(watch.newReading()).toBeUndefined();
    inUse = 0.86;
    expect(watch.pressed()).toBe(true);
    // A collection's report comes: it is the reading, and use near the limit counts anew after it.
    heap.collections = 1;
    heap.liveShare = 0.4;
    expect(watch.newReading()).toEqual({ collections: 1, liveShare: 0.4 });
    expect(watch.newReading()).toEqual({ collections: 1, liveShare: 0.86 });
  });
});
