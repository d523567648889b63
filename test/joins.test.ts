// The join helpers (worker/joins/) through the TaskTestDriver with two sources fed into one task:
// random seeded inputs against the independent nested-loop reference (test/reference/joins.ts),
// then the rules one at a time — when pairs appear, lateness, purging, row names, validation.
// The example job imports 'kappa-runtime', which resolves to dist/: run `npm run build` first.
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { ActorContext } from '../worker/actor-context.js';
import { loadJob, type ActorHandlers, type JobDefinition } from '../worker/job.js';
import { intervalJoin } from '../worker/joins/interval-join.js';
import { windowJoin } from '../worker/joins/window-join.js';
import { TaskTestDriver, type DriverInput } from '../worker/task-test-driver.js';
import {
  referenceIntervalJoin,
  referenceWindowJoin,
  type JoinInputEvent,
  type ReferenceJoinResult,
} from './reference/joins.js';

interface Trade {
  user: string;
  ts: number;
  id: number;
}

const SOURCE = { left: 'orders', right: 'payments' } as const;

const drivers: TaskTestDriver[] = [];
afterEach(async () => {
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
});

async function joinDriver(actor: ActorHandlers, maxOutOfOrderness = 0, extraSources = false): Promise<TaskTestDriver> {
  const definition: JobDefinition<Trade> = {
    name: 'joined',
    version: 'v1',
    sources: {
      orders: { topic: 'orders' },
      payments: { topic: 'payments' },
      ...(extraSources ? { refunds: { topic: 'refunds' } } : {}),
    },
    key: 'user',
    time: (trade) => trade.ts,
    watermark: { maxOutOfOrderness, maxFutureSkew: false },
    handlerRetries: 0,
    actor,
  };
  const driver = await TaskTestDriver.open(definition);
  drivers.push(driver);
  return driver;
}

const order = (user: string, ts: number, id = 0): DriverInput => ({
  key: user,
  value: { user, ts, id },
  source: 'orders',
});
const payment = (user: string, ts: number, id = 0): DriverInput => ({
  key: user,
  value: { user, ts, id },
  source: 'payments',
});

// What the tests' joins emit: enough to tell every pair apart and check the info passed.
const windowPair = (o: Trade, p: Trade, info: { key: string; window: { start: number; end: number } }) => ({
  key: info.key,
  order: [o.ts, o.id],
  payment: [p.ts, p.id],
  window: [info.window.start, info.window.end],
});
const intervalPair = (o: Trade, p: Trade, info: { key: string; leftTimeMs: number; rightTimeMs: number }) => ({
  key: info.key,
  order: [o.ts, o.id],
  payment: [p.ts, p.id],
  times: [info.leftTimeMs, info.rightTimeMs],
});

/** The serving table as `${key}|${row}` → value. */
function tableOf(driver: TaskTestDriver): Record<string, unknown> {
  const table: Record<string, unknown> = {};
  for (const output of driver.table()) table[`${output.key}|${output.row}`] = output.value;
  return table;
}

function expectedTable(reference: ReferenceJoinResult<unknown>): Record<string, unknown> {
  return Object.fromEntries([...reference.rows].map(([id, row]) => [id, row.value]));
}

const summary = (driver: TaskTestDriver) => driver.readOutputs().map((output) => [output.key, output.value]);

// ---- random inputs --------------------------------------------------------------------------

const MAX_OUT_OF_ORDERNESS_MS = 20;

interface GeneratedEvent extends JoinInputEvent<Trade> {
  input: DriverInput;
}

/**
 * Events in arrival order: a producer clock that steps forward, each event behind it by up to the
 * watermark bound (out of order, never late for that reason), and now and then far behind (late).
 * Few users, ids and small steps, so identical events (same side, user, time and id) happen.
 */
const joinEvents = fc
  .tuple(
    fc.integer({ min: -200, max: 200 }),
    fc.array(
      fc.record({
        side: fc.constantFrom('left' as const, 'right' as const),
        user: fc.constantFrom('ann', 'bob', 'cy'),
        stepMs: fc.nat({ max: 4 }),
        disorderMs: fc.nat({ max: MAX_OUT_OF_ORDERNESS_MS }),
        veryLate: fc.integer({ min: 0, max: 99 }).map((roll) => roll < 15),
        veryLateMs: fc.integer({ min: MAX_OUT_OF_ORDERNESS_MS + 1, max: MAX_OUT_OF_ORDERNESS_MS + 80 }),
        id: fc.nat({ max: 1 }),
      }),
      { minLength: 20, maxLength: 70, size: 'max' },
    ),
    // Cut points: the events go in as several batches (results must not depend on them).
    fc.array(fc.nat({ max: 70 }), { maxLength: 4 }),
  )
  .map(([startMs, steps, cuts]) => {
    let clockMs = startMs;
    const events: GeneratedEvent[] = steps.map((step) => {
      clockMs += step.stepMs;
      const ts = clockMs - (step.veryLate ? step.veryLateMs : step.disorderMs);
      const value: Trade = { user: step.user, ts, id: step.id };
      const input = { key: step.user, value, source: SOURCE[step.side] };
      return { side: step.side, key: step.user, time: ts, value, input };
    });
    const bounds = [...new Set([0, ...cuts.map((cut) => Math.min(cut, events.length)), events.length])].sort(
      (a, b) => a - b,
    );
    const batches = bounds.slice(1).map((end, index) => events.slice(bounds[index], end).map((event) => event.input));
    return { events, batches };
  });

/** What the task's state holds of a join, as the reference names it. */
async function heldByWindowJoin(driver: TaskTestDriver): Promise<Set<string>> {
  const rows = await driver.stateRows();
  return new Set(
    rows
      .filter((row) => row.namespace === 'm:join.window' && !String(row.subKey[0]).includes('/'))
      .map((row) => `${row.key}|${row.subKey[0]}`),
  );
}

async function heldByIntervalJoin(driver: TaskTestDriver): Promise<Set<string>> {
  const rows = await driver.stateRows();
  return new Set(
    rows
      .filter((row) => row.namespace.startsWith('m:join.interval.'))
      .map((row) => `${row.key}|${row.namespace.slice('m:join.interval.'.length)}|${row.subKey[0]}`),
  );
}

/** How much of each path the random inputs exercised, over all runs of a property. */
class Coverage {
  late = 0;
  accepted = 0;
  rows = 0;
  /** Events identical to an earlier one of the same side (same user, time and id). */
  duplicates = 0;

  add(events: readonly GeneratedEvent[], reference: ReferenceJoinResult<unknown>): void {
    this.late += reference.late.length;
    this.accepted += events.length - reference.late.length;
    this.rows += reference.rows.size;
    const seen = new Set<string>();
    for (const event of events) {
      const identity = JSON.stringify([event.side, event.value]);
      if (seen.has(identity)) this.duplicates++;
      seen.add(identity);
    }
  }

  expectEveryPath(): void {
    expect(this.late).toBeGreaterThan(100);
    expect(this.accepted).toBeGreaterThan(1_000);
    expect(this.rows).toBeGreaterThan(300);
    expect(this.duplicates).toBeGreaterThan(20);
  }
}

describe('against the nested-loop reference (seeded random inputs)', () => {
  it('windowJoin: every pair of two accepted events of a key and window, once; late events to the late output; state only of open windows', async () => {
    const coverage = new Coverage();
    await fc.assert(
      fc.asyncProperty(
        joinEvents,
        fc.constantFrom(5, 10, 30),
        fc.constantFrom(0, 7, -3),
        fc.constantFrom(0, 15),
        async ({ events, batches }, sizeMs, offsetMs, allowedLatenessMs) => {
          const driver = await joinDriver(
            windowJoin<Trade, Trade>({
              ...SOURCE,
              window: { size: sizeMs, offset: offsetMs },
              allowedLateness: allowedLatenessMs,
              join: windowPair,
            }),
            MAX_OUT_OF_ORDERNESS_MS,
          );
          for (const batch of batches) await driver.pipeInput(batch);
          const reference = referenceWindowJoin(events, {
            maxOutOfOrdernessMs: MAX_OUT_OF_ORDERNESS_MS,
            sizeMs,
            offsetMs,
            allowedLatenessMs,
            join: windowPair,
          });
          expect(await heldByWindowJoin(driver)).toEqual(reference.held);
          expect(driver.readLate().map(({ key, time, windows }) => ({ key, time, windows }))).toEqual(reference.late);
          await driver.endOfInput();
          expect(tableOf(driver)).toEqual(expectedTable(reference));
          expect(driver.readOutputs()).toHaveLength(reference.rows.size);
          expect(await driver.stateRows()).toEqual([]);
          coverage.add(events, reference);
          await driver.close();
          drivers.splice(drivers.indexOf(driver), 1);
        },
      ),
      { seed: 1414, numRuns: 60 },
    );
    coverage.expectEveryPath();
  });

  it('intervalJoin: every pair of two non-late events of a key within [a + lower, a + upper], once; state only of events that can still match', async () => {
    const coverage = new Coverage();
    await fc.assert(
      fc.asyncProperty(
        joinEvents,
        fc.integer({ min: -15, max: 10 }),
        fc.integer({ min: 0, max: 15 }),
        async ({ events, batches }, lowerMs, widthMs) => {
          const upperMs = lowerMs + widthMs;
          const driver = await joinDriver(
            intervalJoin<Trade, Trade>({ ...SOURCE, lower: lowerMs, upper: upperMs, join: intervalPair }),
            MAX_OUT_OF_ORDERNESS_MS,
          );
          for (const batch of batches) await driver.pipeInput(batch);
          const reference = referenceIntervalJoin(events, {
            maxOutOfOrdernessMs: MAX_OUT_OF_ORDERNESS_MS,
            lowerMs,
            upperMs,
            join: intervalPair,
          });
          // Emitted as soon as both events are there: no end of input needed.
          expect(tableOf(driver)).toEqual(expectedTable(reference));
          expect(driver.readOutputs()).toHaveLength(reference.rows.size);
          expect(driver.readLate().map(({ key, time, windows }) => ({ key, time, windows }))).toEqual(reference.late);
          expect(await heldByIntervalJoin(driver)).toEqual(reference.held);
          await driver.endOfInput();
          expect(await driver.stateRows()).toEqual([]);
          coverage.add(events, reference);
          await driver.close();
          drivers.splice(drivers.indexOf(driver), 1);
        },
      ),
      { seed: 1415, numRuns: 60 },
    );
    coverage.expectEveryPath();
  });
});

// ---- the rules one at a time ----------------------------------------------------------------

describe('windowJoin', () => {
  const tenMs = (options: { allowedLateness?: number } = {}) =>
    windowJoin<Trade, Trade>({ ...SOURCE, window: { size: 10 }, join: windowPair, ...options });

  it('emits a window’s pairs when the watermark reaches end − 1, one row per pair, and only same-key same-window pairs', async () => {
    const driver = await joinDriver(tenMs());
    await driver.pipeInput([order('ann', 1, 1), payment('ann', 4, 2), order('ann', 8, 3), payment('bob', 5, 4)]);
    await driver.pipeInput([payment('ann', 12, 5)]); // another window; watermark 12 ≥ 9 fires [0, 10)
    expect(summary(driver)).toEqual([
      ['ann', { key: 'ann', order: [1, 1], payment: [4, 2], window: [0, 10] }],
      ['ann', { key: 'ann', order: [8, 3], payment: [4, 2], window: [0, 10] }],
    ]);
    expect(driver.readOutputs().map((output) => output.time)).toEqual([9, 9]);
    expect(new Set(driver.table().map((output) => output.row)).size).toBe(2);
  });

  it('does not emit before the watermark reaches end − 1', async () => {
    const driver = await joinDriver(tenMs());
    await driver.pipeInput([order('ann', 1), payment('ann', 4)]);
    await driver.advanceWatermark(8);
    expect(driver.readOutputs()).toEqual([]);
    await driver.advanceWatermark(9);
    expect(driver.readOutputs()).toHaveLength(1);
  });

  it('an event for a fired window joins nothing and goes to the late output with its window', async () => {
    const driver = await joinDriver(tenMs());
    await driver.pipeInput([order('ann', 1), payment('ann', 10)]); // watermark 10: [0, 10) fired and purged
    await driver.pipeInput([payment('ann', 3)]);
    await driver.endOfInput();
    expect(driver.readOutputs()).toEqual([]);
    expect(driver.readLate().map(({ key, time, windows }) => [key, time, windows])).toEqual([
      ['ann', 3, [{ start: 0, end: 10 }]],
    ]);
  });

  it('within allowedLateness an event for a fired window adds its pairs at once; after the purge it is late', async () => {
    const driver = await joinDriver(tenMs({ allowedLateness: 5 }));
    await driver.pipeInput([order('ann', 1, 1), payment('ann', 11)]); // watermark 11: [0, 10) fired, purged at 14
    expect(driver.readOutputs()).toEqual([]);
    await driver.pipeInput([payment('ann', 3, 2)]);
    expect(summary(driver)).toEqual([['ann', { key: 'ann', order: [1, 1], payment: [3, 2], window: [0, 10] }]]);
    await driver.pipeInput([order('ann', 5, 3)]);
    expect(summary(driver).slice(1)).toEqual([
      ['ann', { key: 'ann', order: [5, 3], payment: [3, 2], window: [0, 10] }],
    ]);
    await driver.advanceWatermark(14);
    await driver.pipeInput([payment('ann', 6, 4)]);
    expect(driver.readOutputs()).toHaveLength(2);
    expect(driver.readLate().map(({ time, windows }) => [time, windows])).toEqual([[6, [{ start: 0, end: 10 }]]]);
  });

  it('purges a window’s state when it fires: the key holds no join rows and no timers afterwards', async () => {
    const driver = await joinDriver(tenMs());
    await driver.pipeInput([order('ann', 1), payment('ann', 4), order('ann', 12)]);
    const namespaces = (rows: Awaited<ReturnType<TaskTestDriver['stateRows']>>) => rows.map((row) => row.namespace);
    // [0, 10) is gone; [10, 20) holds its count, its order and its fire timer.
    expect((await driver.stateRows()).map((row) => [row.namespace, row.subKey])).toEqual([
      ['m:join.window', ['10']],
      ['m:join.window', ['10/left/0']],
      ['t', ['event-time', 19, 'window-join/fire/10']],
    ]);
    await driver.advanceWatermark(19);
    expect(namespaces(await driver.stateRows())).toEqual([]);
  });

  it('names rows by the events, not their arrival: another interleaving gives the same table', async () => {
    const events = [order('ann', 1, 1), payment('ann', 2, 1), order('ann', 3, 2), payment('ann', 3, 2)];
    const first = await joinDriver(tenMs(), 5);
    await first.pipeInput(events);
    await first.endOfInput();
    const second = await joinDriver(tenMs(), 5);
    await second.pipeInput([events[3]!, events[1]!, events[2]!, events[0]!]);
    await second.endOfInput();
    expect(tableOf(second)).toEqual(tableOf(first));
    expect(Object.keys(tableOf(first))).toHaveLength(4);
  });

  it('identical events each make their own rows', async () => {
    const driver = await joinDriver(tenMs());
    await driver.pipeInput([order('ann', 1), order('ann', 1), payment('ann', 2)]);
    await driver.endOfInput();
    expect(driver.table()).toHaveLength(2);
  });
});

describe('intervalJoin', () => {
  const around = (lower: number | string, upper: number | string) =>
    intervalJoin<Trade, Trade>({ ...SOURCE, lower, upper, join: intervalPair });

  it('emits a pair as soon as its second event arrives, bounds included, and never twice', async () => {
    const driver = await joinDriver(around(-2, 3), 100);
    await driver.pipeInput([order('ann', 50, 1)]);
    expect(driver.readOutputs()).toEqual([]);
    await driver.pipeInput([
      payment('ann', 48, 1),
      payment('ann', 53, 2),
      payment('ann', 47, 3),
      payment('ann', 54, 4),
    ]);
    expect(driver.readOutputs().map((output) => output.value)).toEqual([
      { key: 'ann', order: [50, 1], payment: [48, 1], times: [50, 48] },
      { key: 'ann', order: [50, 1], payment: [53, 2], times: [50, 53] },
    ]);
    // Flink: the pair carries the later of the two times.
    expect(driver.readOutputs().map((output) => output.time)).toEqual([50, 53]);
    await driver.pipeInput([order('bob', 50, 9), order('ann', 52, 2)]); // pairs with 53 and 54 (52 − 2 ≤ t ≤ 55)
    expect(
      driver
        .readOutputs()
        .slice(2)
        .map((output) => (output.value as { payment: number[] }).payment),
    ).toEqual([
      [53, 2],
      [54, 4],
    ]);
    await driver.endOfInput();
    expect(driver.readOutputs()).toHaveLength(4);
  });

  it('accepts durations as strings, as the job API does', async () => {
    const driver = await joinDriver(around('-1s', '2s'), 10_000);
    await driver.pipeInput([
      order('ann', 10_000),
      payment('ann', 9_000),
      payment('ann', 12_000),
      payment('ann', 12_001),
    ]);
    expect(driver.readOutputs()).toHaveLength(2);
  });

  it('keeps a left event until the watermark passes a.time + upper: a match before is emitted, after it the right event is late', async () => {
    const driver = await joinDriver(around(0, 10));
    await driver.pipeInput([order('ann', 100)]);
    await driver.advanceWatermark(110); // = a.time + upper: a right event at 110 can still come
    expect((await driver.stateRows()).map((row) => row.namespace)).toEqual(['m:join.interval.left', 't']);
    await driver.pipeInput([payment('ann', 110)]);
    expect(driver.readOutputs()).toHaveLength(1);
    await driver.advanceWatermark(111); // a.time + upper < watermark: purged
    expect((await driver.stateRows()).filter((row) => row.namespace === 'm:join.interval.left')).toEqual([]);
    await driver.pipeInput([payment('ann', 110, 1)]);
    expect(driver.readOutputs()).toHaveLength(1);
    expect(driver.readLate().map(({ key, time }) => [key, time])).toEqual([['ann', 110]]);
  });

  it('keeps a right event until the watermark passes b.time − lower', async () => {
    const driver = await joinDriver(around(-5, 5));
    await driver.pipeInput([payment('ann', 100)]);
    await driver.advanceWatermark(105); // an order at 105 still pairs (105 − 5 ≤ 100)
    await driver.pipeInput([order('ann', 105)]);
    expect(driver.readOutputs()).toHaveLength(1);
    await driver.advanceWatermark(106);
    expect((await driver.stateRows()).filter((row) => row.namespace === 'm:join.interval.right')).toEqual([]);
  });

  it('an event behind the watermark joins nothing and goes to the late output', async () => {
    const driver = await joinDriver(around(-50, 50), 10);
    await driver.pipeInput([order('ann', 100), order('ann', 130)]); // watermark 120
    await driver.pipeInput([payment('ann', 119), payment('ann', 120)]);
    expect(driver.readOutputs().map((output) => (output.value as { payment: number[] }).payment[0])).toEqual([
      120, 120,
    ]);
    expect(driver.readLate().map(({ time, windows }) => [time, windows])).toEqual([[119, []]]);
  });

  it('identical events each make their own rows, also after their twin paired', async () => {
    const driver = await joinDriver(around(0, 10), 10);
    await driver.pipeInput([order('ann', 1), payment('ann', 2), order('ann', 1), payment('ann', 2)]);
    expect(driver.table()).toHaveLength(4);
  });
});

describe('both joins', () => {
  it('a join that returns undefined makes no row', async () => {
    const sameId = (o: Trade, p: Trade) => (o.id === p.id ? { id: o.id } : undefined);
    const window = await joinDriver(windowJoin<Trade, Trade>({ ...SOURCE, window: { size: 10 }, join: sameId }));
    const interval = await joinDriver(intervalJoin<Trade, Trade>({ ...SOURCE, lower: -5, upper: 5, join: sameId }));
    for (const driver of [window, interval]) {
      await driver.pipeInput([order('ann', 1, 1), order('ann', 2, 2), payment('ann', 3, 2)]);
      await driver.endOfInput();
      expect(summary(driver)).toEqual([['ann', { id: 2 }]]);
    }
  });

  it('hand join() copies: a join that mutates its arguments changes no buffered event', async () => {
    const mutating = (o: Trade, p: Trade) => {
      const row = { order: o.id, payment: p.id };
      o.id = -1;
      p.id = -1;
      return row;
    };
    const interval = await joinDriver(intervalJoin<Trade, Trade>({ ...SOURCE, lower: -10, upper: 10, join: mutating }));
    const window = await joinDriver(windowJoin<Trade, Trade>({ ...SOURCE, window: { size: 10 }, join: mutating }));
    for (const driver of [interval, window]) {
      await driver.pipeInput([order('ann', 1, 1), payment('ann', 2, 2), payment('ann', 3, 3), order('ann', 4, 4)]);
      await driver.endOfInput();
      expect(driver.table().map((output) => output.value)).toEqual(
        expect.arrayContaining([
          { order: 1, payment: 2 },
          { order: 1, payment: 3 },
          { order: 4, payment: 2 },
          { order: 4, payment: 3 },
        ]),
      );
      expect(driver.table()).toHaveLength(4);
    }
  });

  it('dead-letter an event of a source that is not one of the two sides, naming them', async () => {
    const driver = await joinDriver(windowJoin({ ...SOURCE, window: { size: 10 }, join: windowPair }), 0, true);
    await driver.pipeInput([{ key: 'ann', value: { user: 'ann', ts: 1, id: 0 }, source: 'refunds' }]);
    expect(driver.readDeadLetters().map((letter) => [letter.reason, letter.error])).toEqual([
      [
        'handler-failed',
        `onEvent threw after 1 attempts: windowJoin: an event of source "refunds", but the join pairs 'orders' (left) with 'payments' (right)`,
      ],
    ]);
  });

  it.each([
    [
      { right: 'payments', window: { size: 10 }, join: windowPair },
      "windowJoin: option 'left': expected the name of one of the job's sources, found undefined",
    ],
    [
      { left: 'orders', right: 'orders', window: { size: 10 }, join: windowPair },
      "windowJoin: option 'right': must name another source than 'left' (both are 'orders')",
    ],
    [
      { ...SOURCE, window: { size: 10 } },
      "windowJoin: option 'join': expected a function (left, right, info) => value, found undefined",
    ],
    [{ ...SOURCE, join: windowPair }, "windowJoin: option 'window': expected { size, offset? }, found undefined"],
    [{ ...SOURCE, window: { size: 0 }, join: windowPair }, "windowJoin: option 'window.size': must be greater than 0"],
    [
      { ...SOURCE, window: { size: '10 parsecs' }, join: windowPair },
      `windowJoin: option 'window.size': expected a duration such as 500, '5s' or '1m', found "10 parsecs"`,
    ],
    [
      { ...SOURCE, window: { size: 10 }, allowedLateness: '-1s', join: windowPair },
      `windowJoin: option 'allowedLateness': expected a duration such as 500, '5s' or '1m', found "-1s"`,
    ],
  ])('windowJoin refuses bad options: %j', (options, message) => {
    expect(() => windowJoin(options as never)).toThrow(message);
  });

  it.each([
    [
      { ...SOURCE, upper: 5, join: intervalPair },
      "intervalJoin: option 'lower': is required (a number of ms, or a duration such as '5s')",
    ],
    [
      { ...SOURCE, lower: '2s', upper: '1s', join: intervalPair },
      "intervalJoin: option 'upper': must be at least 'lower' (2000 ms), found 1000 ms",
    ],
    [
      { ...SOURCE, lower: 0, upper: { ms: 5 }, join: intervalPair },
      "intervalJoin: option 'upper': expected a duration such as 500, '5s' or '1m', found an object",
    ],
  ])('intervalJoin refuses bad options: %j', (options, message) => {
    expect(() => intervalJoin(options as never)).toThrow(message);
  });

  it('a bad option is a JOB_INVALID error', () => {
    expect(() => intervalJoin({ ...SOURCE, lower: 1, upper: 0, join: intervalPair })).toThrow(
      expect.objectContaining({ code: 'JOB_INVALID', name: 'JobDefinitionError' }),
    );
  });
});

describe('the example job (examples/orders-payments-join.mjs, through the built package)', () => {
  it('joins each order with its payments of the same minute; a payment for a fired minute is late', async () => {
    const job = await loadJob(fileURLToPath(new URL('../examples/orders-payments-join.mjs', import.meta.url)));
    const driver = await TaskTestDriver.open(job);
    drivers.push(driver);
    const placed = (orderId: string, customer: string, amount: number, placedAt: number): DriverInput => ({
      key: orderId,
      value: { orderId, customer, amount, placedAt },
      source: 'orders',
    });
    const paid = (orderId: string, amount: number, method: string, paidAt: number): DriverInput => ({
      key: orderId,
      value: { orderId, amount, method, paidAt },
      source: 'payments',
    });
    await driver.pipeInput([
      placed('o1', 'ann', 30, 1_000),
      paid('o1', 30, 'card', 5_000),
      placed('o2', 'bob', 12, 2_000),
      paid('o1', 1, 'tip', 3_000),
      placed('o3', 'cy', 7, 61_000),
      paid('o2', 12, 'cash', 70_000), // another minute than its order: no pair
      paid('o3', 7, 'card', 62_000),
      paid('o1', 2, 'tip', 55_000), // watermark 65 s: the first minute has fired
    ]);
    await driver.endOfInput();
    const minute = (start: number) => new Date(start).toISOString();
    expect(driver.table().map((output) => [output.key, output.value])).toEqual(
      expect.arrayContaining([
        ['o1', { orderId: 'o1', customer: 'ann', ordered: 30, paid: 30, method: 'card', windowStart: minute(0) }],
        ['o1', { orderId: 'o1', customer: 'ann', ordered: 30, paid: 1, method: 'tip', windowStart: minute(0) }],
        ['o3', { orderId: 'o3', customer: 'cy', ordered: 7, paid: 7, method: 'card', windowStart: minute(60_000) }],
      ]),
    );
    expect(driver.table()).toHaveLength(3);
    expect(driver.readLate().map(({ key, time }) => [key, time])).toEqual([['o1', 55_000]]);
  });
});

describe('what the joins rely on', () => {
  it('the driver feeds each event to the source it names, and refuses a name the job does not have', async () => {
    const seen: Array<string | undefined> = [];
    const driver = await joinDriver({ onEvent: (ctx: ActorContext) => void seen.push(ctx.source) });
    await driver.pipeInput([payment('ann', 1), order('ann', 2), { key: 'ann', value: { user: 'ann', ts: 3, id: 0 } }]);
    expect(seen).toEqual(['payments', 'orders', 'orders']);
    await expect(driver.pipeInput([{ key: 'ann', value: {}, source: 'refunds' }])).rejects.toThrow(
      `the job has no source "refunds"; its sources are 'orders', 'payments'`,
    );
  });

  it('ctx.late() in onTimer is an error: there is no event to send', async () => {
    const definition: JobDefinition<Trade> = {
      name: 'late',
      version: 'v1',
      source: { topic: 'orders' },
      key: 'user',
      time: (trade) => trade.ts,
      watermark: { maxOutOfOrderness: 0, maxFutureSkew: false },
      handlerRetries: 0,
      actor: {
        onEvent: (ctx) => ctx.setEventTimeTimer(5),
        onTimer: (ctx) => ctx.late(),
      },
    };
    const driver = await TaskTestDriver.open(definition);
    drivers.push(driver);
    await driver.pipeInput([{ key: 'ann', value: { user: 'ann', ts: 1, id: 0 } }]);
    await driver.endOfInput();
    expect(driver.readLate()).toEqual([]);
    expect(driver.readDeadLetters().map((letter) => letter.error)).toEqual([
      'onTimer threw after 1 attempts: ctx.late() sends the event being handled: call it in onEvent, not onTimer',
    ]);
  });

  it('ctx.late() sends the event being handled once, even when the handler is retried', async () => {
    let attempts = 0;
    const definition: JobDefinition<Trade> = {
      name: 'late',
      version: 'v1',
      source: { topic: 'orders' },
      key: 'user',
      time: (trade) => trade.ts,
      watermark: { maxOutOfOrderness: 0, maxFutureSkew: false },
      handlerRetries: 1,
      actor: {
        onEvent(ctx) {
          ctx.late([{ start: 0, end: 10 }]);
          if (++attempts === 1) throw new Error('first attempt fails');
        },
      },
    };
    const driver = await TaskTestDriver.open(definition);
    drivers.push(driver);
    await driver.pipeInput([{ key: 'ann', value: { user: 'ann', ts: 7, id: 0 } }]);
    expect(driver.readLate()).toEqual([
      {
        key: 'ann',
        time: 7,
        value: { user: 'ann', ts: 7, id: 0 },
        windows: [{ start: 0, end: 10 }],
        partition: 0,
        sequence: 1,
      },
    ]);
  });
});
