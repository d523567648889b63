// The independent reference for WHEN a tumbling or hopping window is emitted and with which
// value, revision by revision: not only the final table. Re-derived from the rules, sharing only
// the partitioner with the engine:
// - per partition, the watermark before an event is (max time of the earlier events) − maxOutOfOrderness;
// - an event joins every window of it that is not purged (wm ≥ end − 1 + allowedLateness);
//   if that window has fired already (wm ≥ end − 1), the event re-emits it at once;
// - after the event the watermark advances; each window with events that has not fired yet and
//   whose end − 1 the watermark has reached fires then, with every event it holds so far;
// - at end of input every window that never fired fires.
import { partitionOf } from '../../protocol/partition.js';
import type { ReferenceAggregate } from './batch-windows.js';

export interface RevisionJob<V, A> {
  sizeMs: number;
  slideMs: number;
  offsetMs: number;
  maxOutOfOrdernessMs: number;
  allowedLatenessMs: number;
  aggregate: ReferenceAggregate<V, A>;
  key(value: V): string;
  time(value: V): number;
}

/** One emission of a window: after which event (its publish index) or at the end of input. */
export interface Emission<R> {
  after: number | 'end';
  revision: number;
  value: R;
}

/** Every emission of every window, by `${key}|${start}|${end}`, in the order they happened. */
export function windowRevisions<V, A>(
  job: RevisionJob<V, A>,
  events: readonly V[],
  partitionCount: number,
): Map<string, Emission<A>[]> {
  const emissions = new Map<string, Emission<A>[]>();
  const partitions: Array<Array<{ index: number; value: V }>> = Array.from({ length: partitionCount }, () => []);
  events.forEach((value, index) => partitions[partitionOf(job.key(value), partitionCount)]!.push({ index, value }));

  for (const partition of partitions) {
    const windows = new Map<string, { end: number; events: V[]; fired: boolean }>();
    const emit = (id: string, after: number | 'end') => {
      const window = windows.get(id)!;
      let accumulator = job.aggregate.init();
      for (const value of window.events) accumulator = job.aggregate.add(accumulator, value);
      const list = emissions.get(id) ?? [];
      list.push({ after, revision: list.length + 1, value: accumulator });
      emissions.set(id, list);
    };
    let maxTime = -Infinity;
    for (const { index, value } of partition) {
      const time = job.time(value);
      const key = job.key(value);
      const before = maxTime - job.maxOutOfOrdernessMs;
      // Every start s ≡ offset (mod slide) with s ≤ time < s + size, scanned from far below.
      const first = time - job.sizeMs - job.slideMs;
      let start = first - ((((first - job.offsetMs) % job.slideMs) + job.slideMs) % job.slideMs);
      for (; start <= time; start += job.slideMs) {
        const end = start + job.sizeMs;
        if (!(start <= time && time < end)) continue;
        if (before >= end - 1 + job.allowedLatenessMs) continue; // purged: a late event
        const id = `${key}|${start}|${end}`;
        let window = windows.get(id);
        if (!window) windows.set(id, (window = { end, events: [], fired: false }));
        window.events.push(value);
        if (before >= end - 1) {
          window.fired = true;
          emit(id, index);
        }
      }
      maxTime = Math.max(maxTime, time);
      const after = maxTime - job.maxOutOfOrdernessMs;
      for (const [id, window] of windows) {
        if (!window.fired && after >= window.end - 1) {
          window.fired = true;
          emit(id, index);
        }
      }
    }
    for (const [id, window] of windows) if (!window.fired) emit(id, 'end');
  }
  return emissions;
}
