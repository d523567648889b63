// The windowed aggregation of one task: assigns each event to its windows, updates their
// accumulators in keyed state, fires windows as the watermark passes their end, re-emits on
// late updates, purges after the allowed lateness and reports events for purged windows.
// Semantics: worker/window/README.md and DESIGN.md "Time and lateness".
import TinyQueue from 'tinyqueue';
import type { KeyedState, SubKey } from '../../state/keyed-state.js';
import type { AggregateFunction, JobSpec, WindowSpec } from '../job.js';
import type { LateRecord, Output, Window } from '../types.js';
import { hoppingWindows } from './hopping.js';
import { cleanupTime, fireTime, isFired, isPurged } from './lateness.js';
import { mergeSession } from './session.js';
import { tumblingWindow } from './tumbling.js';
import { copyValue } from '../value-copy.js';

export const WINDOW_NAMESPACE = 'w';

/** One window's row in keyed state. */
interface WindowRow {
  accumulator: unknown;
  /** How many times it has been emitted; 0 until it fires. */
  revision: number;
}

interface WindowTimer {
  timeMs: number;
  key: string;
  start: number;
  end: number;
}

const byTime = (a: WindowTimer, b: WindowTimer) => a.timeMs - b.timeMs;

/** An event's changes to one window, computed before any is applied. */
interface WindowUpdate {
  window: Window;
  /** The stored row, or undefined for a new window. */
  row: WindowRow | undefined;
  accumulator: unknown;
  /** Set when the window has fired already: the event re-emits it with this value. */
  emitted: { value: unknown } | undefined;
}

/** A user aggregate function threw; `message` names the function and carries the cause's message. */
export class AggregateFunctionError extends Error {
  constructor(
    readonly functionName: 'init' | 'add' | 'merge' | 'result',
    cause: unknown,
  ) {
    super(`aggregate ${functionName} threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'AggregateFunctionError';
  }
}

export class WindowOperator {
  private readonly window: WindowSpec;
  private readonly fireQueue = new TinyQueue<WindowTimer>([], byTime);
  private readonly cleanupQueue = new TinyQueue<WindowTimer>([], byTime);
  /** Open windows per key: a key with open windows stays active in the cache (its timers fire synchronously). */
  private readonly openWindows = new Map<string, number>();
  private readonly init: AggregateFunction['init'];
  private readonly add: AggregateFunction['add'];
  private readonly merge: AggregateFunction['merge'];
  private readonly result: NonNullable<AggregateFunction['result']>;
  private readonly idPrefix: string;

  constructor(
    private readonly job: JobSpec,
    private readonly state: KeyedState,
    private readonly outputs: Output[],
    private readonly late: LateRecord[],
    private readonly partition: number,
    /** A window whose `result` kept throwing when it fired: the task dead-letters it. */
    private readonly onResultFailed: (key: string, window: Window, error: Error, attempts: number) => void,
  ) {
    this.window = job.window!;
    const aggregate = job.aggregate!;
    this.init = aggregate.init;
    this.add = aggregate.add;
    this.merge = aggregate.merge;
    this.result = aggregate.result ?? ((accumulator) => accumulator);
    this.idPrefix = `${job.name}/${job.version}/`;
  }

  /** Keys that must stay in memory because they have windows waiting to fire or be purged. */
  isPinned(key: string): boolean {
    return (this.openWindows.get(key) ?? 0) > 0;
  }

  /** Events that updated a window after it fired (each re-emitted it); read and reset per batch. */
  lateUpdates = 0;

  get openWindowCount(): number {
    return this.fireQueue.length + this.cleanupQueue.length;
  }

  /**
   * Handles one event, judged against the watermark before it (DESIGN: the watermark advances
   * after each event). The caller activated the key and advances the watermark afterwards.
   *
   * All-or-nothing: every user function (init, add, merge, result) runs on copies before anything
   * is changed, so when one throws (AggregateFunctionError) the state, queues and outputs are as
   * they were and the caller may retry the event or dead-letter it.
   */
  onEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number): void {
    switch (this.window.kind) {
      case 'tumbling': {
        const window = tumblingWindow(timeMs, this.window.sizeMs, this.window.offsetMs);
        if (isPurged(window, watermarkMs, this.job.allowedLatenessMs)) {
          this.reportLate(key, timeMs, value, [window], sequence);
        } else {
          this.applyUpdate(key, this.prepareUpdate(key, window, value, watermarkMs), watermarkMs);
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

  /** Runs add (and result, for a window that already fired) on a copy of the accumulator; changes nothing. */
  private prepareUpdate(key: string, window: Window, value: unknown, watermarkMs: number): WindowUpdate {
    const row = this.state.get(key, WINDOW_NAMESPACE, window.start) as WindowRow | undefined;
    const accumulator = this.callAdd(row ? copyValue(row.accumulator) : this.callInit(), value);
    // Flink: an element for a window that already fired (and is not purged) fires it again.
    const emitted = isFired(window, watermarkMs) ? { value: this.callResult(accumulator) } : undefined;
    return { window, row, accumulator, emitted };
  }

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

  private callInit(): unknown {
    try {
      return this.init();
    } catch (error) {
      throw new AggregateFunctionError('init', error);
    }
  }

  private callAdd(accumulator: unknown, value: unknown): unknown {
    try {
      return this.add(accumulator, value);
    } catch (error) {
      throw new AggregateFunctionError('add', error);
    }
  }

  private callMerge(left: unknown, right: unknown): unknown {
    try {
      return this.merge!(left, right);
    } catch (error) {
      throw new AggregateFunctionError('merge', error);
    }
  }

  /** The value to emit: a snapshot, so later changes to the accumulator never reach an emitted revision. */
  private callResult(accumulator: unknown): unknown {
    try {
      return copyValue(this.result(accumulator));
    } catch (error) {
      throw new AggregateFunctionError('result', error);
    }
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
      accumulator = accumulator === undefined ? oldAccumulator : this.callMerge(accumulator, oldAccumulator);
    }
    accumulator = this.callAdd(accumulator === undefined ? this.callInit() : accumulator, value);
    const fired = isFired(merged, watermarkMs);
    const emittedValue = fired ? this.callResult(accumulator) : undefined;

    // … then the changes.
    for (const [old, oldRow] of absorbedRows) {
      // A session that was emitted and is now part of a larger one is withdrawn from the table.
      if (oldRow.revision > 0) this.retract(key, old.start, old.end, oldRow.revision + 1);
      this.state.delete(key, WINDOW_NAMESPACE, [old.start, old.end]);
      this.unschedule(key);
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
    const allowedLatenessMs = this.job.allowedLatenessMs;
    let timer = this.fireQueue.peek();
    while (timer && timer.timeMs <= watermarkMs) {
      this.fireQueue.pop();
      const subKey = this.rowKey(timer.start, timer.end);
      const row = this.state.get(timer.key, WINDOW_NAMESPACE, subKey) as WindowRow | undefined;
      // A session merged away since it was scheduled has no row: nothing to fire.
      if (row) {
        this.fire(timer.key, timer.start, timer.end, row);
        this.state.put(timer.key, WINDOW_NAMESPACE, subKey, row);
        timer.timeMs = cleanupTime(timer, allowedLatenessMs);
        this.cleanupQueue.push(timer);
      }
      timer = this.fireQueue.peek();
    }
    timer = this.cleanupQueue.peek();
    while (timer && timer.timeMs <= watermarkMs) {
      this.cleanupQueue.pop();
      const subKey = this.rowKey(timer.start, timer.end);
      if (this.state.get(timer.key, WINDOW_NAMESPACE, subKey) !== undefined) {
        this.state.delete(timer.key, WINDOW_NAMESPACE, subKey);
        this.unschedule(timer.key);
      }
      timer = this.cleanupQueue.peek();
    }
  }

  /** Puts a window restored from a checkpoint back in the fire or purge queue it was in. */
  restoreWindow(key: string, subKey: SubKey, watermarkMs: number): void {
    if (typeof subKey === 'number') this.schedule(key, subKey, subKey + (this.window as { sizeMs: number }).sizeMs, watermarkMs);
    else {
      const [start, end] = subKey as [number, number];
      this.schedule(key, start, end, watermarkMs);
    }
  }

  /** A window already past its fire time is emitted by its event, so it only awaits cleanup (Flink registers no timer then). */
  private schedule(key: string, start: number, end: number, watermarkMs: number): void {
    const window = { start, end };
    if (isFired(window, watermarkMs)) this.cleanupQueue.push({ timeMs: cleanupTime(window, this.job.allowedLatenessMs), key, start, end });
    else this.fireQueue.push({ timeMs: fireTime(window), key, start, end });
    this.openWindows.set(key, (this.openWindows.get(key) ?? 0) + 1);
  }

  private unschedule(key: string): void {
    const open = (this.openWindows.get(key) ?? 1) - 1;
    if (open > 0) this.openWindows.set(key, open);
    else this.openWindows.delete(key);
  }

  /** Emits a window as the watermark passes its end; a `result` that keeps throwing is reported instead. */
  private fire(key: string, start: number, end: number, row: WindowRow): void {
    for (let attempt = 1; ; attempt++) {
      try {
        const value = this.callResult(row.accumulator);
        row.revision++;
        this.pushOutput('update', key, start, end, value, row.revision);
        return;
      } catch (error) {
        if (attempt > this.job.handlerRetries) {
          this.onResultFailed(key, { start, end }, error as Error, attempt);
          return;
        }
      }
    }
  }

  private retract(key: string, start: number, end: number, revision: number): void {
    this.pushOutput('retract', key, start, end, null, revision);
  }

  private pushOutput(kind: Output['kind'], key: string, start: number, end: number, value: unknown, revision: number): void {
    const { name: job, version } = this.job;
    this.outputs.push({ id: `${this.idPrefix}${key}/${start}-${end}`, job, version, key, window: { start, end }, value, revision, kind });
  }

  private reportLate(key: string, timeMs: number, value: unknown, windows: Window[], sequence: number): void {
    this.late.push({ key, time: timeMs, value, windows, partition: this.partition, sequence });
  }
}
