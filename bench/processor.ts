// The task processor alone (no NATS): events per second through decode, key and time, windows or
// actor state and emits, over msgpack events already in memory. Prices the per-event engine work
// (value copies, aggregate rollback, checks) that the live benches mix with consuming and writing.
// Run: npx tsx bench/processor.ts [events=1000000] [keys=1000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEvent } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import type { ActorContext } from '../worker/actor-context.js';
import { ManualClock } from '../protocol/clock.js';
import { validateJob, type JobDefinition } from '../worker/job.js';
import { TaskProcessor, type RawMessage } from '../worker/task-processor.js';

const totalEvents = Number(process.argv[2] ?? 1_000_000);
const keyCount = Number(process.argv[3] ?? 1000);
const BATCH = 10_000;

const startMs = Date.UTC(2026, 0, 1);
const messages: RawMessage[] = [];
for (let index = 0; index < totalEvents; index++) {
  const time = startMs + index - (index % 7);
  const user = `user-${(index * 7919) % keyCount}`;
  messages.push({
    data: encodeEvent({ key: user, time, value: { user, ts: time, page: index % 13 } }),
    sequence: index + 1,
    logTimeMs: time,
  });
}
// As the NATS client hands events over: views into large read buffers. Small arrays of their own
// (what encodeEvent returns) live on V8's heap, and the decoder's first look at their buffer moves
// each off it, a cost no live event pays (it made decoding look ≈ 1.5× dearer here).
const allBytes = new Uint8Array(messages.reduce((sum, message) => sum + message.data.length, 0));
let offset = 0;
for (const message of messages) {
  allBytes.set(message.data, offset);
  message.data = allBytes.subarray(offset, offset + message.data.length);
  offset += message.data.length;
}

type Click = { user: string; ts: number; page: number };
/** The same job with a memory budget of a third of its open windows: the fired ones spill to RocksDB. */
const SPILL_ROWS = Math.max(1, Math.floor(keyCount * 2));
const SPILLED = `tumbling count, 5 min allowed lateness, spilled past ${SPILL_ROWS.toLocaleString('en')} rows`;
const base = {
  version: 'v1',
  source: { topic: 'clicks' },
  time: (event: Click) => event.ts,
  watermark: { maxOutOfOrderness: '1s' },
};
const jobs: Record<string, JobDefinition<Click>> = {
  'tumbling count (number accumulator)': {
    ...base,
    name: 'count',
    window: { kind: 'tumbling', size: '1m' },
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
  },
  'tumbling object accumulator, mutated in place': {
    ...base,
    name: 'pages',
    window: { kind: 'tumbling', size: '1m' },
    aggregate: {
      init: () => ({ clicks: 0, pages: [] as number[] }),
      add: (totals: { clicks: number; pages: number[] }, click) => {
        totals.clicks++;
        if (!totals.pages.includes(click.page)) totals.pages.push(click.page);
        return totals;
      },
    },
  },
  // Fired windows stay open 5 minutes for late events: ≈ 6 windows of every key open at a time.
  'tumbling count, 5 min allowed lateness, in memory': {
    ...base,
    name: 'late-count',
    window: { kind: 'tumbling', size: '1m' },
    allowedLateness: '5m',
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
  },
  [SPILLED]: {
    ...base,
    name: 'late-count',
    window: { kind: 'tumbling', size: '1m' },
    allowedLateness: '5m',
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
  },
  'actor: object state read, changed, written, emitted': {
    ...base,
    name: 'actor',
    actor: {
      onEvent: (ctx: ActorContext, click) => {
        const totals = ctx.value<{ clicks: number; last: number }>('totals');
        const current = totals.get() ?? { clicks: 0, last: 0 };
        current.clicks++;
        current.last = click.ts;
        totals.set(current);
        if (current.clicks % 10 === 0) ctx.emit(current);
      },
    },
  },
};

// PROCESSOR_JOBS=spilled (a part of the names) runs only the jobs whose name has it.
const only = process.env.PROCESSOR_JOBS;
for (const [name, definition] of Object.entries(jobs)) {
  if (only !== undefined && !name.includes(only)) continue;
  const job = validateJob(definition);
  const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-processor-'));
  const store = await TaskStore.open(dir);
  try {
    const state = new KeyedState(store);
    const windowMemoryRows = name === SPILLED ? SPILL_ROWS : undefined;
    const processor = new TaskProcessor(
      job,
      0,
      state,
      new ManualClock(startMs),
      undefined,
      undefined,
      undefined,
      windowMemoryRows,
    );
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    let outputs = 0;
    for (let offset = 0; offset < messages.length; offset += BATCH) {
      const result = await processor.processBatch(messages.slice(offset, offset + BATCH));
      outputs += result.outputs.length;
    }
    outputs += (await processor.endOfInput()).outputs.length;
    const seconds = (performance.now() - started) / 1000;
    // CPU time too: on a shared machine it moves less than the wall clock.
    const cpu = process.cpuUsage(cpuBefore);
    console.log(
      `${name}: ${Math.round(totalEvents / seconds).toLocaleString('en')} events/s (${seconds.toFixed(2)} s, ${outputs} outputs, ${((seconds * 1e6) / totalEvents).toFixed(2)} µs/event, ${((cpu.user + cpu.system) / totalEvents).toFixed(2)} CPU µs/event)`,
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
