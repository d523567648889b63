// Hopping (sliding) windows: size s, slide d; an event belongs to every window that covers it.
import type { Window } from '../types.js';
import { floorMod } from './tumbling.js';

/**
 * Every hopping window [start, start + size) with start ≡ offset (mod slide) and
 * start ≤ t < start + size, ascending by start.
 *
 * When size is a multiple of slide there are exactly size / slide of them. Otherwise there are
 * ⌊size / slide⌋ or ⌈size / slide⌉, depending on t; with slide > size (a sampling window, as
 * Flink allows) an event between windows belongs to none and the result is empty.
 *
 * Preconditions (validated with the job, not here): sizeMs > 0, slideMs > 0, integers (ms).
 * One array and one object per window are allocated; nothing else.
 */
export function hoppingWindows(t: number, sizeMs: number, slideMs: number, offsetMs = 0): Window[] {
  // The latest aligned start ≤ t (the tumbling start on the slide grid).
  const sinceLastStart = floorMod(t - offsetMs, slideMs);
  const lastStart = t - sinceLastStart;
  // Starts lastStart − k·slide (k ≥ 0) with start + size > t, i.e. k·slide < size − sinceLastStart.
  const count = sizeMs > sinceLastStart ? Math.ceil((sizeMs - sinceLastStart) / slideMs) : 0;
  const windows = new Array<Window>(count);
  let start = lastStart - (count - 1) * slideMs;
  for (let index = 0; index < count; index++) {
    windows[index] = { start, end: start + sizeMs };
    start += slideMs;
  }
  return windows;
}
