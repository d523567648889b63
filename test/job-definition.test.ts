// Job definitions: validation fails fast naming the bad field; durations parse; the idle
// watermark advances by processing time only when configured.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeEvent } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { ManualClock } from '../protocol/clock.js';
import { validateJob, type JobDefinition } from '../worker/job.js';
import { TaskProcessor } from '../worker/task-processor.js';

const base: JobDefinition = {
  name: 'clicks',
  version: 'v1',
  source: { topic: 'clicks' },
  time: (event: { ts: number }) => event.ts,
  watermark: { maxOutOfOrderness: '2s' },
  window: { kind: 'tumbling', size: '1m' },
  aggregate: { init: () => 0, add: (count: number) => count + 1 },
};

describe('job validation', () => {
  it('accepts duration strings and fills defaults', () => {
    const job = validateJob({
      ...base,
      allowedLateness: '5s',
      window: { kind: 'hopping', size: '1m', slide: '10s', offset: '-1h' },
    });
    expect(job.maxOutOfOrdernessMs).toBe(2_000);
    expect(job.allowedLatenessMs).toBe(5_000);
    expect(job.kind).toBe('window');
    expect(job.kind === 'window' && job.window).toEqual({
      kind: 'hopping',
      sizeMs: 60_000,
      slideMs: 10_000,
      gapMs: 0,
      offsetMs: -3_600_000,
    });
    expect(job.sink).toBe('kv');
    expect(job.handlerRetries).toBe(2);
  });

  it.each([
    [{ time: undefined }, /field 'time': is required/],
    [
      { watermark: { maxOutOfOrderness: 'soon' } },
      /field 'watermark.maxOutOfOrderness': expected a duration such as 500, '5s' or '1m', found "soon"/,
    ],
    [{ window: { kind: 'tumbling' } }, /field 'window.size': is required/],
    [{ window: { kind: 'session', gap: '5m' } }, /field 'aggregate.merge': is required for session windows/],
    [{ window: { kind: 'sliding', size: 1 } }, /field 'window.kind'/],
    [{ aggregate: undefined }, /field 'aggregate': is required with a window/],
    [{ window: undefined, aggregate: undefined }, /field 'actor': a job needs a window with an aggregate, or an actor/],
    [{ name: 'my job' }, /field 'name': job name "my job" is not valid/],
    [{ source: {} }, /field 'source.topic'/],
    [{ allowedLateness: -5 }, /field 'allowedLateness': expected a non-negative number of ms, found -5/],
  ])('rejects %o naming the field', (change, message) => {
    expect(() => validateJob({ ...base, ...change } as unknown, 'jobs/clicks.mjs')).toThrow(message);
    expect(() => validateJob({ ...base, ...change } as unknown, 'jobs/clicks.mjs')).toThrow(/^jobs\/clicks\.mjs: /);
  });
});

describe('idle watermark', () => {
  const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-idle-'));
  afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

  async function processor(idleTimeout: string | undefined, dir: string) {
    const job = validateJob({ ...base, watermark: { maxOutOfOrderness: '2s', idleTimeout } });
    const clock = new ManualClock(1_000_000);
    const store = await TaskStore.open(join(stateRoot, dir));
    return { processor: new TaskProcessor(job, 0, new KeyedState(store), clock), clock, store };
  }
  const click = (ts: number, sequence: number) => ({
    data: encodeEvent({ key: 'ann', time: ts, value: { ts } }),
    sequence,
  });

  it('fires an open window once the task has been idle past idleTimeout and processing time passes its end', async () => {
    const { processor: task, clock, store } = await processor('30s', 'a');
    await task.processBatch([click(10_000, 1)]);
    expect(task.watermark.current).toBe(8_000);
    clock.advance(29_000);
    expect((await task.onIdle()).outputs).toEqual([]); // not idle long enough
    clock.advance(52_000); // idle 81 s: 51 s past the timeout → watermark 8 s + 51 s = 59 s < 60 s − 1
    expect((await task.onIdle()).outputs).toEqual([]);
    clock.advance(1_000); // idle 82 s → watermark 60 s ≥ 60 s − 1: the window fires
    const outputs = (await task.onIdle()).outputs;
    expect(outputs.map((output) => [output.window, output.value])).toEqual([[{ start: 0, end: 60_000 }, 1]]);
    await store.close();
  });

  it('never advances by processing time without idleTimeout (results depend only on event order)', async () => {
    const { processor: task, clock, store } = await processor(undefined, 'b');
    await task.processBatch([click(10_000, 1)]);
    clock.advance(3_600_000);
    expect((await task.onIdle()).outputs).toEqual([]);
    expect(task.watermark.current).toBe(8_000);
    await store.close();
  });
});
