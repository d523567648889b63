// Issue 12's engine items, each pinned: revisions that never overflow, value semantics for actor
// state and outputs, unique dead-letter ids, one event-time rule, the far-future guard, aggregate
// functions that throw, and over-long keys. Over real RocksDB through runBatch / TaskProcessor.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeEvent, MAX_KEY_BYTES } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { ManualClock } from '../protocol/clock.js';
import { TaskProcessor, type EngineSnapshot } from '../worker/task-processor.js';
import type { ActorContext, TimerInfo } from '../worker/actor-context.js';
import { runBatch, type BatchInputEvent } from '../worker/batch-run.js';
import { validateJob, type JobDefinition } from '../worker/job.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-bad-input-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));
let runs = 0;

interface Reading {
  id: number;
  key: string;
  ts: unknown;
  n: number;
}

const base = {
  version: 'v1',
  source: { topic: 'readings' },
  key: (reading: Reading) => reading.key,
  time: (reading: Reading) => reading.ts,
  watermark: { maxOutOfOrderness: 0 },
};

function readings(list: Array<Partial<Reading> & { ts: unknown }>): BatchInputEvent[] {
  return list.map((reading, id) => {
    const value = { id, key: 'k', n: 1, ...reading };
    return { key: value.key, time: typeof value.ts === 'number' ? value.ts : 0, value };
  });
}

function run(
  definition: Omit<JobDefinition<Reading>, 'version' | 'source' | 'key' | 'time' | 'watermark'> &
    Partial<JobDefinition<Reading>>,
  events: BatchInputEvent[],
  options: { batchSize?: number; readAtMs?: number } = {},
) {
  return runBatch(validateJob({ ...base, ...definition }), events, {
    partitions: 1,
    stateDir: join(stateRoot, String(runs++)),
    batchSize: options.batchSize ?? 3,
    readAtMs: options.readAtMs ?? Date.UTC(2030, 0, 1),
  });
}

describe('actor output revisions', () => {
  it('grow strictly per row with no capacity limit: 1,100 timers firing under one event never outrank a later event', async () => {
    const timers = 1_100;
    const result = await run(
      {
        name: 'revisions',
        actor: {
          onEvent(ctx: ActorContext, reading: Reading) {
            if (reading.n === 0) for (let tag = 0; tag < timers; tag++) ctx.setEventTimeTimer(50, String(tag));
            else ctx.emit(`event ${reading.id}`, { row: 'status' });
          },
          onTimer(ctx: ActorContext, timer: TimerInfo) {
            ctx.emit(`timer ${timer.tag}`, { row: 'status' });
          },
        },
      },
      // 0 arms the timers, 100 fires all of them (wm 100 ≥ 50), 200 updates the row last.
      readings([{ ts: 0, n: 0 }, { ts: 100 }, { ts: 200 }]),
    );
    const statusRows = result.outputs.filter((output) => output.id.endsWith('/status'));
    expect(statusRows).toHaveLength(timers + 2);
    for (let index = 1; index < statusRows.length; index++)
      expect(statusRows[index]!.revision).toBeGreaterThan(statusRows[index - 1]!.revision);
    expect([...result.table.values()].map((row) => row.value)).toEqual(['event 2']);
  });
});

describe('actor state has value semantics', () => {
  it('a handler that mutates what it read, sets it and then throws is retried from the value as it was', async () => {
    let failures = 0;
    const result = await run(
      {
        name: 'retry',
        actor: {
          onEvent(ctx: ActorContext, reading: Reading) {
            const counter = ctx.value<{ n: number }>('counter');
            const state = counter.get() ?? { n: 0 };
            state.n++;
            counter.set(state);
            // The second event fails once, after its write.
            if (reading.id === 1 && failures++ === 0) throw new Error('flaky');
            ctx.emit(state.n);
          },
        },
      },
      readings([{ ts: 1 }, { ts: 2 }]),
    );
    expect(failures).toBe(2);
    expect(result.deadLetters).toEqual([]);
    expect([...result.table.values()].map((row) => row.value)).toEqual([2]);
  });

  it('changing a value read from state without set() changes nothing, in memory as after a restore', async () => {
    const seen: number[] = [];
    await run(
      {
        name: 'no-set',
        actor: {
          onEvent(ctx: ActorContext) {
            const counter = ctx.value<{ n: number }>('counter');
            const map = ctx.map<{ n: number }>('per-key');
            const state = counter.get();
            seen.push(state?.n ?? -1);
            if (!state) counter.set({ n: 1 });
            else state.n += 100; // never set: not part of the state
            const entry = map.get('a');
            if (entry) entry.n += 100;
            else map.set('a', { n: 1 });
            for (const [, value] of map.entries()) value.n += 1000;
            seen.push(map.get('a')!.n);
          },
        },
      },
      readings([{ ts: 1 }, { ts: 2 }, { ts: 3 }]),
      { batchSize: 1 },
    );
    expect(seen).toEqual([-1, 1, 1, 1, 1, 1]);
  });

  it('an emitted object is a snapshot: changing it after emit does not change the output', async () => {
    const result = await run(
      {
        name: 'snapshot',
        actor: {
          onEvent(ctx: ActorContext, reading: Reading) {
            const totals = { n: reading.id };
            ctx.emit(totals, { row: 'a' });
            totals.n = 999;
            ctx.emit(totals, { row: 'b' });
          },
        },
      },
      readings([{ ts: 1 }]),
    );
    expect(result.outputs.map((output) => output.value)).toEqual([{ n: 0 }, { n: 999 }]);
  });
});

describe('window outputs', () => {
  it('are snapshots of the accumulator at emit time, even when add mutates it in place', async () => {
    const result = await run(
      {
        name: 'in-place',
        window: { kind: 'tumbling', size: 10 },
        allowedLateness: 100,
        aggregate: {
          init: () => ({ count: 0 }),
          add: (totals: { count: number }) => {
            totals.count++;
            return totals;
          },
        },
      },
      // 5 opens [0,10); 20 fires it (count 1); 6 and 7 re-emit it (counts 2, 3).
      readings([{ ts: 5 }, { ts: 20 }, { ts: 6 }, { ts: 7 }]),
      { batchSize: 10 },
    );
    const first = result.outputs.filter((output) => output.window?.start === 0);
    expect(first.map((output) => [output.revision, output.value])).toEqual([
      [1, { count: 1 }],
      [2, { count: 2 }],
      [3, { count: 3 }],
    ]);
  });
});

describe('aggregate functions that throw', () => {
  const counting = (failOn: (reading: Reading, attempt: number) => boolean) => {
    const attempts = new Map<number, number>();
    return {
      init: () => ({ count: 0, ids: [] as number[] }),
      add: (totals: { count: number; ids: number[] }, reading: Reading) => {
        // Mutates first, then may throw: a retry must start from the accumulator as it was.
        totals.count++;
        totals.ids.push(reading.id);
        const attempt = (attempts.get(reading.id) ?? 0) + 1;
        attempts.set(reading.id, attempt);
        if (failOn(reading, attempt)) throw new Error(`cannot add reading ${reading.id}`);
        return totals;
      },
      merge: (left: { count: number; ids: number[] }, right: { count: number; ids: number[] }) => ({
        count: left.count + right.count,
        ids: [...left.ids, ...right.ids],
      }),
    };
  };

  for (const window of [
    { kind: 'tumbling', size: 100 },
    { kind: 'hopping', size: 100, slide: 50 },
    { kind: 'session', gap: 100 },
  ] as const) {
    it(`are retried with the accumulator rolled back, then the event is dead-lettered and the task goes on (${window.kind})`, async () => {
      const result = await run(
        {
          name: `throwing-${window.kind}`,
          window,
          handlerRetries: 2,
          // Reading 1 fails once (retried), reading 2 always fails (dead-lettered after 3 attempts).
          aggregate: counting((reading, attempt) => (reading.id === 1 && attempt === 1) || reading.id === 2),
        },
        readings([{ ts: 10 }, { ts: 20 }, { ts: 30 }, { ts: 40 }]),
      );
      expect(result.deadLetters.map((letter) => [letter.reason, letter.sequence, letter.error])).toEqual([
        ['aggregate-failed', 3, 'aggregate add threw: cannot add reading 2 (3 attempts)'],
      ]);
      const windowed = [...result.table.values()].filter((row) => row.window!.start <= 10);
      for (const row of windowed) expect(row.value).toEqual({ count: 3, ids: [0, 1, 3] });
      expect(windowed.length).toBeGreaterThan(0);
      expect(result.processed).toBe(3);
    });
  }

  it('a result function that keeps throwing dead-letters the window, not the task', async () => {
    const result = await run(
      {
        name: 'throwing-result',
        window: { kind: 'tumbling', size: 10 },
        aggregate: {
          init: () => 0,
          add: (count: number) => count + 1,
          result: (count: number) => {
            if (count === 2) throw new Error('two is not allowed');
            return count;
          },
        },
      },
      readings([{ ts: 1 }, { ts: 2 }, { ts: 15 }, { ts: 30 }]),
    );
    expect(result.deadLetters.map((letter) => [letter.reason, letter.error])).toEqual([
      [
        'aggregate-failed',
        'window [0, 10) of key "k" not emitted: aggregate result threw: two is not allowed (3 attempts)',
      ],
    ]);
    expect([...result.table.values()].map((row) => [row.window!.start, row.value])).toEqual([
      [10, 1],
      [30, 1],
    ]);
  });
});

describe('dead letters', () => {
  it('get unique ids: three timers failing under one event are three letters', async () => {
    const result = await run(
      {
        name: 'timer-failures',
        handlerRetries: 0,
        actor: {
          onEvent(ctx: ActorContext, reading: Reading) {
            if (reading.n === 0) for (const tag of ['a', 'b', 'c']) ctx.setEventTimeTimer(50, tag);
          },
          onTimer() {
            throw new Error('timer failed');
          },
        },
      },
      readings([{ ts: 0, n: 0 }, { ts: 100 }]),
    );
    expect(result.deadLetters).toHaveLength(3);
    expect(new Set(result.deadLetters.map((letter) => letter.id)).size).toBe(3);
    expect(result.deadLetters.every((letter) => letter.sequence === 2 && letter.reason === 'handler-failed')).toBe(
      true,
    );
  });
});

describe('event times', () => {
  const counting = {
    name: 'times',
    window: { kind: 'tumbling' as const, size: 3_600_000 },
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
  };

  it('are ms or ISO 8601 (UTC without an offset) in every time zone; anything else is dead-lettered as no-time', async () => {
    const zone = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      const result = await run(
        counting,
        readings([
          { ts: '2024-03-01T10:00:00' },
          { ts: '2024-03-01T10:30:00+00:00' },
          { ts: '1' },
          { ts: 'hello 7' },
          { ts: Date.UTC(2024, 2, 1, 10, 45) },
          { ts: null },
        ]),
      );
      expect(result.deadLetters.map((letter) => [letter.reason, letter.sequence])).toEqual([
        ['no-time', 3],
        ['no-time', 4],
        ['no-time', 6],
      ]);
      expect(result.deadLetters[0]!.error).toContain('"1"');
      expect([...result.table.values()].map((row) => [row.window!.start, row.value])).toEqual([
        [Date.UTC(2024, 2, 1, 10), 3],
      ]);
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  it('far in the future of the log are dead-lettered, and the partition goes on on time', async () => {
    const readAtMs = 100_000;
    const normal = Array.from({ length: 1_000 }, (_, index) => ({ ts: 1_000 + index }));
    const result = await run(
      { ...counting, window: { kind: 'tumbling', size: 100 } },
      readings([{ ts: 500 }, { ts: 8.64e15 }, ...normal]),
      { readAtMs },
    );
    expect(result.deadLetters.map((letter) => [letter.reason, letter.sequence])).toEqual([['future-time', 2]]);
    expect(result.deadLetters[0]!.error).toMatch(/after the log received it/);
    expect(result.late).toEqual([]);
    expect(result.processed).toBe(1_001);
  });

  it('the guard follows watermark.maxFutureSkew and can be turned off', async () => {
    const events = readings([{ ts: 0 }, { ts: 5_000 }]);
    const skewed = await run({ ...counting, watermark: { maxOutOfOrderness: 0, maxFutureSkew: '1s' } }, events, {
      readAtMs: 1_000,
    });
    expect(skewed.deadLetters.map((letter) => letter.reason)).toEqual(['future-time']);
    const off = await run({ ...counting, watermark: { maxOutOfOrderness: 0, maxFutureSkew: false } }, events, {
      readAtMs: 1_000,
    });
    expect(off.deadLetters).toEqual([]);
  });
});

describe('keys', () => {
  it(`longer than ${MAX_KEY_BYTES} UTF-8 bytes are dead-lettered as bad-key; keys up to the limit work`, async () => {
    const atLimit = 'é'.repeat(MAX_KEY_BYTES / 2);
    const overLimit = atLimit + 'x';
    const result = await run(
      {
        name: 'long-keys',
        window: { kind: 'tumbling', size: 10 },
        aggregate: { init: () => 0, add: (count: number) => count + 1 },
      },
      readings([
        { ts: 1, key: atLimit },
        { ts: 2, key: overLimit },
      ]),
    );
    expect(result.deadLetters.map((letter) => [letter.reason, letter.sequence])).toEqual([['bad-key', 2]]);
    expect([...result.table.values()].map((row) => row.key)).toEqual([atLimit]);
  });

  it('holding a NUL character are dead-lettered (no serving table can store them)', async () => {
    const result = await run(
      {
        name: 'nul-keys',
        window: { kind: 'tumbling', size: 10 },
        aggregate: { init: () => 0, add: (count: number) => count + 1 },
      },
      readings([
        { ts: 1, key: 'a\u0000b' },
        { ts: 2, key: 'ab' },
      ]),
    );
    expect(result.deadLetters.map((letter) => [letter.reason, letter.error])).toEqual([
      ['bad-key', 'event key is not usable: the key contains a NUL character (U+0000)'],
    ]);
  });
});

describe('actor output ids', () => {
  it("keep key 'a/b' and key 'a' row 'b' apart, in the ids and in the table", async () => {
    const result = await run(
      {
        name: 'ids',
        actor: {
          onEvent(ctx: ActorContext, reading: Reading) {
            if (ctx.key === 'a') ctx.emit(`row b of a (${reading.id})`, { row: 'b' });
            else ctx.emit(`own row of ${ctx.key} (${reading.id})`);
          },
        },
      },
      readings([
        { ts: 1, key: 'a/b' },
        { ts: 2, key: 'a' },
      ]),
    );
    expect(new Set(result.outputs.map((output) => output.id)).size).toBe(2);
    expect([...result.table.values()].map((output) => [output.key, output.row, output.value]).sort()).toEqual([
      ['a', 'b', 'row b of a (1)'],
      ['a/b', undefined, 'own row of a/b (0)'],
    ]);
  });
});

describe('actor revisions across a restore', () => {
  async function revisionsAfterRestore(
    engine: EngineSnapshot | 'from-first-run',
  ): Promise<{ before: number[]; after: number[] }> {
    const job = validateJob({
      ...base,
      name: 'restore',
      actor: { onEvent: (ctx: ActorContext) => ctx.emit(ctx.eventTimeMs) },
    });
    const store = await TaskStore.open(join(stateRoot, String(runs++)));
    try {
      const message = (sequence: number) => ({
        data: encodeEvent({ key: 'k', time: sequence, value: { key: 'k', ts: sequence } }),
        sequence,
      });
      const first = new TaskProcessor(job, 0, new KeyedState(store), new ManualClock(0));
      const before = (await first.processBatch([message(1), message(2), message(3)])).outputs.map(
        (output) => output.revision,
      );
      const snapshot = engine === 'from-first-run' ? first.snapshot() : engine;
      const state = new KeyedState(store);
      const restored = await TaskProcessor.restore(
        job,
        0,
        state,
        new ManualClock(0),
        JSON.parse(JSON.stringify(snapshot)) as EngineSnapshot,
      );
      const after = (await restored.processBatch([message(4), message(5)])).outputs.map((output) => output.revision);
      return { before, after };
    } finally {
      await store.close();
    }
  }

  it('continue from the checkpointed counter', async () => {
    const { before, after } = await revisionsAfterRestore('from-first-run');
    expect(before).toEqual([1, 2, 3]);
    expect(after).toEqual([4, 5]);
  });

  it('continue above the last revision of a checkpoint written before the counter (sequence × 1024 + emits)', async () => {
    const { after } = await revisionsAfterRestore({
      watermark: { currentMs: 3, maxEventTimeMs: 3, atLastEventMs: 3 },
      actor: { sequence: 3, emits: 1 },
    });
    expect(after).toEqual([3 * 1024 + 2, 3 * 1024 + 3]);
  });
});
