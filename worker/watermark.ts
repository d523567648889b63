// The event-time watermark of one task: bounded out-of-orderness, advanced after each event, so
// it depends only on the order of events in the partition (DESIGN "Data path", step 4). It reads
// no clock: the idle rule takes processing time as an argument.

/** What a checkpoint stores to resume a task's watermark exactly. */
export interface WatermarkSnapshot {
  /** The watermark, possibly advanced past the events by idleness or end of input. */
  currentMs: number;
  /** The largest event time observed so far (−Infinity before the first event). */
  maxEventTimeMs: number;
  /** The watermark right after the last observed event; the base of the idle rule. */
  atLastEventMs: number;
}

export class Watermark {
  private currentMs = -Infinity;
  private maxEventMs = -Infinity;
  private atLastEventMs = -Infinity;

  constructor(
    readonly maxOutOfOrdernessMs: number,
    restored?: WatermarkSnapshot,
  ) {
    if (restored) {
      this.currentMs = restored.currentMs;
      this.maxEventMs = restored.maxEventTimeMs;
      this.atLastEventMs = restored.atLastEventMs;
    }
  }

  /** The watermark: −Infinity before the first event, never decreasing. */
  get current(): number {
    return this.currentMs;
  }

  /** The largest event time observed (−Infinity before the first event). */
  get maxEventTimeMs(): number {
    return this.maxEventMs;
  }

  /** The watermark right after the last `observe` — pass it to `idleWatermark`. */
  get atLastEvent(): number {
    return this.atLastEventMs;
  }

  /**
   * Takes an event's time into account and returns the new watermark. Call it AFTER the event
   * has been judged for lateness: an event is judged against the watermark before it.
   */
  observe(eventTimeMs: number): number {
    if (eventTimeMs > this.maxEventMs) this.maxEventMs = eventTimeMs;
    // DESIGN: max event time seen minus max out-of-orderness; monotonic.
    // (Flink's BoundedOutOfOrdernessWatermarks subtracts a further 1 ms; we follow DESIGN.)
    const candidate = this.maxEventMs - this.maxOutOfOrdernessMs;
    if (candidate > this.currentMs) this.currentMs = candidate;
    this.atLastEventMs = this.currentMs;
    return this.currentMs;
  }

  /**
   * Moves the watermark forward to `ms` (idle advance; `Infinity` at end of input). Never moves
   * it back; returns the watermark.
   */
  advanceTo(ms: number): number {
    if (ms > this.currentMs) this.currentMs = ms;
    return this.currentMs;
  }

  snapshot(): WatermarkSnapshot {
    return { currentMs: this.currentMs, maxEventTimeMs: this.maxEventMs, atLastEventMs: this.atLastEventMs };
  }
}

/**
 * The idle rule: the watermark an idle task may advance to at processing time `nowMs`.
 *
 * Rule: once the task has seen no event for `idleTimeoutMs` of processing time
 * (idleFor = nowMs − lastEventProcessingTimeMs ≥ idleTimeoutMs), event time is assumed to move
 * with processing time from the moment the task was declared idle, so the watermark is
 *   lastWatermark + (idleFor − idleTimeoutMs).
 * Before the timeout it is `lastWatermark`: a busy or briefly quiet task stays event-driven, and
 * the watermark does not jump by the timeout when idleness starts (it grows smoothly from there).
 *
 * `lastWatermark` is the watermark right after the last event (`Watermark.atLastEvent`), not an
 * idle-advanced one, so the result depends only on (last event, now) and calling this on every
 * tick never double counts; pass the result to `Watermark.advanceTo`, which keeps it monotonic.
 * A task that has never seen an event (lastWatermark = −Infinity) stays at −Infinity: there is
 * nothing to fire. `idleTimeoutMs = Infinity` disables the rule.
 *
 * Flink's WatermarksWithIdleness only marks the split idle so the downstream minimum ignores it;
 * a Kappa task has a single input partition, so "idle" has to mean "advance by processing time".
 * Only with this rule enabled do results depend on wall-clock time (DESIGN).
 */
export function idleWatermark(
  lastWatermark: number,
  lastEventProcessingTimeMs: number,
  nowMs: number,
  idleTimeoutMs: number,
): number {
  const idleForMs = nowMs - lastEventProcessingTimeMs;
  // Also false for NaN and for idleTimeoutMs = Infinity.
  if (!(idleForMs >= idleTimeoutMs)) return lastWatermark;
  return lastWatermark + (idleForMs - idleTimeoutMs);
}
