// Actor handlers: keyed value and map state, event-time timers, emit, and a throwing handler
// retried with its writes undone, then dead-lettered — over real RocksDB through runBatch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ActorContext, TimerInfo } from '../worker/actor-context.js';
import { runBatch } from '../worker/batch-run.js';
import { validateJob } from '../worker/job.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-actor-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));
let runs = 0;

interface Order {
  id: number;
  customer: string;
  ts: number;
  amount: number;
  item: string;
}

const orders: Order[] = [
  { id: 1, customer: 'ann', ts: 1_000, amount: 10, item: 'tea' },
  { id: 2, customer: 'bob', ts: 1_500, amount: 5, item: 'cake' },
  { id: 3, customer: 'ann', ts: 2_000, amount: 7, item: 'tea' },
  { id: 4, customer: 'ann', ts: 2_500, amount: 1, item: 'jam' },
  { id: 5, customer: 'bob', ts: 9_000, amount: 2, item: 'tea' },
  { id: 6, customer: 'cy', ts: 20_000, amount: 3, item: 'tea' },
];

function run(
  actor: {
    onEvent: (ctx: ActorContext, order: Order) => void;
    onTimer?: (ctx: ActorContext, timer: TimerInfo) => void;
  },
  events = orders,
  partitions = 2,
) {
  const job = validateJob({
    name: 'orders',
    version: 'v1',
    source: { topic: 'orders' },
    key: (order: Order) => order.customer,
    time: (order: Order) => order.ts,
    watermark: { maxOutOfOrderness: 0 },
    actor,
  });
  return runBatch(
    job,
    events.map((order) => ({ key: order.customer, time: order.ts, value: order })),
    { partitions, stateDir: join(stateRoot, String(runs++)), batchSize: 2 },
  );
}

describe('actor handlers', () => {
  it('keep value and map state per key and upsert the table with emit', async () => {
    const result = await run({
      onEvent(ctx, order) {
        const total = ctx.value<number>('total');
        total.set((total.get() ?? 0) + order.amount);
        const items = ctx.map<number>('items');
        items.set(order.item, (items.get(order.item) ?? 0) + 1);
        ctx.emit({ total: total.get(), items: Object.fromEntries(items.entries()) });
      },
    });
    const table = Object.fromEntries([...result.table.values()].map((row) => [row.key, row.value]));
    expect(table).toEqual({
      ann: { total: 18, items: { tea: 2, jam: 1 } },
      bob: { total: 7, items: { cake: 1, tea: 1 } },
      cy: { total: 3, items: { tea: 1 } },
    });
  });

  it('fire event-time timers when the watermark reaches them', async () => {
    // A 5-second inactivity timer per customer: emits the spend of a visit when it closes.
    const result = await run(
      {
        onEvent(ctx, order) {
          const spend = ctx.value<number>('spend');
          spend.set((spend.get() ?? 0) + order.amount);
          const deadline = ctx.value<number>('deadline');
          const previous = deadline.get();
          if (previous !== undefined) ctx.deleteTimer('event-time', previous);
          deadline.set(order.ts + 5_000);
          ctx.setEventTimeTimer(order.ts + 5_000);
        },
        onTimer(ctx, timer) {
          ctx.emit({ spend: ctx.value<number>('spend').get(), closedAt: timer.timeMs }, { row: String(timer.timeMs) });
          ctx.value('spend').clear();
          ctx.value('deadline').clear();
        },
      },
      orders,
      1,
    );
    const visits = [...result.table.values()].map((row) => [`${row.key}/${row.row}`, row.value]).sort();
    // bob's second order (9,000) arrives at watermark 2,500: it cancels his 6,500 timer for 14,000.
    // Watermark 9,000 fires ann's 7,500; 20,000 fires bob's 14,000; cy's 25,000 fires at end of input.
    expect(visits).toEqual(
      [
        ['ann/7500', { spend: 18, closedAt: 7_500 }],
        ['bob/14000', { spend: 7, closedAt: 14_000 }],
        ['cy/25000', { spend: 3, closedAt: 25_000 }],
      ].sort(),
    );
  });

  it('retry a throwing handler with its state writes undone, so nothing counts twice', async () => {
    let failures = 0;
    const result = await run({
      onEvent(ctx, order) {
        const total = ctx.value<number>('total');
        total.set((total.get() ?? 0) + order.amount);
        ctx.emit(total.get());
        // Order 3 fails on its first attempt, after writing state and emitting.
        if (order.id === 3 && failures++ === 0) throw new Error('flaky downstream');
      },
    });
    expect(failures).toBe(2);
    expect(result.deadLetters).toEqual([]);
    expect(Object.fromEntries([...result.table.values()].map((row) => [row.key, row.value]))).toEqual({
      ann: 18,
      bob: 7,
      cy: 3,
    });
  });

  it('dead-letter an event whose handler keeps throwing, with the reason, and carry on', async () => {
    const result = await run({
      onEvent(ctx, order) {
        if (order.item === 'jam') throw new Error('jam is not for sale');
        const total = ctx.value<number>('total');
        total.set((total.get() ?? 0) + order.amount);
        ctx.emit(total.get());
      },
    });
    expect(result.deadLetters.map((letter) => [letter.reason, letter.error])).toEqual([
      ['handler-failed', 'onEvent threw after 3 attempts: jam is not for sale'],
    ]);
    expect(Object.fromEntries([...result.table.values()].map((row) => [row.key, row.value]))).toEqual({
      ann: 17,
      bob: 7,
      cy: 3,
    });
  });
});
