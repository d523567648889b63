// The independent batch reference: a deliberately naive computation of what a windowed job must
// output, used as the expected answer for engine tests. It shares only types and the partitioner
// with the engine; the window arithmetic and the lateness rule are re-derived here on purpose.
//
// Rules it implements (DESIGN "Time and lateness", Flink semantics):
// - events are routed to partition partitionOf(key, P), keeping publish order within a partition;
// - each partition has its own watermark; before an event it is
//   (max time of the EARLIER events of that partition) − maxOutOfOrderness, −Infinity for the first;
// - a window is purged when watermark ≥ end − 1 + allowedLateness; an event misses every window
//   of it that is purged (then it is late, once, listing those windows) and updates the others;
// - sessions: the event's [t, t + gap) merges with every live (unpurged) session of its key it
//   intersects or touches, transitively; the merged window is judged, and if purged the event is
//   late and nothing merges; purged sessions are frozen;
// - at end of input every window fires, so the answer is the final value of every window.
import { partitionOf } from '../../protocol/partition.js';
import type { Window, WindowKind } from '../../worker/types.js';

export interface ReferenceWindowSpec {
  kind: WindowKind;
  /** tumbling and hopping */
  sizeMs?: number;
  /** hopping */
  slideMs?: number;
  /** session */
  gapMs?: number;
  /** tumbling and hopping; default 0 */
  offsetMs?: number;
}

export interface ReferenceAggregate<V, A, R = A> {
  init(): A;
  add(accumulator: A, value: V): A;
  result?(accumulator: A): R;
}

export interface ReferenceJob<V, A, R = A> {
  window: ReferenceWindowSpec;
  maxOutOfOrdernessMs: number;
  allowedLatenessMs: number;
  aggregate: ReferenceAggregate<V, A, R>;
  key(value: V): string;
  time(value: V): number;
}

export interface ReferenceWindowResult<R> {
  key: string;
  start: number;
  end: number;
  value: R;
}

export interface ReferenceLateEvent<V> {
  key: string;
  time: number;
  value: V;
  /** The windows the event missed. */
  windows: Window[];
}

export interface ReferenceResult<V, R> {
  /** Final value of every window, by `${key}|${start}|${end}`. */
  windows: Map<string, ReferenceWindowResult<R>>;
  /** Late events in publish order. */
  late: ReferenceLateEvent<V>[];
}

/** One event of a partition, in the order the partition holds it. */
export interface ReferenceEvent<V> {
  /** Position in publish order. */
  index: number;
  key: string;
  time: number;
  value: V;
  /**
   * The partition's watermark before the event when something else decides it (the minimum over
   * upstream partitions of a repartitioned job); default: max time of the earlier events of the
   * partition − maxOutOfOrderness.
   */
  watermarkBefore?: number;
}

export function windowId(key: string, start: number, end: number): string {
  return `${key}|${start}|${end}`;
}

export function batchWindows<V, A, R = A>(
  job: ReferenceJob<V, A, R>,
  events: readonly V[],
  partitionCount: number,
): ReferenceResult<V, R> {
  // Route to partitions, keeping publish order.
  const partitions: ReferenceEvent<V>[][] = [];
  for (let p = 0; p < partitionCount; p++) partitions.push([]);
  events.forEach((value, index) => {
    const key = job.key(value);
    partitions[partitionOf(key, partitionCount)]!.push({ index, key, time: job.time(value), value });
  });
  return windowsOverPartitions(job, partitions);
}

/** The rules above over events already placed in partitions, in each partition's order. */
export function windowsOverPartitions<V, A, R = A>(
  job: Omit<ReferenceJob<V, A, R>, 'key' | 'time'>,
  partitions: readonly (readonly ReferenceEvent<V>[])[],
): ReferenceResult<V, R> {
  const late: Array<ReferenceLateEvent<V> & { index: number }> = [];
  // Accepted events per window, in arrival order; values are folded only at the end.
  const windowEvents = new Map<string, { key: string; start: number; end: number; events: ReferenceEvent<V>[] }>();
  const purgedAt = (window: Window, watermark: number): boolean => watermark >= window.end - 1 + job.allowedLatenessMs;

  for (const partition of partitions) {
    let maxTimeSoFar = -Infinity;
    // Sessions of this partition, per key; frozen ones are kept for the output only.
    const sessions = new Map<
      string,
      Array<{ start: number; end: number; events: ReferenceEvent<V>[]; frozen: boolean }>
    >();

    for (const event of partition) {
      const watermark =
        event.watermarkBefore ?? (maxTimeSoFar === -Infinity ? -Infinity : maxTimeSoFar - job.maxOutOfOrdernessMs);
      maxTimeSoFar = Math.max(maxTimeSoFar, event.time);

      if (job.window.kind === 'session') {
        const gap = job.window.gapMs!;
        let keySessions = sessions.get(event.key);
        if (!keySessions) sessions.set(event.key, (keySessions = []));
        for (const session of keySessions) if (purgedAt(session, watermark)) session.frozen = true;

        let start = event.time;
        let end = event.time + gap;
        const absorbed = new Set<(typeof keySessions)[number]>();
        let grew = true;
        while (grew) {
          grew = false;
          for (const session of keySessions) {
            if (session.frozen || absorbed.has(session)) continue;
            if (session.start <= end && start <= session.end) {
              absorbed.add(session);
              start = Math.min(start, session.start);
              end = Math.max(end, session.end);
              grew = true;
            }
          }
        }
        if (purgedAt({ start, end }, watermark)) {
          late.push({
            index: event.index,
            key: event.key,
            time: event.time,
            value: event.value,
            windows: [{ start: event.time, end: event.time + gap }],
          });
          continue;
        }
        const members = [event];
        for (const session of absorbed) members.push(...session.events);
        members.sort((a, b) => a.index - b.index);
        sessions.set(event.key, [
          ...keySessions.filter((session) => !absorbed.has(session)),
          { start, end, events: members, frozen: false },
        ]);
        continue;
      }

      // Tumbling is hopping with slide = size.
      const size = job.window.sizeMs!;
      const slide = job.window.kind === 'hopping' ? job.window.slideMs! : size;
      const offset = job.window.offsetMs ?? 0;
      // The last grid start at or before t, found by floor division and then nudged by hand.
      let lastStart = offset + Math.floor((event.time - offset) / slide) * slide;
      while (lastStart > event.time) lastStart -= slide;
      while (lastStart + slide <= event.time) lastStart += slide;
      const missed: Window[] = [];
      for (let start = lastStart; start + size > event.time; start -= slide) {
        const window = { start, end: start + size };
        if (purgedAt(window, watermark)) {
          missed.unshift(window);
          continue;
        }
        const id = windowId(event.key, start, window.end);
        let entry = windowEvents.get(id);
        if (!entry) windowEvents.set(id, (entry = { key: event.key, start, end: window.end, events: [] }));
        entry.events.push(event);
      }
      if (missed.length > 0)
        late.push({ index: event.index, key: event.key, time: event.time, value: event.value, windows: missed });
    }

    for (const keySessions of sessions.values()) {
      for (const session of keySessions) {
        const id = windowId(session.events[0]!.key, session.start, session.end);
        if (windowEvents.has(id)) throw new Error(`reference: two sessions with id ${id}`);
        windowEvents.set(id, {
          key: session.events[0]!.key,
          start: session.start,
          end: session.end,
          events: session.events,
        });
      }
    }
  }

  const windows = new Map<string, ReferenceWindowResult<R>>();
  for (const [id, entry] of windowEvents) {
    const ordered = [...entry.events].sort((a, b) => a.index - b.index);
    let accumulator = job.aggregate.init();
    for (const event of ordered) accumulator = job.aggregate.add(accumulator, event.value);
    const value = job.aggregate.result ? job.aggregate.result(accumulator) : (accumulator as unknown as R);
    windows.set(id, { key: entry.key, start: entry.start, end: entry.end, value });
  }
  late.sort((a, b) => a.index - b.index);
  return { windows, late: late.map(({ index: _index, ...record }) => record) };
}
