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
   */
  onEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number): void {
    switch (this.window.kind) {
      case 'tumbling': {
        const window = tumblingWindow(timeMs, this.window.sizeMs, this.window.offsetMs);
        if (isPurged(window, watermarkMs, this.job.allowedLatenessMs)) {
          this.reportLate(key, timeMs, value, [window], sequence);
        } else {
          this.addToWindow(key, window.start, window.end, value, watermarkMs);
        }
        return;
      }
      case 'hopping': {
        let missed: Window[] | undefined;
        for (const window of hoppingWindows(timeMs, this.window.sizeMs, this.window.slideMs, this.window.offsetMs)) {
          if (isPurged(window, watermarkMs, this.job.allowedLatenessMs)) (missed ??= []).push(window);
          else this.addToWindow(key, window.start, window.end, value, watermarkMs);
        }
        if (missed) this.reportLate(key, timeMs, value, missed, sequence);
        return;
      }
      case 'session':
        this.addToSession(key, timeMs, value, watermarkMs, sequence);
        return;
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

  private addToWindow(key: string, start: number, end: number, value: unknown, watermarkMs: number): void {
    const subKey = start;
    let row = this.state.get(key, WINDOW_NAMESPACE, subKey) as WindowRow | undefined;
    if (!row) {
      row = { accumulator: this.init(), revision: 0 };
      this.schedule(key, start, end, watermarkMs);
    }
    row.accumulator = this.add(row.accumulator, value);
    // Flink: an element for a window that already fired (and is not purged) fires it again.
    if (isFired({ start, end }, watermarkMs)) {
      this.lateUpdates++;
      this.emit(key, start, end, row);
    }
    this.state.put(key, WINDOW_NAMESPACE, subKey, row);
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
    let row: WindowRow | undefined;
    for (const old of absorbed) {
      const oldKey = [old.start, old.end];
      const oldRow = this.state.get(key, WINDOW_NAMESPACE, oldKey) as WindowRow;
      if (old.start === merged.start && old.end === merged.end) {
        row = row ? { accumulator: this.merge!(oldRow.accumulator, row.accumulator), revision: oldRow.revision } : oldRow;
        continue;
      }
      row = row ? { accumulator: this.merge!(row.accumulator, oldRow.accumulator), revision: row.revision } : { accumulator: oldRow.accumulator, revision: 0 };
      // A session that was emitted and is now part of a larger one is withdrawn from the table.
      if (oldRow.revision > 0) this.retract(key, old.start, old.end, oldRow.revision + 1);
      this.state.delete(key, WINDOW_NAMESPACE, oldKey);
      this.unschedule(key);
    }
    const isNew = !row || !absorbed.some((old) => old.start === merged.start && old.end === merged.end);
    row ??= { accumulator: this.init(), revision: 0 };
    row.accumulator = this.add(row.accumulator, value);
    if (isNew) this.schedule(key, merged.start, merged.end, watermarkMs);
    if (isFired(merged, watermarkMs)) {
      this.lateUpdates++;
      this.emit(key, merged.start, merged.end, row);
    }
    this.state.put(key, WINDOW_NAMESPACE, [merged.start, merged.end], row);
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
        this.emit(timer.key, timer.start, timer.end, row);
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

  private emit(key: string, start: number, end: number, row: WindowRow): void {
    row.revision++;
    this.pushOutput('update', key, start, end, this.result(row.accumulator), row.revision);
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
