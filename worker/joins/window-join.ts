// The tumbling window join as actor handlers: Flink's
// `left.join(right).where(key).equalTo(key).window(TumblingEventTimeWindows.of(size, offset))`, an
// inner join. A left and a right event of the same key pair when their times fall in the same
// window [start, end); the window's pairs are emitted when it fires (watermark ≥ end − 1), one
// serving-table row per pair, and its events are purged then (or after `allowedLateness`).
//
// State of a key (one map, so a key's open windows are a handful of rows each):
//   `<start>`                 → { left, right }: how many events each side has in the window
//   `<start>/left/<i>`        → { t, v }: the i-th left event of the window, in arrival order
//   `<start>/right/<j>`       → { t, v }
// Timers: `window-join/fire/<start>` at end − 1, and with allowedLateness `window-join/purge/<start>`
// at end − 1 + allowedLateness.
import type { ActorContext, MapState, TimerInfo } from '../actor-context.js';
import type { ActorHandlers } from '../job.js';
import type { Duration, Window } from '../types.js';
import { copyValue } from '../value-copy.js';
import { tumblingWindow } from '../window/tumbling.js';
import { eventNames, type JoinEvent } from './event-names.js';
import { checkJoinBasics, durationOption, optionError, sideOf, type JoinSide } from './join-options.js';

export interface WindowJoinInfo {
  key: string;
  window: Window;
}

export interface WindowJoinOptions<L = unknown, R = unknown, O = unknown> {
  /** The source (a name in the job's `sources`) whose events are the left side. */
  left: string;
  /** The source whose events are the right side. */
  right: string;
  /** Tumbling windows of event time, as the job API's: `start = t − ((t − offset) mod size)`. */
  window: { size: Duration; offset?: Duration };
  /**
   * How long after it fired a window still takes events (default 0): each one is paired at once
   * with the other side's events of the window (its new rows appear then); after that it is late.
   */
  allowedLateness?: Duration;
  /** One pair's row; `undefined` makes no row (a filter). Gets copies: mutating them changes no buffered event. */
  join: (left: L, right: R, info: WindowJoinInfo) => O | undefined;
}

const HELPER = 'windowJoin';
const STATE = 'join.window';
const FIRE = 'window-join/fire/';
const PURGE = 'window-join/purge/';

type SideCounts = Record<JoinSide, number>;

/**
 * Handlers for `actor:` that join two sources in tumbling windows of event time.
 *
 * - Rows: one per pair, named `<start>_<leftName>_<rightName>` (`event-names.ts`: a name is a digest of the
 *   event's time and value), holding `join(left, right, { key, window })`, with event time end − 1.
 * - Late: an event whose window is purged (the watermark before it ≥ end − 1 + allowedLateness)
 *   joins nothing; it goes to the job's late-data subject with its window (`ctx.late`).
 * - An event of another source than `left` or `right` makes the handler throw (dead-lettered).
 */
export function windowJoin<L = unknown, R = unknown, O = unknown>(options: WindowJoinOptions<L, R, O>): ActorHandlers {
  const sources = checkJoinBasics(HELPER, options);
  const windowOption = (options as { window?: unknown }).window;
  if (windowOption === null || typeof windowOption !== 'object')
    optionError(HELPER, 'window', `expected { size, offset? }, found ${String(windowOption)}`);
  const sizeMs = durationOption(HELPER, 'window.size', options.window.size);
  if (sizeMs <= 0) optionError(HELPER, 'window.size', 'must be greater than 0');
  // Flink allows negative offsets (e.g. '-8h' for a time zone), as the job API does.
  const offsetMs = durationOption(HELPER, 'window.offset', options.window.offset, { fallback: 0, allowNegative: true });
  const allowedLatenessMs = durationOption(HELPER, 'allowedLateness', options.allowedLateness, { fallback: 0 });
  const join = options.join;

  const eventsOf = (state: MapState, start: number, side: JoinSide, count: number): JoinEvent[] => {
    const events: JoinEvent[] = [];
    for (let index = 0; index < count; index++) events.push(state.get(`${start}/${side}/${index}`) as JoinEvent);
    return events;
  };

  /** Emits the pairs of lefts[l] × rights[r] for the chosen indexes. */
  const emitPairs = (
    ctx: ActorContext,
    window: Window,
    lefts: JoinEvent[],
    rights: JoinEvent[],
    leftIndexes: Iterable<number>,
    rightIndexes: () => Iterable<number>,
  ): void => {
    const leftNames = eventNames(lefts);
    const rightNames = eventNames(rights);
    for (const l of leftIndexes) {
      for (const r of rightIndexes()) {
        // Each call gets its own copies: an event pairs with many, and a join may mutate what it gets.
        const info: WindowJoinInfo = { key: ctx.key, window: { ...window } };
        const value = join(copyValue(lefts[l]!.v) as L, copyValue(rights[r]!.v) as R, info);
        // Flink: a window join's result carries the window's max timestamp, end − 1.
        if (value !== undefined)
          ctx.emit(value, { row: `${window.start}_${leftNames[l]}_${rightNames[r]}`, time: window.end - 1 });
      }
    }
  };

  const fire = (ctx: ActorContext, start: number): void => {
    const state = ctx.map(STATE);
    const counts = state.get(String(start)) as SideCounts | undefined;
    if (counts === undefined) return;
    const lefts = eventsOf(state, start, 'left', counts.left);
    const rights = eventsOf(state, start, 'right', counts.right);
    emitPairs(ctx, { start, end: start + sizeMs }, lefts, rights, lefts.keys(), () => rights.keys());
  };

  const purge = (ctx: ActorContext, start: number): void => {
    const state = ctx.map(STATE);
    const counts = state.get(String(start)) as SideCounts | undefined;
    if (counts === undefined) return;
    for (const side of ['left', 'right'] as const)
      for (let index = 0; index < counts[side]; index++) state.delete(`${start}/${side}/${index}`);
    state.delete(String(start));
  };

  return {
    onEvent(ctx: ActorContext, event: unknown): void {
      const side = sideOf(HELPER, sources, ctx.source);
      const window = tumblingWindow(ctx.eventTimeMs, sizeMs, offsetMs);
      // Flink: a window fires when the watermark ≥ end − 1 and is purged allowedLateness later.
      const fireAt = window.end - 1;
      const purgeAt = fireAt + allowedLatenessMs;
      // Judged against the watermark before the event, as every window is (DESIGN "Time and lateness").
      if (ctx.watermarkMs >= purgeAt) {
        ctx.late([window]);
        return;
      }
      const state = ctx.map(STATE);
      const countsKey = String(window.start);
      const counts = (state.get(countsKey) as SideCounts | undefined) ?? { left: 0, right: 0 };
      const index = counts[side]++;
      state.set(`${window.start}/${side}/${index}`, { t: ctx.eventTimeMs, v: event } satisfies JoinEvent);
      state.set(countsKey, counts);
      if (ctx.watermarkMs < fireAt) {
        ctx.setEventTimeTimer(fireAt, FIRE + window.start);
      } else {
        // The window fired already and is within its allowed lateness: this event's pairs now.
        const lefts = eventsOf(state, window.start, 'left', counts.left);
        const rights = eventsOf(state, window.start, 'right', counts.right);
        if (side === 'left') emitPairs(ctx, window, lefts, rights, [index], () => rights.keys());
        else emitPairs(ctx, window, lefts, rights, lefts.keys(), () => [index]);
      }
      if (allowedLatenessMs > 0) ctx.setEventTimeTimer(purgeAt, PURGE + window.start);
    },

    onTimer(ctx: ActorContext, timer: TimerInfo): void {
      if (timer.tag.startsWith(FIRE)) {
        const start = Number(timer.tag.slice(FIRE.length));
        fire(ctx, start);
        if (allowedLatenessMs === 0) purge(ctx, start);
      } else if (timer.tag.startsWith(PURGE)) {
        purge(ctx, Number(timer.tag.slice(PURGE.length)));
      } else {
        throw new Error(`${HELPER}: a timer it did not set (${timer.domain} ${timer.timeMs} '${timer.tag}')`);
      }
    },
  };
}
