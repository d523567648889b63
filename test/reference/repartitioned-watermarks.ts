// The watermark rules of a repartitioned job, re-derived here for tests (README "Keys and
// partitions"; Flink's minimum over input channels across a shuffle). Shares only types with the
// engine:
// - a source partition's watermark before an event is the max time of its EARLIER events −
//   maxOutOfOrderness (−∞ before the first), and after it the max including it;
// - a keyed partition tracks, per upstream (source partition), the highest watermark any record
//   from it carried; its own watermark is the minimum over every upstream partition of the plan
//   (−∞ while one has said nothing);
// - an event record from an upstream at a sequence at or below the last one taken from it is a
//   repeat (a route task re-publishing after a restart) and is ignored;
// - an event is judged against the keyed watermark before it.
import type { Window } from '../../worker/types.js';
import type { ReferenceWindowSpec } from './batch-windows.js';

/** Watermarks of one source partition around each of its events, in its order. */
export interface SourcePartitionWatermarks {
  before: number[];
  after: number[];
}

export function sourcePartitionWatermarks(
  times: readonly number[],
  maxOutOfOrdernessMs: number,
): SourcePartitionWatermarks {
  const before: number[] = [];
  const after: number[] = [];
  let maxTime = -Infinity;
  for (const time of times) {
    before.push(maxTime - maxOutOfOrdernessMs);
    maxTime = Math.max(maxTime, time);
    after.push(maxTime - maxOutOfOrdernessMs);
  }
  return { before, after };
}

/**
 * The windows an event at `timeMs` belongs to, by brute force over the grid: for a session, the
 * event's own [t, t + gap) (what it is late for when every session it would join is gone).
 */
export function windowsOfEvent(spec: ReferenceWindowSpec, timeMs: number): Window[] {
  if (spec.kind === 'session') return [{ start: timeMs, end: timeMs + spec.gapMs! }];
  const size = spec.sizeMs!;
  const slide = spec.kind === 'hopping' ? spec.slideMs! : size;
  const offset = spec.offsetMs ?? 0;
  const windows: Window[] = [];
  // Grid starts are offset + k·slide; walk every k whose window could hold the event.
  const lowest = Math.floor((timeMs - size - offset) / slide) - 1;
  const highest = Math.ceil((timeMs - offset) / slide) + 1;
  for (let k = lowest; k <= highest; k++) {
    const start = offset + k * slide;
    if (start <= timeMs && timeMs < start + size) windows.push({ start, end: start + size });
  }
  return windows;
}

/** Whether a window is gone (purged) at a watermark: Flink fires at end − 1 and keeps it allowedLateness longer. */
export function isPurged(window: Window, watermarkMs: number, allowedLatenessMs: number): boolean {
  return watermarkMs >= window.end - 1 + allowedLatenessMs;
}

/** One record reaching a keyed partition, as the min rule sees it. */
export interface Delivery {
  /** Flat index of the upstream partition (source after source, partition after partition). */
  upstream: number;
  kind: 'event' | 'mark';
  /** The upstream sequence: of the event, or for a mark of the last event it follows. */
  sequence: number;
  /** The upstream's watermark the record carries (independently computed by the caller). */
  watermarkMs: number;
}

/**
 * The min rule over one keyed partition's deliveries: for each delivery, whether it is an event
 * taken (not a repeat) and the keyed watermark before it.
 */
export function keyedWatermarks(
  deliveries: readonly Delivery[],
  upstreamCount: number,
): Array<{ taken: boolean; watermarkBefore: number }> {
  const watermarks = new Array<number>(upstreamCount).fill(-Infinity);
  const lastSequences = new Array<number>(upstreamCount).fill(0);
  const minimum = () => Math.min(...watermarks);
  return deliveries.map((delivery) => {
    const watermarkBefore = minimum();
    if (delivery.kind === 'event') {
      if (delivery.sequence <= lastSequences[delivery.upstream]!) return { taken: false, watermarkBefore };
      lastSequences[delivery.upstream] = delivery.sequence;
    }
    watermarks[delivery.upstream] = Math.max(watermarks[delivery.upstream]!, delivery.watermarkMs);
    return { taken: delivery.kind === 'event', watermarkBefore };
  });
}
