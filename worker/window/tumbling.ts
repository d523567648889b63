// Tumbling windows: fixed-size, non-overlapping, aligned to an offset. Pure arithmetic.
import type { Window } from '../types.js';

/**
 * x mod m in [0, m) for every sign of x. JavaScript's `%` keeps the sign of the dividend, so
 * `-3 % 10` is -3; window alignment needs 7, or events before the offset (or the epoch) would
 * land in a window that does not contain them.
 */
export function floorMod(x: number, m: number): number {
  const remainder = x % m;
  // `+ 0` turns the −0 of `-10 % 10` into 0, so no window starts at −0.
  return remainder < 0 ? remainder + m : remainder + 0;
}

/**
 * The one tumbling window [start, start + size) that holds event time `t`.
 * Preconditions (validated with the job, not here): sizeMs > 0; all values are integers (ms).
 */
export function tumblingWindow(t: number, sizeMs: number, offsetMs = 0): Window {
  // DESIGN: start = t − ((t − o) mod s), with a true modulo so negative times work.
  const start = t - floorMod(t - offsetMs, sizeMs);
  // DESIGN: end = start + s, end exclusive.
  return { start, end: start + sizeMs };
}
