// The windowed aggregation of one task: assigns each event to its windows, updates their
// accumulators in keyed state, fires windows as the watermark passes their end, re-emits on
// late updates, purges after the allowed lateness and reports events for purged windows.
// Semantics: worker/window/README.md and DESIGN.md "Time and lateness".
import type { KeyedState, SubKey } from '../../state/keyed-state.js';
import type { WindowJobSpec, WindowSpec } from '../job.js';
import type { Operator, OperatorOutput, RawMessage } from '../operator.js';
import { TimerService, type Timer } from '../timer-service.js';
import type { Output, Window } from '../types.js';
import { hoppingWindows } from './hopping.js';
import { cleanupTime, fireTime, isFired, isPurged } from './lateness.js';
import { mergeSession } from './session.js';
import { tumblingWindow } from './tumbling.js';
import { AggregateCalls, AggregateFunctionError } from './aggregate-calls.js';
import { digestOf } from '../digest.js';
import { copyValue } from '../value-copy.js';

export const WINDOW_NAMESPACE = 'w';

/** One window's row in keyed state. */
interface WindowRow {
  accumulator: unknown;
  /** How many times it has been emitted; 0 until it fires. */
  revision: number;
}

// Timer tags: a window's fire timer and its purge timer. 'f' < 'p', so with no allowed lateness a
// window fires before it is purged at the same watermark. A key has at most one tumbling or
// hopping window ending at a given time, so for those the timer's kind and time name the window
// (end = fire time + 1, or purge time + 1 − allowed lateness); sessions, whose size varies,
// carry their window in the tag.
const FIRE = 'f';
const PURGE = 'p';
const FIRE_CODE = FIRE.charCodeAt(0);
function sessionTag(kind: typeof FIRE | typeof PURGE, start: number, end: number): string {
  return `${kind}${start}:${end}`;
}

/** An event's changes to one window, computed before any is applied. */
interface WindowUpdate {
  window: Window;
  /** The stored row, or undefined for a new window. */
  row: WindowRow | undefined;
  accumulator: unknown;
  /** Set when the window has fired already: the event re-emits it with this value. */
  emitted: { value: unknown } | undefined;
}

export class WindowOperator implements Operator {
  readonly residentNamespaces = [WINDOW_NAMESPACE];
  private readonly window: WindowSpec;
  /** Each open window has one timer: to fire at end − 1, then to purge after the allowed lateness. */
  private readonly timers = new TimerService();
  private readonly aggregate: AggregateCalls;
  private readonly idPrefix: string;

  constructor(
    private readonly job: WindowJobSpec,
    private readonly state: KeyedState,
    private readonly out: OperatorOutput,
    private readonly partition: number,
  ) {
    this.window = job.window;
    this.aggregate = new AggregateCalls(job.aggregate);
    this.idPrefix = `${job.name}/${job.version}/`;
  }

  /** Keys that must stay in memory because they have windows waiting to fire or be purged. */
  isPinned(key: string): boolean {
    return this.timers.hasTimers(key);
  }

  /** Events that updated a window after it fired (each re-emitted it). */
  private lateUpdates = 0;

  takeLateUpdates(): number {
    const count = this.lateUpdates;
    this.lateUpdates = 0;
    return count;
  }

  get openWindowCount(): number {
    return this.timers.size;
  }

  onEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, message: RawMessage): boolean {
    for (let attempt = 1; ; attempt++) {
      try {
        this.addEvent(key, timeMs, value, watermarkMs, message.sequence);
        return true;
      } catch (error) {
        if (!(error instanceof AggregateFunctionError)) throw error;
        if (attempt > this.job.handlerRetries) {
          this.out.deadLetter('aggregate-failed', `${error.message} (${attempt} attempts)`, message);
          return false;
        }
      }
    }
  }

  onProcessingTime(): void {
    // Event-time windows only.
  }

  /**
   * Handles one event, judged against the watermark before it (DESIGN: the watermark advances
   * after each event). The caller activated the key and advances the watermark afterwards.
   *
   * All-or-nothing: every user function (init, add, merge, result) runs on copies before anything
   * is changed, so when one throws (AggregateFunctionError) the state, queues and outputs are as
   * they were and the caller may retry the event or dead-letter it.
   */
  private addEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number): void {
    switch (this.window.kind) {
      case 'tumbling': {
        const window = tumblingWindow(timeMs, this.window.sizeMs, this.window.offsetMs);
        if (isPurged(window, watermarkMs, this.job.allowedLatenessMs)) {
          this.reportLate(key, timeMs, value, [window], sequence);
        } else {
          this.applyUpdate(key, this.prepareUpdate(key, window, value, watermarkMs, this.update), watermarkMs);
        }
        return;
      }
      case 'hopping': {
        let missed: Window[] | undefined;
        const updates: WindowUpdate[] = [];
        for (const window of hoppingWindows(timeMs, this.window.sizeMs, this.window.slideMs, this.window.offsetMs)) {
          if (isPurged(window, watermarkMs, this.job.allowedLatenessMs)) (missed ??= []).push(window);
          else updates.push(this.prepareUpdate(key, window, value, watermarkMs));
        }
        for (const update of updates) this.applyUpdate(key, update, watermarkMs);
        if (missed) this.reportLate(key, timeMs, value, missed, sequence);
        return;
      }
      case 'session':
        this.addToSession(key, timeMs, value, watermarkMs, sequence);
        return;
    }
  }

  /**
   * Runs add (and result, for a window that already fired) on a copy of the accumulator; changes
   * nothing. The result goes into `into` (a tumbling window's event reuses one), else a new update.
   */
  private prepareUpdate(
    key: string,
    window: Window,
    value: unknown,
    watermarkMs: number,
    into?: WindowUpdate,
  ): WindowUpdate {
    const row = this.state.get(key, WINDOW_NAMESPACE, window.start) as WindowRow | undefined;
    const accumulator = this.aggregate.add(
      row ? copyValue(row.accumulator) : this.aggregate.init(),
      value,
      this.out.source,
    );
    // Flink: an element for a window that already fired (and is not purged) fires it again.
    const emitted = isFired(window, watermarkMs) ? { value: this.aggregate.result(accumulator) } : undefined;
    if (into === undefined) return { window, row, accumulator, emitted };
    into.window = window;
    into.row = row;
    into.accumulator = accumulator;
    into.emitted = emitted;
    return into;
  }

  /** The one update of a tumbling window's event, reused from event to event. */
  private readonly update: WindowUpdate = {
    window: { start: 0, end: 0 },
    row: undefined,
    accumulator: undefined,
    emitted: undefined,
  };

  private applyUpdate(key: string, update: WindowUpdate, watermarkMs: number): void {
    const { start, end } = update.window;
    let row = update.row;
    if (!row) {
      row = { accumulator: update.accumulator, revision: 0 };
      this.schedule(key, start, end, watermarkMs);
    }
    row.accumulator = update.accumulator;
    if (update.emitted) {
      this.lateUpdates++;
      row.revision++;
      this.pushOutput('update', key, start, end, update.emitted.value, row.revision);
    }
    this.state.put(key, WINDOW_NAMESPACE, start, row);
  }

  /**
   * The row of a window: tumbling and hopping windows are named by their start alone (the end
   * follows from the size), a scalar the state cache looks up without building a string; sessions
   * need both ends.
   */
  private rowKey(start: number, end: number): number | [number, number] {
    return this.window.kind === 'session' ? [start, end] : start;
  }

  private addToSession(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number): void {
    const proposed = { start: timeMs, end: timeMs + this.window.gapMs };
    const existing: Window[] = [];
    for (const [subKey] of this.state.entries(key, WINDOW_NAMESPACE)) {
      const [start, end] = subKey as [number, number];
      existing.push({ start, end });
    }
    const { merged, absorbed } = mergeSession(existing, proposed);
    // Flink MergingWindowSet: merge first, then judge the merged window.
    if (isPurged(merged, watermarkMs, this.job.allowedLatenessMs)) {
      this.reportLate(key, timeMs, value, [merged], sequence);
      return;
    }
    // First every user function, on copies (nothing changes if one throws) …
    const mergedKey = [merged.start, merged.end];
    const target = absorbed.find((old) => old.start === merged.start && old.end === merged.end);
    const targetRow = target && (this.state.get(key, WINDOW_NAMESPACE, mergedKey) as WindowRow);
    let accumulator: unknown = targetRow ? copyValue(targetRow.accumulator) : undefined;
    const absorbedRows: Array<[Window, WindowRow]> = [];
    for (const old of absorbed) {
      if (old === target) continue;
      const oldRow = this.state.get(key, WINDOW_NAMESPACE, [old.start, old.end]) as WindowRow;
      absorbedRows.push([old, oldRow]);
      const oldAccumulator = copyValue(oldRow.accumulator);
      accumulator = accumulator === undefined ? oldAccumulator : this.aggregate.merge(accumulator, oldAccumulator);
    }
    accumulator = this.aggregate.add(
      accumulator === undefined ? this.aggregate.init() : accumulator,
      value,
      this.out.source,
    );
    const fired = isFired(merged, watermarkMs);
    const emittedValue = fired ? this.aggregate.result(accumulator) : undefined;

    // … then the changes.
    for (const [old, oldRow] of absorbedRows) {
      // A session that was emitted and is now part of a larger one is withdrawn from the table.
      if (oldRow.revision > 0) this.retract(key, old.start, old.end, oldRow.revision + 1);
      this.state.delete(key, WINDOW_NAMESPACE, [old.start, old.end]);
      this.unschedule(key, old.start, old.end);
    }
    const row: WindowRow = { accumulator, revision: targetRow?.revision ?? 0 };
    if (!targetRow) this.schedule(key, merged.start, merged.end, watermarkMs);
    if (fired) {
      this.lateUpdates++;
      row.revision++;
      this.pushOutput('update', key, merged.start, merged.end, emittedValue, row.revision);
    }
    this.state.put(key, WINDOW_NAMESPACE, mergedKey, row);
  }

  /** Fires every window whose end the watermark has passed and purges those past their lateness. */
  onWatermark(watermarkMs: number): void {
    this.firingUntilMs = watermarkMs;
    this.timers.advanceWatermark(watermarkMs, this.fireTimer);
  }

  /** The watermark the timers being fired are due at. */
  private firingUntilMs = -Infinity;

  /** onTimer, bound once: the watermark moves after nearly every event. */
  private readonly fireTimer = (timer: Timer): void => this.onTimer(timer);

  private onTimer(timer: Timer): void {
    const firing = timer.tag.charCodeAt(0) === FIRE_CODE;
    let start: number;
    let end: number;
    if (this.window.kind === 'session') {
      const colon = timer.tag.indexOf(':');
      start = Number(timer.tag.slice(1, colon));
      end = Number(timer.tag.slice(colon + 1));
    } else {
      end = firing ? timer.timeMs + 1 : timer.timeMs + 1 - this.job.allowedLatenessMs;
      start = end - this.window.sizeMs;
    }
    const subKey = this.rowKey(start, end);
    if (!firing) {
      this.state.delete(timer.key, WINDOW_NAMESPACE, subKey);
      return;
    }
    const row = this.state.get(timer.key, WINDOW_NAMESPACE, subKey) as WindowRow;
    this.fire(timer.key, start, end, row);
    const purgeMs = cleanupTime({ start, end }, this.job.allowedLatenessMs);
    if (purgeMs <= this.firingUntilMs) {
      // Its purge timer would come due in this same pass (no allowed lateness, or the watermark
      // jumped): purged now instead. Purging emits nothing, so every output keeps its place.
      this.state.delete(timer.key, WINDOW_NAMESPACE, subKey);
      return;
    }
    this.state.put(timer.key, WINDOW_NAMESPACE, subKey, row);
    this.timers.register('event-time', timer.key, purgeMs, this.tagOf(PURGE, start, end));
  }

  /** Registers the timer a window restored from a checkpoint was waiting for. */
  restoreRow(key: string, _namespace: string, subKey: SubKey, watermarkMs: number): void {
    if (typeof subKey === 'number') this.schedule(key, subKey, subKey + this.window.sizeMs, watermarkMs);
    else {
      const [start, end] = subKey as [number, number];
      this.schedule(key, start, end, watermarkMs);
    }
  }

  /** A window already past its fire time is emitted by its event, so it only awaits its purge (Flink registers no timer then). */
  private schedule(key: string, start: number, end: number, watermarkMs: number): void {
    const window = { start, end };
    if (isFired(window, watermarkMs))
      this.timers.register(
        'event-time',
        key,
        cleanupTime(window, this.job.allowedLatenessMs),
        this.tagOf(PURGE, start, end),
      );
    else this.timers.register('event-time', key, fireTime(window), this.tagOf(FIRE, start, end));
  }

  /** A session merged into another: its timer goes (whichever of the two it has). */
  private unschedule(key: string, start: number, end: number): void {
    if (!this.timers.delete('event-time', key, fireTime({ start, end }), this.tagOf(FIRE, start, end))) {
      this.timers.delete(
        'event-time',
        key,
        cleanupTime({ start, end }, this.job.allowedLatenessMs),
        this.tagOf(PURGE, start, end),
      );
    }
  }

  private tagOf(kind: typeof FIRE | typeof PURGE, start: number, end: number): string {
    return this.window.kind === 'session' ? sessionTag(kind, start, end) : kind;
  }

  /** Emits a window as the watermark passes its end; a `result` that keeps throwing is reported instead. */
  private fire(key: string, start: number, end: number, row: WindowRow): void {
    for (let attempt = 1; ; attempt++) {
      try {
        const value = this.aggregate.result(row.accumulator);
        row.revision++;
        this.pushOutput('update', key, start, end, value, row.revision);
        return;
      } catch (error) {
        if (attempt > this.job.handlerRetries) {
          // The window is dead-lettered, not emitted; the task goes on.
          const data = new TextEncoder().encode(JSON.stringify({ key, window: { start, end } }));
          const error_ = `window [${start}, ${end}) of key ${JSON.stringify(key.slice(0, 80))} not emitted: ${(error as Error).message} (${attempt} attempts)`;
          this.out.deadLetter(
            'aggregate-failed',
            error_,
            { data, sequence: this.out.sequence },
            `/window/${digestOf([key, start, end])}`,
          );
          return;
        }
      }
    }
  }

  private retract(key: string, start: number, end: number, revision: number): void {
    this.pushOutput('retract', key, start, end, null, revision);
  }

  private pushOutput(
    kind: Output['kind'],
    key: string,
    start: number,
    end: number,
    value: unknown,
    revision: number,
  ): void {
    const { name: job, version } = this.job;
    this.out.outputs.push({
      id: `${this.idPrefix}${key}/${start}-${end}`,
      job,
      version,
      key,
      window: { start, end },
      value,
      revision,
      kind,
    });
  }

  private reportLate(key: string, timeMs: number, value: unknown, windows: Window[], sequence: number): void {
    this.out.late.push({ key, time: timeMs, value, windows, partition: this.partition, sequence });
  }
}
