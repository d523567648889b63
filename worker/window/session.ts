// Session windows: an event at t proposes [t, t + gap); sessions that intersect merge,
// transitively. Flink's EventTimeSessionWindows + MergingWindowSet semantics, as pure functions.
import type { Window } from '../types.js';
import { isFired, isPurged } from './lateness.js';

/** The window one event proposes on its own: [t, t + gap). */
export function sessionWindow(t: number, gapMs: number): Window {
  // Flink: EventTimeSessionWindows assigns new TimeWindow(timestamp, timestamp + sessionTimeout).
  return { start: t, end: t + gapMs };
}

/** Whether two windows overlap or touch; touching sessions merge, so events exactly gap apart share a session. */
export function intersects(a: Window, b: Window): boolean {
  // Flink: TimeWindow.intersects — this.start <= other.end && this.end >= other.start.
  return a.start <= b.end && b.start <= a.end;
}

/** The smallest window covering both. */
export function cover(a: Window, b: Window): Window {
  // Flink: TimeWindow.cover.
  return { start: Math.min(a.start, b.start), end: Math.max(a.end, b.end) };
}

/**
 * Merges a proposed session into the existing ones: `merged` covers `proposed` and every
 * existing session connected to it through a chain of intersections; `absorbed` lists those
 * existing sessions (the same objects, ascending by start). With nothing to absorb, `merged`
 * equals `proposed` and `absorbed` is empty. `merged` is always a fresh object; it can equal an
 * absorbed session (an event inside a session), which the operator treats as an update of that
 * session rather than a retract + new row.
 *
 * `existing` need not be disjoint; a live set maintained with this function always is.
 */
export function mergeSession(existing: readonly Window[], proposed: Window): { merged: Window; absorbed: Window[] } {
  let merged: Window = { start: proposed.start, end: proposed.end };
  const absorbed: Window[] = [];
  const taken = new Array<boolean>(existing.length).fill(false);
  // Transitive closure: growing `merged` can bring further sessions into reach, so sweep until
  // a sweep absorbs nothing. Sessions per key are few; quadratic is fine and obviously right.
  for (let grew = true; grew;) {
    grew = false;
    for (let index = 0; index < existing.length; index++) {
      const session = existing[index]!;
      if (taken[index] || !intersects(merged, session)) continue;
      taken[index] = true;
      absorbed.push(session);
      merged = cover(merged, session);
      grew = true;
    }
  }
  absorbed.sort((a, b) => a.start - b.start || a.end - b.end);
  return { merged, absorbed };
}

/** What one event does to its key's sessions. */
export type SessionAssignment =
  | {
      kind: 'late';
      /** The session the event proposed, already purged on its own and touching no live session. */
      missed: Window;
    }
  | {
      kind: 'merged';
      /** The session that now holds the event. */
      merged: Window;
      /** Live sessions that became part of `merged` (their rows are retracted unless equal to `merged`). */
      absorbed: Window[];
      /** `merged`'s fire time has passed: emit it right after the update (Flink: onElement fires). */
      emitNow: boolean;
    };

/**
 * Assigns an event to its key's sessions, judging lateness on the MERGED window (Flink
 * MergingWindowSet: merge first, then drop the element if the resulting window is late).
 *
 * `sessions` are the key's sessions; any already purged at `watermarkBeforeMs` are frozen and
 * ignored (Flink retires them from the merging set at cleanup), so an event near a purged session
 * starts a new session instead of reopening it. If the merged window is purged the event is late
 * and nothing merges — which can only happen when nothing live intersects the proposal, since a
 * merge never ends earlier than the live sessions it absorbs.
 *
 * `watermarkBeforeMs` is the watermark BEFORE the event is observed.
 */
export function assignSession(
  sessions: readonly Window[],
  eventTimeMs: number,
  gapMs: number,
  watermarkBeforeMs: number,
  allowedLatenessMs: number,
): SessionAssignment {
  const live = sessions.filter((session) => !isPurged(session, watermarkBeforeMs, allowedLatenessMs));
  const proposed = sessionWindow(eventTimeMs, gapMs);
  const { merged, absorbed } = mergeSession(live, proposed);
  // Flink: if (isWindowLate(actualWindow)) { mergingWindows.retireWindow(actualWindow); continue; }
  if (isPurged(merged, watermarkBeforeMs, allowedLatenessMs)) return { kind: 'late', missed: proposed };
  return { kind: 'merged', merged, absorbed, emitNow: isFired(merged, watermarkBeforeMs) };
}
