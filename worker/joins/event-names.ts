// A join's output rows are named after the two events they pair, and an event is named by what it
// is (its time and value), not by when it arrived: the arrival order of two sources' events is
// fixed by the log of one run but differs between a live run, a replay into a new version and
// `kappa run`, and the table must be the same in all of them. Identical events (same time, same
// value: a producer's retry, two equal orders) are told apart by their occurrence among the
// identical ones before them, so each still makes its own rows; which of two identical events is
// the first does not matter, since they are the same.

import { digestOf } from '../digest.js';

/** One buffered event of a join side: its event time and value. */
export interface JoinEvent {
  t: number;
  v: unknown;
}

/**
 * The name of the `occurrence`-th event (from 0) with this time and value: the first 22
 * characters of the base64url SHA-256 of the JSON `[time, value, occurrence]`.
 */
export function eventName(timeMs: number, value: unknown, occurrence: number): string {
  return digestOf([timeMs, value, occurrence]);
}

/** Names of events of one side in arrival order: identical ones numbered by their occurrence. */
export function eventNames(events: readonly JoinEvent[]): string[] {
  const seen = new Map<string, number>();
  return events.map((event) => {
    const content = JSON.stringify([event.t, event.v]);
    const occurrence = seen.get(content) ?? 0;
    seen.set(content, occurrence + 1);
    // The JSON of [t, v, occurrence], as eventName() hashes it, without encoding the value twice.
    return digestOf(`${content.slice(0, -1)},${occurrence}]`);
  });
}
