// Operator semantics through the TaskTestDriver: windows of each kind, lateness, timers of both
// domains, retries — stepped event by event and watermark by watermark, no nats-server.
import { afterEach, describe, expect, it } from 'vitest';
import type { ActorContext, TimerInfo } from '../worker/actor-context.js';
import type { JobDefinition } from '../worker/job.js';
import { TaskTestDriver } from '../worker/task-test-driver.js';

interface Click {
  user: string;
  ts: number;
}

const drivers: TaskTestDriver[] = [];
afterEach(async () => {
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
});

async function driverFor(definition: Partial<JobDefinition<Click>>, startMs = 0): Promise<TaskTestDriver> {
  const driver = await TaskTestDriver.open(
    {
      name: 'driven',
      version: 'v1',
      source: { topic: 'clicks' },
      key: (click: Click) => click.user,
      time: (click: Click) => click.ts,
      watermark: { maxOutOfOrderness: 0, maxFutureSkew: false },
      ...definition,
    } as JobDefinition<Click>,
    { startMs },
  );
  drivers.push(driver);
  return driver;
}

const click = (user: string, ts: number) => ({ key: user, value: { user, ts } });
const count = { init: () => 0, add: (total: number) => total + 1, merge: (a: number, b: number) => a + b };
const summary = (driver: TaskTestDriver) =>
  driver
    .readOutputs()
    .map((output) => [
      output.kind,
      output.key,
      output.window?.start,
      output.window?.end,
      output.value,
      output.revision,
    ]);

describe('windows', () => {
  it('a tumbling window fires when the watermark reaches end − 1, not before', async () => {
    const driver = await driverFor({ window: { kind: 'tumbling', size: 10 }, aggregate: count });
    await driver.pipeInput([click('ann', 2), click('ann', 7)]);
    await driver.advanceWatermark(8);
    expect(driver.readOutputs()).toEqual([]);
    await driver.advanceWatermark(9);
    expect(summary(driver)).toEqual([['update', 'ann', 0, 10, 2, 1]]);
  });

  it('a hopping window counts an event in every window that holds it', async () => {
    const driver = await driverFor({ window: { kind: 'hopping', size: 10, slide: 5 }, aggregate: count });
    await driver.pipeInput([click('ann', 7)]);
    await driver.endOfInput();
    expect(summary(driver)).toEqual([
      ['update', 'ann', 0, 10, 1, 1],
      ['update', 'ann', 5, 15, 1, 1],
    ]);
  });

  it('an event within the allowed lateness re-emits the fired window; after the purge it is late', async () => {
    const driver = await driverFor({ window: { kind: 'tumbling', size: 10 }, allowedLateness: 5, aggregate: count });
    await driver.pipeInput([click('ann', 1), click('ann', 12)]); // wm 12: [0,10) fired, not purged (purge at 14)
    await driver.pipeInput([click('ann', 3)]);
    expect(summary(driver)).toEqual([
      ['update', 'ann', 0, 10, 1, 1],
      ['update', 'ann', 0, 10, 2, 2],
    ]);
    await driver.advanceWatermark(14);
    await driver.pipeInput([click('ann', 4)]);
    expect(driver.readLate().map((record) => [record.time, record.windows])).toEqual([[4, [{ start: 0, end: 10 }]]]);
  });

  it('sessions merge, and an emitted session absorbed by a later one is retracted', async () => {
    const driver = await driverFor({ window: { kind: 'session', gap: 10 }, allowedLateness: 100, aggregate: count });
    await driver.pipeInput([click('ann', 0), click('ann', 30)]); // [0,10) fires at wm 30
    await driver.pipeInput([click('ann', 8)]); // [8,18) joins [0,10) → [0,18)
    expect(summary(driver)).toEqual([
      ['update', 'ann', 0, 10, 1, 1],
      ['retract', 'ann', 0, 10, null, 2],
      ['update', 'ann', 0, 18, 2, 1],
    ]);
    // [30,40) has not fired yet (wm 30 < 39): the table holds the merged session only.
    expect(driver.table().map((output) => [output.window?.start, output.window?.end, output.value])).toEqual([
      [0, 18, 2],
    ]);
  });

  it('a flaky aggregate is retried from the accumulator as it was', async () => {
    let calls = 0;
    const driver = await driverFor({
      window: { kind: 'tumbling', size: 10 },
      aggregate: {
        init: () => ({ n: 0 }),
        add: (totals: { n: number }) => {
          totals.n++;
          if (++calls === 2) throw new Error('once');
          return totals;
        },
      },
    });
    await driver.pipeInput([click('ann', 1), click('ann', 2)]);
    await driver.endOfInput();
    expect(driver.table().map((output) => output.value)).toEqual([{ n: 2 }]);
    expect(driver.readDeadLetters()).toEqual([]);
  });
});

describe('actor timers', () => {
  const alerts = {
    onEvent(ctx: ActorContext, clicked: Click) {
      ctx.setEventTimeTimer(clicked.ts + 100, 'quiet');
      ctx.setProcessingTimeTimer(ctx.now() + 1_000, 'remind');
      if (clicked.ts === 50) ctx.deleteTimer('event-time', 100, 'quiet');
    },
    onTimer(ctx: ActorContext, timer: TimerInfo) {
      ctx.emit(`${timer.tag}@${timer.timeMs}`, { row: timer.tag });
    },
  };

  it('an event-time timer fires when the watermark reaches its time; a deleted one never fires', async () => {
    const driver = await driverFor({ actor: alerts });
    await driver.pipeInput([click('ann', 0), click('ann', 50)]); // 50 deletes the timer at 100 and sets one at 150
    await driver.advanceWatermark(149);
    expect(driver.readOutputs().filter((output) => output.row === 'quiet')).toEqual([]);
    await driver.advanceWatermark(150);
    expect(driver.readOutputs().map((output) => output.value)).toEqual(['quiet@150']);
  });

  it('a processing-time timer fires when the manual clock reaches it', async () => {
    const driver = await driverFor({ actor: alerts }, 5_000);
    await driver.pipeInput([click('ann', 0)]);
    await driver.advanceProcessingTime(999);
    expect(driver.readOutputs()).toEqual([]);
    await driver.advanceProcessingTime(1);
    expect(driver.readOutputs().map((output) => output.value)).toEqual(['remind@6000']);
  });

  it('timers due together fire in (time, key, tag) order, whatever order they were set in', async () => {
    const driver = await driverFor({
      actor: {
        onEvent(ctx: ActorContext) {
          for (const tag of ['c', 'a', 'b']) ctx.setEventTimeTimer(10, tag);
        },
        onTimer(ctx: ActorContext, timer: TimerInfo) {
          ctx.emit(`${ctx.key}:${timer.tag}`, { row: timer.tag });
        },
      },
    });
    await driver.pipeInput([click('zed', 0), click('amy', 0)]);
    await driver.advanceWatermark(10);
    expect(driver.readOutputs().map((output) => output.value)).toEqual([
      'amy:a',
      'amy:b',
      'amy:c',
      'zed:a',
      'zed:b',
      'zed:c',
    ]);
  });

  it('with an idle timeout, the watermark moves on with processing time and fires event-time timers', async () => {
    const driver = await driverFor({
      actor: alerts,
      watermark: { maxOutOfOrderness: 0, idleTimeout: 1_000, maxFutureSkew: false },
    });
    await driver.pipeInput([click('ann', 0)]);
    await driver.advanceProcessingTime(1_050); // idle for 50 ms past the timeout: wm 0 + 50
    expect(driver.watermarkMs).toBe(50);
    await driver.advanceProcessingTime(50);
    expect(driver.readOutputs().map((output) => output.value)).toEqual(['remind@1000', 'quiet@100']);
  });
});
