// The archive phase of a replay on one thread, without NATS: segments already fetched (Parquet, as
// the archiver writes them, 100k events each) decoded whole, taken in a replaying task's batches
// and run through the task processor (a tumbling 1-minute count per user, RocksDB state), as a
// task reading its partition's archive does. Prints events/s per thread (issue 17 aims at 1M) and
// how the time splits between decoding the segments and processing their events.
// Run: npx tsx bench/archive-phase.ts [events=1000000] [keys=10000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { messagesOf } from '../archive/reader.js';
import { decodeSegment, encodeSegment, REPLAY_COLUMNS, segmentEventsOf } from '../archive/segment-format.js';
import { encodeEvent, ManualClock } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { validateJob } from '../worker/job.js';
import { TaskProcessor } from '../worker/task-processor.js';

const totalEvents = Number(process.argv[2] ?? 1_000_000);
const keyCount = Number(process.argv[3] ?? 10_000);
const SEGMENT_EVENTS = 100_000;
/** A replaying task's batch: batchMessages (10k) × REPLAY_BATCH_FACTOR. */
const BATCH = 40_000;
const RUNS = Number(process.env.RUNS ?? 3);

const startMs = Date.UTC(2026, 0, 1);
const segments: Uint8Array[] = [];
for (let first = 0; first < totalEvents; first += SEGMENT_EVENTS) {
  const messages = [];
  for (let index = first; index < Math.min(totalEvents, first + SEGMENT_EVENTS); index++) {
    // The replay benches' shape: mostly in order, some events up to 5 s late.
    const ts = startMs + index - ((index * 7919) % 5_000);
    const user = `user-${(index * 104_729) % keyCount}`;
    const data = encodeEvent({ key: user, time: ts, value: { user, ts, page: `/page/${index % 200}` } });
    messages.push({ sequence: index + 1, logTimeMs: startMs + index + 3, data });
  }
  segments.push(encodeSegment(segmentEventsOf(messages)));
}

const job = validateJob({
  name: 'clicks',
  version: 'v1',
  source: { topic: 'clicks', key: 'user' },
  time: (click: { ts: number }) => click.ts,
  watermark: { maxOutOfOrderness: '5s' },
  window: { kind: 'tumbling', size: '1m' },
  aggregate: { init: () => 0, add: (count: number) => count + 1 },
});

for (let run = 1; run <= RUNS; run++) {
  const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-archive-phase-'));
  const store = await TaskStore.open(dir);
  try {
    const processor = new TaskProcessor(job, 0, new KeyedState(store), new ManualClock(startMs));
    let decodeMs = 0;
    let outputs = 0;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    for (const segment of segments) {
      const decodeStarted = performance.now();
      const events = await decodeSegment(segment, REPLAY_COLUMNS);
      decodeMs += performance.now() - decodeStarted;
      for (let from = 0; from < events.data.length; from += BATCH) {
        const batch = messagesOf(events, from, Math.min(events.data.length, from + BATCH));
        outputs += (await processor.processBatch(batch)).outputs.length;
      }
    }
    outputs += (await processor.endOfInput()).outputs.length;
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    console.log(
      `run ${run}: ${Math.round(totalEvents / seconds).toLocaleString('en')} events/s on one thread (${seconds.toFixed(2)} s, ` +
        `${((cpu.user + cpu.system) / totalEvents).toFixed(2)} CPU µs/event; decoding the segments ${(decodeMs / 1000).toFixed(2)} s; ${outputs} window rows)`,
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
