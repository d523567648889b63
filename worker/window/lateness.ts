// When a window fires, when its state is purged, and what an event does to the windows it belongs
// to. Flink's WindowOperator semantics with EventTimeTrigger; the watermark is passed in.
import type { Window } from '../types.js';

/** The watermark at which a window's result is first emitted: its last millisecond. */
export function fireTime(window: Window): number {
  // Flink: a window's maxTimestamp is end - 1; EventTimeTrigger fires when wm >= maxTimestamp.
  return window.end - 1;
}

/** Whether the window has fired (emitted at least its on-time result) at this watermark. */
export function isFired(window: Window, watermarkMs: number): boolean {
  // Flink: fire when wm >= end - 1.
  return watermarkMs >= window.end - 1;
}

/** The watermark at which a window's state is dropped; after it, the window takes no more events. */
export function cleanupTime(window: Window, allowedLatenessMs: number): number {
  // Flink: cleanupTime = maxTimestamp + allowedLateness = end - 1 + allowedLateness.
  return window.end - 1 + allowedLatenessMs;
}

/** Whether the window is purged at this watermark: its state is gone and events for it are late. */
export function isPurged(window: Window, watermarkMs: number, allowedLatenessMs: number): boolean {
  // Flink: isWindowLate — cleanupTime <= currentWatermark.
  return watermarkMs >= cleanupTime(window, allowedLatenessMs);
}

/** What one event does to each (non-merging) window it belongs to. */
export interface EventJudgement {
  /** Windows the event updates (not purged). */
  accepted: Window[];
  /**
   * The subset of `accepted` whose fire time has passed: the operator emits them again right
   * after the update (Flink: EventTimeTrigger.onElement fires at once when maxTimestamp <= wm).
   * Usually a re-emission with revision + 1; a first emission if the window had no state when
   * its timer fired.
   */
  emitNow: Window[];
  /** Windows already purged: the event misses them and goes to the late-data output once, listing them. */
  missed: Window[];
}

/**
 * Judges an event against the windows it belongs to (tumbling or hopping), using the watermark
 * as it was BEFORE the event was observed — the event cannot make itself late.
 */
export function judgeEvent(
  windows: readonly Window[],
  watermarkBeforeMs: number,
  allowedLatenessMs: number,
): EventJudgement {
  const judgement: EventJudgement = { accepted: [], emitNow: [], missed: [] };
  for (const window of windows) {
    // DESIGN: an event for a purged window goes to the late-data output.
    if (isPurged(window, watermarkBeforeMs, allowedLatenessMs)) judgement.missed.push(window);
    else {
      judgement.accepted.push(window);
      // DESIGN: an event for a fired, unpurged window updates it and re-emits its result.
      if (isFired(window, watermarkBeforeMs)) judgement.emitNow.push(window);
    }
  }
  return judgement;
}
