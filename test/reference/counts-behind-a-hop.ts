// The independent answer for a count per key in tumbling windows computed behind a repartition hop
// (README "Keys and partitions"): the keyed stage's watermark is the minimum over the source
// partitions' final watermarks (max event time − out-of-orderness), so exactly the windows that
// end at or before it (end − 1 ≤ watermark) are in the table, each with the count of all its
// events. Valid when no event is late in its source partition (jitter below the bound).
import { partitionOf } from '../../protocol/partition.js';

export interface HopCountOptions<E> {
  /** The key events were produced (partitioned) by. */
  partitionedBy: (event: E) => string;
  partitions: number;
  /** The key the job counts by. */
  key: (event: E) => string;
  time: (event: E) => number;
  windowMs: number;
  outOfOrdernessMs: number;
}

export interface CountRow {
  key: string;
  start: number;
  end: number;
  value: number;
}

export function countsBehindHop<E>(
  events: readonly E[],
  options: HopCountOptions<E>,
): { watermark: number; rows: CountRow[] } {
  const maxTime = new Map<number, number>();
  for (const event of events) {
    const partition = partitionOf(options.partitionedBy(event), options.partitions);
    maxTime.set(partition, Math.max(maxTime.get(partition) ?? -Infinity, options.time(event)));
  }
  // A source partition without events holds the minimum at −∞.
  const watermark =
    maxTime.size < options.partitions
      ? -Infinity
      : Math.min(...[...maxTime.values()].map((time) => time - options.outOfOrdernessMs));
  const counts = new Map<string, CountRow>();
  for (const event of events) {
    const time = options.time(event);
    const start = time - (((time % options.windowMs) + options.windowMs) % options.windowMs);
    if (start + options.windowMs - 1 > watermark) continue;
    const key = options.key(event);
    const id = JSON.stringify([key, start]);
    const row = counts.get(id) ?? { key, start, end: start + options.windowMs, value: 0 };
    row.value++;
    counts.set(id, row);
  }
  return { watermark, rows: sortCountRows([...counts.values()]) };
}

/** Rows by key, then window start (the order to compare tables in). */
export function sortCountRows<T extends { key: string; start: number }>(rows: T[]): T[] {
  return rows.sort((a, b) => (a.key === b.key ? a.start - b.start : a.key < b.key ? -1 : 1));
}
