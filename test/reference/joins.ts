// The independent join reference: a deliberately naive computation of what the join helpers
// (worker/joins/) must leave in the serving table and send to the late-data output, by nested
// loops over all events. It imports nothing of the engine; the window arithmetic, the lateness
// rules, the purge rules and the row names are re-derived here from their documented statements
// (README "Joins", worker/joins/README.md):
//
// - one task, events in arrival order; the watermark before an event is
//   (max time of the EARLIER events) − maxOutOfOrderness, −Infinity for the first;
// - window join: tumbling window start = t − ((t − offset) mod size) (a true modulo), end = start + size;
//   an event is late iff watermark-before ≥ end − 1 + allowedLateness; the table holds one row per
//   (accepted left, accepted right) of the same key and window, named `<start>_<leftName>_<rightName>`;
// - interval join: an event is late iff its time < watermark-before; one row per (accepted left a,
//   accepted right b) of the same key with a.time + lower ≤ b.time ≤ a.time + upper, named
//   `<leftName>_<rightName>`;
// - an event's name: base64url SHA-256 of the JSON [time, value, occurrence], first 22 characters,
//   occurrence = how many accepted events before it have the same side, key, time and value;
// - what a task still holds once the input ends (before the end-of-input flush): window join, the
//   windows of accepted events with watermark < end − 1 + allowedLateness; interval join, the
//   (side, time) of accepted events with watermark ≤ time + max(upper, 0) (left) or
//   time + max(−lower, 0) (right).
import { createHash } from 'node:crypto';

export interface JoinInputEvent<V> {
  side: 'left' | 'right';
  key: string;
  time: number;
  value: V;
}

export interface ReferenceRow<O> {
  key: string;
  row: string;
  value: O;
}

export interface ReferenceLate {
  key: string;
  time: number;
  windows: Array<{ start: number; end: number }>;
}

export interface ReferenceJoinResult<O> {
  /** By `${key}|${row}`. */
  rows: Map<string, ReferenceRow<O>>;
  /** Late events in arrival order. */
  late: ReferenceLate[];
  /** What the task's state still holds at the end of input: `${key}|${start}` or `${key}|${side}|${time}`. */
  held: Set<string>;
}

interface Judged<V> extends JoinInputEvent<V> {
  accepted: boolean;
  name: string;
}

function watermarksBefore(events: readonly JoinInputEvent<unknown>[], maxOutOfOrdernessMs: number): number[] {
  const watermarks: number[] = [];
  let maxTime = -Infinity;
  for (const event of events) {
    watermarks.push(maxTime === -Infinity ? -Infinity : maxTime - maxOutOfOrdernessMs);
    maxTime = Math.max(maxTime, event.time);
  }
  return watermarks;
}

function finalWatermark(events: readonly JoinInputEvent<unknown>[], maxOutOfOrdernessMs: number): number {
  let maxTime = -Infinity;
  for (const event of events) maxTime = Math.max(maxTime, event.time);
  return maxTime - maxOutOfOrdernessMs;
}

/** Names accepted events: occurrence counted over the accepted events before, by nested loop. */
function judge<V>(events: readonly JoinInputEvent<V>[], accepted: boolean[]): Judged<V>[] {
  const judged: Judged<V>[] = [];
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    let occurrence = 0;
    for (let j = 0; j < i; j++) {
      const earlier = events[j]!;
      if (
        accepted[j] &&
        earlier.side === event.side &&
        earlier.key === event.key &&
        earlier.time === event.time &&
        JSON.stringify(earlier.value) === JSON.stringify(event.value)
      )
        occurrence++;
    }
    const name = createHash('sha256')
      .update(JSON.stringify([event.time, event.value, occurrence]))
      .digest('base64url')
      .slice(0, 22);
    judged.push({ ...event, accepted: accepted[i]!, name });
  }
  return judged;
}

function windowStart(time: number, sizeMs: number, offsetMs: number): number {
  // Walk down to the grid start at or before t (no modulo shared with the engine).
  let start = offsetMs + Math.trunc((time - offsetMs) / sizeMs) * sizeMs;
  while (start > time) start -= sizeMs;
  while (start + sizeMs <= time) start += sizeMs;
  return start;
}

export function referenceWindowJoin<V, O>(
  events: readonly JoinInputEvent<V>[],
  options: {
    maxOutOfOrdernessMs: number;
    sizeMs: number;
    offsetMs: number;
    allowedLatenessMs: number;
    join: (left: V, right: V, info: { key: string; window: { start: number; end: number } }) => O;
  },
): ReferenceJoinResult<O> {
  const watermarks = watermarksBefore(events, options.maxOutOfOrdernessMs);
  const starts = events.map((event) => windowStart(event.time, options.sizeMs, options.offsetMs));
  const accepted = events.map(
    (_, i) => !(watermarks[i]! >= starts[i]! + options.sizeMs - 1 + options.allowedLatenessMs),
  );
  const judged = judge(events, accepted);
  const rows = new Map<string, ReferenceRow<O>>();
  for (let i = 0; i < judged.length; i++) {
    const left = judged[i]!;
    if (!left.accepted || left.side !== 'left') continue;
    for (let j = 0; j < judged.length; j++) {
      const right = judged[j]!;
      if (!right.accepted || right.side !== 'right' || right.key !== left.key || starts[j] !== starts[i]) continue;
      const window = { start: starts[i]!, end: starts[i]! + options.sizeMs };
      const row = `${window.start}_${left.name}_${right.name}`;
      rows.set(`${left.key}|${row}`, {
        key: left.key,
        row,
        value: options.join(left.value, right.value, { key: left.key, window }),
      });
    }
  }
  const late = judged.flatMap((event, i) =>
    event.accepted
      ? []
      : [{ key: event.key, time: event.time, windows: [{ start: starts[i]!, end: starts[i]! + options.sizeMs }] }],
  );
  const watermark = finalWatermark(events, options.maxOutOfOrdernessMs);
  const held = new Set<string>();
  judged.forEach((event, i) => {
    if (event.accepted && watermark < starts[i]! + options.sizeMs - 1 + options.allowedLatenessMs)
      held.add(`${event.key}|${starts[i]}`);
  });
  return { rows, late, held };
}

export function referenceIntervalJoin<V, O>(
  events: readonly JoinInputEvent<V>[],
  options: {
    maxOutOfOrdernessMs: number;
    lowerMs: number;
    upperMs: number;
    join: (left: V, right: V, info: { key: string; leftTimeMs: number; rightTimeMs: number }) => O;
  },
): ReferenceJoinResult<O> {
  const watermarks = watermarksBefore(events, options.maxOutOfOrdernessMs);
  const accepted = events.map((event, i) => !(event.time < watermarks[i]!));
  const judged = judge(events, accepted);
  const rows = new Map<string, ReferenceRow<O>>();
  for (const left of judged) {
    if (!left.accepted || left.side !== 'left') continue;
    for (const right of judged) {
      if (!right.accepted || right.side !== 'right' || right.key !== left.key) continue;
      if (right.time < left.time + options.lowerMs || right.time > left.time + options.upperMs) continue;
      const row = `${left.name}_${right.name}`;
      const info = { key: left.key, leftTimeMs: left.time, rightTimeMs: right.time };
      rows.set(`${left.key}|${row}`, { key: left.key, row, value: options.join(left.value, right.value, info) });
    }
  }
  const late = judged.flatMap((event) => (event.accepted ? [] : [{ key: event.key, time: event.time, windows: [] }]));
  const watermark = finalWatermark(events, options.maxOutOfOrdernessMs);
  const held = new Set<string>();
  for (const event of judged) {
    const keptAfter = event.side === 'left' ? Math.max(options.upperMs, 0) : Math.max(-options.lowerMs, 0);
    if (event.accepted && watermark <= event.time + keptAfter) held.add(`${event.key}|${event.side}|${event.time}`);
  }
  return { rows, late, held };
}
