// `kappa run`: the same job and the same TaskProcessor over a file instead of a topic, no NATS.
// Events are routed to partitions with the topic's hash and kept in file order within each, so
// lateness decisions match a streaming run over a P-partition topic; at the end of input the
// watermark goes to the end of time and every remaining window fires (Flink's batch mode).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { encodeEvent, partitionOf } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { systemClock, type Clock } from '../protocol/clock.js';
import type { JobSpec } from './job.js';
import { ServingView } from './serving-view.js';
import { TaskProcessor, type BatchResult, type RawMessage } from './task-processor.js';
import type { DeadLetter, LateRecord, Output } from './types.js';

export interface BatchInputEvent {
  /** The key the event is partitioned by (what the producer's --key field gives). */
  key: string;
  /** Event time carried in the envelope; the job's `time` function decides event time. */
  time: number;
  value: unknown;
}

export interface BatchRunOptions {
  partitions: number;
  /** Where the per-partition RocksDB instances live (wiped first). */
  stateDir: string;
  /** Events per processor batch; results must not depend on it. */
  batchSize?: number;
  clock?: Clock;
  /** When the input was read (default: now): what the far-future guard measures event times against. */
  readAtMs?: number;
}

export interface BatchRunResult {
  /** Final table: newest revision per output id, retracted rows removed. */
  table: ServingView;
  /** Every output in emission order (all revisions). */
  outputs: Output[];
  late: LateRecord[];
  deadLetters: DeadLetter[];
  processed: number;
  lateUpdates: number;
}

export async function runBatch(
  job: JobSpec,
  events: Iterable<BatchInputEvent | Uint8Array>,
  options: BatchRunOptions,
): Promise<BatchRunResult> {
  const batchSize = options.batchSize ?? 10_000;
  const byPartition: RawMessage[][] = Array.from({ length: options.partitions }, () => []);
  // A file has no log timestamps: the far-future guard measures event times against the time the
  // run read its input.
  const logTimeMs = options.readAtMs ?? systemClock.now();
  for (const event of events) {
    // Raw bytes (for testing undecodable input) go to partition 0.
    const partition = event instanceof Uint8Array ? 0 : partitionOf(event.key, options.partitions);
    const messages = byPartition[partition]!;
    messages.push({
      data: event instanceof Uint8Array ? event : encodeEvent(event),
      sequence: messages.length + 1,
      logTimeMs,
    });
  }
  const run: BatchRunResult = {
    table: new ServingView(),
    outputs: [],
    late: [],
    deadLetters: [],
    processed: 0,
    lateUpdates: 0,
  };
  const collect = (result: BatchResult) => {
    run.table.apply(result.outputs);
    run.outputs.push(...result.outputs);
    run.late.push(...result.late);
    run.deadLetters.push(...result.deadLetters);
    run.processed += result.processed;
    run.lateUpdates += result.lateUpdates;
  };
  for (let partition = 0; partition < options.partitions; partition++) {
    const messages = byPartition[partition]!;
    if (messages.length === 0) continue;
    const dir = join(options.stateDir, String(partition));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const store = await TaskStore.open(dir);
    try {
      const state = new KeyedState(store);
      const processor = new TaskProcessor(job, partition, state, options.clock ?? systemClock);
      for (let start = 0; start < messages.length; start += batchSize) {
        collect(await processor.processBatch(messages.slice(start, start + batchSize)));
        if (state.dirtyRows > 100_000) {
          await state.flush();
          state.evict(processor.isPinned);
        }
      }
      collect(processor.endOfInput());
    } finally {
      await store.close();
    }
  }
  return run;
}
