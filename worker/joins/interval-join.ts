// The interval join as actor handlers: Flink's
// `left.keyBy(key).intervalJoin(right.keyBy(key)).between(lower, upper)`, an inner join. A right
// event b pairs with a left event a of the same key when a.time + lower ≤ b.time ≤ a.time + upper.
// Each pair is emitted once, as soon as its second event arrives; each event is buffered until the
// watermark says no event still to come can pair with it, then an event-time timer purges it.
//
// State of a key (Flink's buffers, bucketed by time as Flink's are):
//   map `join.interval.left`:  `<time>` → the values of the left events with that time, in arrival order
//   map `join.interval.right`: `<time>` → the same for the right side
// Timers: `interval-join/<side>/<time>` purge one bucket.
import type { ActorContext, TimerInfo } from '../actor-context.js';
import type { ActorHandlers } from '../job.js';
import type { Duration } from '../types.js';
import { copyValue } from '../value-copy.js';
import { eventNames } from './event-names.js';
import { checkJoinBasics, durationOption, optionError, sideOf, type JoinSide } from './join-options.js';

export interface IntervalJoinInfo {
  key: string;
  leftTimeMs: number;
  rightTimeMs: number;
}

export interface IntervalJoinOptions<L = unknown, R = unknown, O = unknown> {
  /** The source (a name in the job's `sources`) whose events are the left side (a). */
  left: string;
  /** The source whose events are the right side (b). */
  right: string;
  /** b.time ≥ a.time + lower; may be negative (b before a). */
  lower: Duration;
  /** b.time ≤ a.time + upper; at least `lower`. */
  upper: Duration;
  /** One pair's row; `undefined` makes no row (a filter). Gets copies: mutating them changes no buffered event. */
  join: (left: L, right: R, info: IntervalJoinInfo) => O | undefined;
}

const HELPER = 'intervalJoin';
const STATE: Record<JoinSide, string> = { left: 'join.interval.left', right: 'join.interval.right' };
const PURGE = 'interval-join/';

/**
 * Handlers for `actor:` that join two sources by an interval of event time.
 *
 * - Rows: one per pair, named `<leftName>_<rightName>` (`event-names.ts`: a digest of the event's time and
 *   value), holding `join(left, right, { key, leftTimeMs, rightTimeMs })`, with event time the
 *   later of the two (Flink's).
 * - Late (Flink's `isLate`): an event whose time is behind the watermark before it joins nothing; it
 *   goes to the job's late-data subject (`ctx.late`). Any other event pairs with every buffered event
 *   of the other side in range, so the output is every pair of two non-late events.
 * - Purge: a left event a once the watermark > a.time + upper, a right event b once it is
 *   > b.time − lower (no non-late event to come can pair with them then), and never before the
 *   watermark passes the event's own time, so an identical event still finds it and gets its own rows.
 * - An event of another source than `left` or `right` makes the handler throw (dead-lettered).
 */
export function intervalJoin<L = unknown, R = unknown, O = unknown>(
  options: IntervalJoinOptions<L, R, O>,
): ActorHandlers {
  const sources = checkJoinBasics(HELPER, options);
  const lowerMs = durationOption(HELPER, 'lower', options.lower, { allowNegative: true });
  const upperMs = durationOption(HELPER, 'upper', options.upper, { allowNegative: true });
  if (lowerMs > upperMs) optionError(HELPER, 'upper', `must be at least 'lower' (${lowerMs} ms), found ${upperMs} ms`);
  const join = options.join;
  /** How long after its own time an event of each side can still pair with one to come. */
  const keptAfterMs: Record<JoinSide, number> = { left: Math.max(upperMs, 0), right: Math.max(-lowerMs, 0) };

  return {
    onEvent(ctx: ActorContext, event: unknown): void {
      const side = sideOf(HELPER, sources, ctx.source);
      const timeMs = ctx.eventTimeMs;
      // Flink's IntervalJoinOperator: an element behind the watermark is late and dropped; here it
      // goes to the late-data subject. Judged against the watermark before the event.
      if (timeMs < ctx.watermarkMs) {
        ctx.late();
        return;
      }
      const own = ctx.map<unknown[]>(STATE[side]);
      const bucket = own.get(String(timeMs)) ?? [];
      bucket.push(event);
      own.set(String(timeMs), bucket);
      const name = eventNames(bucket.map((v) => ({ t: timeMs, v }))).at(-1)!;

      const other = ctx.map<unknown[]>(STATE[side === 'left' ? 'right' : 'left']);
      // In time order, so a replay gives the same revisions whatever order the rows were restored in.
      const buckets = other
        .entries()
        .map(([time, values]) => [Number(time), values] as const)
        .sort((a, b) => a[0] - b[0]);
      for (const [otherTimeMs, values] of buckets) {
        const leftTimeMs = side === 'left' ? timeMs : otherTimeMs;
        const rightTimeMs = side === 'left' ? otherTimeMs : timeMs;
        if (rightTimeMs < leftTimeMs + lowerMs || rightTimeMs > leftTimeMs + upperMs) continue;
        const names = eventNames(values.map((v) => ({ t: otherTimeMs, v })));
        // Flink: the joined element carries the later of the two times.
        const time = Math.max(leftTimeMs, rightTimeMs);
        for (let index = 0; index < values.length; index++) {
          // Each call gets its own copies (state keeps `event` by reference, and it pairs with every partner).
          const mine = copyValue(event);
          const info: IntervalJoinInfo = { key: ctx.key, leftTimeMs, rightTimeMs };
          const value =
            side === 'left' ? join(mine as L, values[index] as R, info) : join(values[index] as L, mine as R, info);
          const row = side === 'left' ? `${name}_${names[index]}` : `${names[index]}_${name}`;
          if (value !== undefined) ctx.emit(value, { row, time });
        }
      }
      // Purged once the watermark > time + keptAfter: the timer fires at watermark ≥ its time.
      ctx.setEventTimeTimer(timeMs + keptAfterMs[side] + 1, `${PURGE}${side}/${timeMs}`);
    },

    onTimer(ctx: ActorContext, timer: TimerInfo): void {
      const rest = timer.tag.startsWith(PURGE) ? timer.tag.slice(PURGE.length) : '';
      const slash = rest.indexOf('/');
      const side = rest.slice(0, slash);
      if (side !== 'left' && side !== 'right')
        throw new Error(`${HELPER}: a timer it did not set (${timer.domain} ${timer.timeMs} '${timer.tag}')`);
      ctx.map(STATE[side]).delete(rest.slice(slash + 1));
    },
  };
}
