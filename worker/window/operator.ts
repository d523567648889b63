// The windowed aggregation of one task: assigns each event to its windows, folds it into their
// accumulators, fires windows as the watermark passes their end, re-emits on late updates, purges
// after the allowed lateness and reports events for purged windows.
// Semantics: worker/window/README.md and DESIGN.md "Time and lateness".
//
// Open windows live in memory, here, not in keyed state: a tumbling or hopping window holds every
// key's row, so an event costs two map lookups and the aggregate's `add`, and a window's rows fire
// together when the watermark passes its end (no timer per row). Keyed state (RocksDB) holds them
// as of the last checkpoint: syncState() writes the rows changed since, and a restore reads them
// back. This one operator folds events live, in a replay through the log, over the archive (hybrid
// replay) and in `kappa run`: the batch executor and the streaming operator are the same code, so
// their results cannot differ.
//
// Memory is bounded by `maxRows`, and by the thread's heap (worker/heap-pressure.ts: past a share of the
// limit live after a full collection, the budget drops to half the rows in memory until the heap
// is back down): past it, after a batch, whole tumbling or hopping windows are
// spilled to the task's scratch RocksDB (windows that fired and only await their lateness first,
// then those that end last), and read back before a batch that needs them: the rows its events
// update, and every spilled window the batch's watermark may fire. So an event never waits on a
// read, and a window fires from memory as it does unspilled. A fired window that only awaited its
// lateness is purged without being read back. Session windows spill a key at a time (a merge can
// touch any session of a key), with their timers, and are read back before a batch with an event
// of the key or whose watermark reaches one of the key's timers.
import type { KeyedState, SubKey } from '../../state/keyed-state.js';
import { decodeKey, encodeKey, prefixUpperBound } from '../../state/key-encoding.js';
import type { StateRow, TaskStore } from '../../state/task-store.js';
import type { WindowJobSpec, WindowSpec } from '../job.js';
import type { Operator, OperatorOutput, RawMessage } from '../operator.js';
import TinyQueue from 'tinyqueue';
import { TimerService, type Timer } from '../timer-service.js';
import { lateRecordOf, type Output, type Window } from '../types.js';
import { hoppingWindows } from './hopping.js';
import { cleanupTime, fireTime, isFired, isPurged } from './lateness.js';
import { mergeSession } from './session.js';
import { floorMod } from './tumbling.js';
import { AggregateCalls, AggregateFunctionError } from './aggregate-calls.js';
import { digestOf } from '../digest.js';
import { copyValue } from '../value-copy.js';
import { HEAP_RELAX_SHARE, HEAP_SPILL_SHARE, HeapWatch } from '../heap-pressure.js';

export const WINDOW_NAMESPACE = 'w';

/** Rows of open windows a task holds in memory at most (after each batch) unless told otherwise. */
export const DEFAULT_WINDOW_MEMORY_ROWS = 1_000_000;

/** A row spilled to the scratch store: [accumulator, revision, flags]. */
type SpilledRow = [accumulator: unknown, revision: number, flags: number];
/** A key's sessions spilled to the scratch store, under encodeKey([key]). */
type SpilledSession = [start: number, end: number, accumulator: unknown, revision: number, flags: number];
/** Changed since the last syncState(): the next sync must write it. */
const SPILLED_DIRTY = 1;
/** Keyed state holds it (as of the last sync). */
const SPILLED_STORED = 2;

/** One window's row in keyed state (the checkpoint's format). */
interface StoredWindowRow {
  accumulator: unknown;
  /** How many times it has been emitted; 0 until it fires. */
  revision: number;
}

/** An open window of one key. A Window itself, so session merging works on these rows directly. */
class WindowRow implements Window {
  revision = 0;
  /** Changed since the last syncState(). */
  dirty = false;
  /** Keyed state holds the row (as of the last syncState()). */
  stored = false;
  /** Purged or merged away: gone from memory, and from keyed state at the next sync. */
  removed = false;
  /** Spilled to the scratch store: this object is no longer the row (a read-back makes a new one). */
  spilled = false;

  constructor(
    readonly key: string,
    readonly start: number,
    readonly end: number,
    public accumulator: unknown,
  ) {}
}

/** A tumbling or hopping window [start, end) with the rows of every key that has events in it. */
class AlignedWindow {
  /** The rows in memory. */
  readonly rows = new Map<string, WindowRow>();
  /** Rows only in the scratch store (not in `rows`): how many, how many the next sync must write, how many keyed state holds. */
  spilled = 0;
  spilledDirty = 0;
  spilledStored = 0;
  /** The scratch store may hold rows of it (stale copies of rows read back too): removed at purge. */
  inScratch = false;

  constructor(
    readonly start: number,
    readonly end: number,
    /** The watermark has passed its end: its rows are emitted, and an event re-emits its row. */
    public fired: boolean,
  ) {}
}

// Session timers' tags: fire or purge, and the session they concern. 'f' < 'p', so with no allowed
// lateness a session fires before it is purged at the same watermark.
const FIRE = 'f';
const PURGE = 'p';
const FIRE_CODE = FIRE.charCodeAt(0);
function sessionTag(kind: typeof FIRE | typeof PURGE, start: number, end: number): string {
  return `${kind}${start}:${end}`;
}

/** An event's change to one aligned window, computed before any is applied. */
interface AlignedUpdate {
  start: number;
  end: number;
  window: AlignedWindow | undefined;
  row: WindowRow | undefined;
  accumulator: unknown;
  fired: boolean;
  /** What a fired window re-emits. */
  emitted: unknown;
}

const NO_ROWS: readonly WindowRow[] = [];

export class WindowOperator implements Operator {
  readonly residentNamespaces = [WINDOW_NAMESPACE];
  readonly readsKeyedState = false;
  private readonly window: WindowSpec;
  private readonly aggregate: AggregateCalls;
  private readonly idPrefix: string;
  private readonly allowedLatenessMs: number;

  /** Tumbling and hopping windows by start, and the same in start order (= fire order). */
  private readonly aligned = new Map<number, AlignedWindow>();
  private openAligned: AlignedWindow[] = [];
  /** The lowest watermark at which some aligned window fires or is purged. */
  private nextDueMs = Infinity;
  /** Open rows of every kind in memory, and the aligned rows spilled to the scratch store. */
  private residentRows = 0;
  private spilledRows = 0;
  /** The row budget now: maxRows, or less while the heap is under pressure. */
  private budgetRows: number;
  /** The scratch store, once something is spilled, and purged windows it still holds rows of. */
  private scratch: TaskStore | undefined;
  private purgedInScratch: AlignedWindow[] = [];

  /** Session windows of each key, and their fire and purge timers. */
  private readonly sessions = new Map<string, WindowRow[]>();
  private readonly sessionTimers = new TimerService();
  /**
   * Keys whose sessions are spilled (their timers are taken out of the timer service), with
   * the watermark at which the first of them is due, in a queue by that time; an entry of a key
   * read back since is skipped. And the spilled keys the next sync must write.
   */
  private readonly spilledSessionKeys = new Map<string, number>();
  private readonly spilledSessionsDue = new TinyQueue<{ dueMs: number; key: string }>([], (a, b) => a.dueMs - b.dueMs);
  private spilledSessionKeysDirty = new Set<string>();

  /** Rows changed since the last sync, and rows keyed state holds that are gone since. */
  private dirty: WindowRow[] = [];
  private removedStored: WindowRow[] = [];

  /** Times heap pressure lowered the row budget. */
  heapSpills = 0;

  /** Events that updated a window after it fired (each re-emitted it). */
  private lateUpdates = 0;
  /** The watermark the windows being fired are due at. */
  private firingUntilMs = -Infinity;

  constructor(
    private readonly job: WindowJobSpec,
    private readonly state: KeyedState,
    private readonly out: OperatorOutput,
    private readonly partition: number,
    /** Rows of open windows held in memory after a batch; beyond it windows are spilled to RocksDB. */
    private readonly maxRows: number = DEFAULT_WINDOW_MEMORY_ROWS,
    /** When the thread's heap is past its share (worker/heap-pressure.ts); a test gives its own readings. */
    private readonly heapWatch: HeapWatch = new HeapWatch(),
  ) {
    this.budgetRows = maxRows;
    this.window = job.window;
    this.aggregate = new AggregateCalls(job.aggregate);
    this.idPrefix = `${job.name}/${job.version}/`;
    this.allowedLatenessMs = job.allowedLatenessMs;
  }

  /** Open windows: one per key and window, fired or not, until purged; in memory or spilled. */
  get openWindows(): number {
    return this.residentRows + this.spilledRows;
  }

  /** Open windows spilled to the scratch store. */
  get spilledWindows(): number {
    return this.spilledRows;
  }

  /** No key is activated in keyed state: the open windows are written past its cache (putUncached). */
  isPinned(): boolean {
    return false;
  }

  takeLateUpdates(): number {
    const count = this.lateUpdates;
    this.lateUpdates = 0;
    return count;
  }

  onEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, message: RawMessage): boolean {
    for (let attempt = 1; ; attempt++) {
      try {
        this.addEvent(key, timeMs, value, watermarkMs, message);
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
   * after each event). The caller advances the watermark afterwards.
   *
   * All-or-nothing: every user function (init, add, merge, result) runs on copies before anything
   * is changed, so when one throws (AggregateFunctionError) the windows and outputs are as they
   * were and the caller may retry the event or dead-letter it.
   */
  private addEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, origin: RawMessage): void {
    switch (this.window.kind) {
      case 'tumbling': {
        const sizeMs = this.window.sizeMs;
        const start = timeMs - floorMod(timeMs - this.window.offsetMs, sizeMs);
        const end = start + sizeMs;
        if (watermarkMs >= end - 1 + this.allowedLatenessMs) {
          this.reportLate(key, timeMs, value, [{ start, end }], origin);
          return;
        }
        this.applyAligned(key, this.prepareAligned(key, start, end, value, watermarkMs, this.update), watermarkMs);
        return;
      }
      case 'hopping': {
        let missed: Window[] | undefined;
        const updates: AlignedUpdate[] = [];
        for (const window of hoppingWindows(timeMs, this.window.sizeMs, this.window.slideMs, this.window.offsetMs)) {
          if (isPurged(window, watermarkMs, this.allowedLatenessMs)) (missed ??= []).push(window);
          else updates.push(this.prepareAligned(key, window.start, window.end, value, watermarkMs));
        }
        for (const update of updates) this.applyAligned(key, update, watermarkMs);
        if (missed) this.reportLate(key, timeMs, value, missed, origin);
        return;
      }
      case 'session':
        this.addToSession(key, timeMs, value, watermarkMs, origin);
        return;
    }
  }

  /** The one update of a tumbling window's event, reused from event to event. */
  private readonly update: AlignedUpdate = {
    start: 0,
    end: 0,
    window: undefined,
    row: undefined,
    accumulator: undefined,
    fired: false,
    emitted: undefined,
  };

  /**
   * Runs add (and result, for a window that already fired) on a copy of the accumulator; changes
   * nothing. The result goes into `into` (a tumbling window's event reuses one), else a new update.
   */
  private prepareAligned(
    key: string,
    start: number,
    end: number,
    value: unknown,
    watermarkMs: number,
    into?: AlignedUpdate,
  ): AlignedUpdate {
    const window = this.aligned.get(start);
    const row = window?.rows.get(key);
    const accumulator = this.aggregate.add(
      row ? copyValue(row.accumulator) : this.aggregate.init(),
      value,
      this.out.source,
    );
    // Flink: an element for a window that already fired (and is not purged) fires it again.
    const fired = watermarkMs >= end - 1;
    const emitted = fired ? this.aggregate.result(accumulator) : undefined;
    const update = into ?? ({} as AlignedUpdate);
    update.start = start;
    update.end = end;
    update.window = window;
    update.row = row;
    update.accumulator = accumulator;
    update.fired = fired;
    update.emitted = emitted;
    return update;
  }

  private applyAligned(key: string, update: AlignedUpdate, watermarkMs: number): void {
    const window = update.window ?? this.openAlignedWindow(update.start, update.end, watermarkMs);
    let row = update.row;
    if (row) row.accumulator = update.accumulator;
    else {
      row = new WindowRow(key, update.start, update.end, update.accumulator);
      this.addAligned(window, row);
    }
    if (update.fired) {
      this.lateUpdates++;
      row.revision++;
      this.pushOutput('update', key, row.start, row.end, update.emitted, row.revision);
    }
    this.markDirty(row);
  }

  /**
   * A window no key had rows in yet. One the watermark has already passed (a late event within
   * the allowed lateness) is fired from the start: its rows are emitted by their events.
   */
  private openAlignedWindow(start: number, end: number, watermarkMs: number): AlignedWindow {
    const window = new AlignedWindow(start, end, isFired({ start, end }, watermarkMs));
    this.aligned.set(start, window);
    const open = this.openAligned;
    let index = open.length;
    while (index > 0 && open[index - 1]!.start > start) index--;
    open.splice(index, 0, window);
    this.nextDueMs = Math.min(this.nextDueMs, this.dueMs(window));
    return window;
  }

  /** When the watermark next does something to an aligned window: fire it, or purge it once fired. */
  private dueMs(window: AlignedWindow): number {
    return window.fired ? cleanupTime(window, this.allowedLatenessMs) : fireTime(window);
  }

  private addToSession(key: string, timeMs: number, value: unknown, watermarkMs: number, origin: RawMessage): void {
    if (this.spilledSessionKeys.has(key)) {
      throw new Error(
        `the sessions of key ${JSON.stringify(key.slice(0, 80))} are still spilled (a bug: the batch did not read them back)`,
      );
    }
    const sessions = this.sessions.get(key) ?? NO_ROWS;
    const { merged, absorbed } = mergeSession(sessions, { start: timeMs, end: timeMs + this.window.gapMs });
    // Flink MergingWindowSet: merge first, then judge the merged window.
    if (isPurged(merged, watermarkMs, this.allowedLatenessMs)) {
      this.reportLate(key, timeMs, value, [merged], origin);
      return;
    }
    // First every user function, on copies (nothing changes if one throws) …
    const absorbedRows = absorbed as WindowRow[];
    const target = absorbedRows.find((old) => old.start === merged.start && old.end === merged.end);
    let accumulator: unknown = target ? copyValue(target.accumulator) : undefined;
    for (const old of absorbedRows) {
      if (old === target) continue;
      const oldAccumulator = copyValue(old.accumulator);
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
    for (const old of absorbedRows) {
      if (old === target) continue;
      // A session that was emitted and is now part of a larger one is withdrawn from the table.
      if (old.revision > 0) this.pushOutput('retract', key, old.start, old.end, null, old.revision + 1);
      this.unschedule(key, old.start, old.end);
      this.removeSession(old);
    }
    let row = target;
    if (row) row.accumulator = accumulator;
    else {
      row = new WindowRow(key, merged.start, merged.end, accumulator);
      this.addSession(row);
      this.schedule(key, merged.start, merged.end, watermarkMs);
    }
    if (fired) {
      this.lateUpdates++;
      row.revision++;
      this.pushOutput('update', key, merged.start, merged.end, emittedValue, row.revision);
    }
    this.markDirty(row);
  }

  private addAligned(window: AlignedWindow, row: WindowRow): void {
    window.rows.set(row.key, row);
    this.residentRows++;
  }

  private addSession(row: WindowRow): void {
    this.residentRows++;
    const sessions = this.sessions.get(row.key);
    if (sessions) sessions.push(row);
    else this.sessions.set(row.key, [row]);
  }

  private removeSession(row: WindowRow): void {
    const sessions = this.sessions.get(row.key)!;
    sessions.splice(sessions.indexOf(row), 1);
    if (sessions.length === 0) this.sessions.delete(row.key);
    this.removeRow(row);
  }

  /** Fires every window whose end the watermark has passed and purges those past their lateness. */
  onWatermark(watermarkMs: number): void {
    this.firingUntilMs = watermarkMs;
    if (this.window.kind === 'session') {
      this.sessionTimers.advanceWatermark(watermarkMs, this.fireSessionTimer);
      return;
    }
    if (watermarkMs < this.nextDueMs) return;
    // In start order, which is fire order: a window's keys fire together, in key order, as their
    // timers would (time, then key).
    let purged = false;
    for (const window of this.openAligned) {
      if (!window.fired) {
        // Every later window ends later: none of them is due either.
        if (watermarkMs < fireTime(window)) break;
        this.fireAligned(window);
      }
      if (watermarkMs >= cleanupTime(window, this.allowedLatenessMs)) {
        this.purgeAligned(window);
        purged = true;
      }
    }
    if (purged) this.openAligned = this.openAligned.filter((window) => this.aligned.has(window.start));
    let next = Infinity;
    for (const window of this.openAligned) next = Math.min(next, this.dueMs(window));
    this.nextDueMs = next;
  }

  private fireAligned(window: AlignedWindow): void {
    assertLoaded(window, 'fired');
    window.fired = true;
    const keys = [...window.rows.keys()].sort();
    for (const key of keys) this.fire(window.rows.get(key)!);
  }

  /**
   * Drops a fired window. Its spilled rows are not read back for this: they only go, and those
   * keyed state holds are deleted from it, at the next async point (clearPurged).
   */
  private purgeAligned(window: AlignedWindow): void {
    this.aligned.delete(window.start);
    for (const row of window.rows.values()) this.removeRow(row);
    this.spilledRows -= window.spilled;
    if (window.inScratch) this.purgedInScratch.push(window);
  }

  /** onSessionTimer, bound once. */
  private readonly fireSessionTimer = (timer: Timer): void => this.onSessionTimer(timer);

  private onSessionTimer(timer: Timer): void {
    const colon = timer.tag.indexOf(':');
    const start = Number(timer.tag.slice(1, colon));
    const end = Number(timer.tag.slice(colon + 1));
    const row = this.sessions.get(timer.key)!.find((session) => session.start === start && session.end === end)!;
    if (timer.tag.charCodeAt(0) !== FIRE_CODE) {
      this.removeSession(row);
      return;
    }
    this.fire(row);
    const purgeMs = cleanupTime(row, this.allowedLatenessMs);
    if (purgeMs <= this.firingUntilMs) {
      // Its purge would come due in this same pass (no allowed lateness, or the watermark jumped):
      // purged now instead. Purging emits nothing, so every output keeps its place.
      this.removeSession(row);
      return;
    }
    this.sessionTimers.register('event-time', timer.key, purgeMs, sessionTag(PURGE, start, end));
  }

  /** A session already past its fire time is emitted by its events, so it only awaits its purge (Flink registers no timer then). */
  private schedule(key: string, start: number, end: number, watermarkMs: number): void {
    const window = { start, end };
    if (isFired(window, watermarkMs))
      this.sessionTimers.register(
        'event-time',
        key,
        cleanupTime(window, this.allowedLatenessMs),
        sessionTag(PURGE, start, end),
      );
    else this.sessionTimers.register('event-time', key, fireTime(window), sessionTag(FIRE, start, end));
  }

  /** A session merged into another: its timer goes (whichever of the two it has). */
  private unschedule(key: string, start: number, end: number): void {
    if (!this.sessionTimers.delete('event-time', key, fireTime({ start, end }), sessionTag(FIRE, start, end))) {
      this.sessionTimers.delete(
        'event-time',
        key,
        cleanupTime({ start, end }, this.allowedLatenessMs),
        sessionTag(PURGE, start, end),
      );
    }
  }

  /** Emits a window as the watermark passes its end; a `result` that keeps throwing is reported instead. */
  private fire(row: WindowRow): void {
    for (let attempt = 1; ; attempt++) {
      try {
        const value = this.aggregate.result(row.accumulator);
        row.revision++;
        this.pushOutput('update', row.key, row.start, row.end, value, row.revision);
        this.markDirty(row);
        return;
      } catch (error) {
        if (attempt > this.job.handlerRetries) {
          // The window is dead-lettered, not emitted; the task goes on.
          const { key, start, end } = row;
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

  private markDirty(row: WindowRow): void {
    if (row.dirty) return;
    row.dirty = true;
    this.dirty.push(row);
  }

  private removeRow(row: WindowRow): void {
    this.residentRows--;
    row.removed = true;
    if (row.stored) this.removedStored.push(row);
  }

  /** The row's key within the window namespace: aligned windows by start (the end follows from the size), sessions by both ends. */
  private subKeyOf(row: WindowRow): SubKey {
    return this.window.kind === 'session' ? [row.start, row.end] : row.start;
  }

  /** A row read back at restore: the window is open again, as it was at the checkpoint. */
  restoreRow(key: string, _namespace: string, subKey: SubKey, value: unknown, watermarkMs: number): void {
    const stored = value as StoredWindowRow;
    let row: WindowRow;
    if (typeof subKey === 'number') {
      const end = subKey + this.window.sizeMs;
      const window = this.aligned.get(subKey) ?? this.openAlignedWindow(subKey, end, watermarkMs);
      row = new WindowRow(key, subKey, end, stored.accumulator);
      this.addAligned(window, row);
    } else {
      const [start, end] = subKey as [number, number];
      row = new WindowRow(key, start, end, stored.accumulator);
      this.addSession(row);
      this.schedule(key, start, end, watermarkMs);
    }
    row.revision = stored.revision;
    row.stored = true;
  }

  /**
   * Writes the rows changed since the last sync into keyed state (and deletes the rows gone since),
   * so the next flush — a checkpoint — stores the open windows as they are now. The rows go past
   * keyed state's cache: they are held here (or spilled), not twice.
   */
  async syncState(): Promise<void> {
    await this.clearPurged();
    await this.syncSpilled();
    await this.syncSpilledSessions();
    const dirty = this.dirty;
    const removed = this.removedStored;
    if (dirty.length === 0 && removed.length === 0) return;
    this.dirty = [];
    this.removedStored = [];
    // A session merged away and an equal one opened since the last sync: only the put is written
    // (keyed state writes a row once per flush).
    let reopened: Set<string> | undefined;
    if (removed.length > 0 && this.window.kind === 'session') {
      reopened = new Set();
      for (const row of dirty) if (!row.removed) reopened.add(sessionIdentity(row));
    }
    for (const row of removed) {
      row.stored = false;
      if (reopened?.has(sessionIdentity(row))) continue;
      this.state.deleteUncached(row.key, WINDOW_NAMESPACE, this.subKeyOf(row));
    }
    for (const row of dirty) {
      row.dirty = false;
      if (row.removed || row.spilled) continue;
      const stored: StoredWindowRow = { accumulator: row.accumulator, revision: row.revision };
      this.state.putUncached(row.key, WINDOW_NAMESPACE, this.subKeyOf(row), stored);
      row.stored = true;
    }
  }

  /** The spilled rows changed since the last sync go to keyed state too, and are marked stored in the scratch store. */
  private async syncSpilled(): Promise<void> {
    const scratch = this.scratch;
    if (scratch === undefined) return;
    for (const window of this.openAligned) {
      if (window.spilledDirty === 0) continue;
      const prefix = encodeKey([window.start]);
      for await (const rows of scratch.scanBatches(prefix, prefixUpperBound(prefix), SCRATCH_READ_ROWS)) {
        const rewritten: StateRow[] = [];
        for (const [rowKey, value] of rows) {
          const key = decodeKey(rowKey)[1] as string;
          const [accumulator, revision, flags] = value as SpilledRow;
          // A row read back since is in memory, newer than its copy here, and synced from there.
          if ((flags & SPILLED_DIRTY) === 0 || window.rows.has(key)) continue;
          const stored: StoredWindowRow = { accumulator, revision };
          this.state.putUncached(key, WINDOW_NAMESPACE, window.start, stored);
          rewritten.push([rowKey, [accumulator, revision, SPILLED_STORED] satisfies SpilledRow]);
          if ((flags & SPILLED_STORED) === 0) window.spilledStored++;
        }
        await scratch.write(rewritten);
      }
      window.spilledDirty = 0;
    }
  }

  /**
   * Past the memory budget, spills whole tumbling or hopping windows to the scratch store until
   * half the budget is left: first those that fired and only await their lateness (oldest first:
   * only late events touch them), then those that end last. Called after a batch; undefined when
   * there is nothing to do (no await on the usual path).
   */
  spillIfOverBudget(watermarkMs: number): Promise<void> | undefined {
    this.followHeap();
    if (this.residentRows <= this.budgetRows && this.purgedInScratch.length === 0) return undefined;
    return this.window.kind === 'session' ? this.spillSessions(watermarkMs) : this.spill();
  }

  /**
   * A full collection found the live heap past HEAP_SPILL_SHARE of the limit: the budget drops to
   * half the rows in memory (so a spill leaves a quarter), once per collection, since only the
   * next one shows what spilling freed. Below HEAP_RELAX_SHARE the configured budget is back.
   */
  private followHeap(): void {
    const heap = this.heapWatch.newReading();
    if (heap === undefined) return;
    if (heap.liveShare > HEAP_SPILL_SHARE && this.residentRows > 1) {
      this.budgetRows = Math.min(this.budgetRows, Math.floor(this.residentRows / 2));
      this.heapSpills++;
    } else if (heap.liveShare < HEAP_RELAX_SHARE) {
      this.budgetRows = this.maxRows;
    }
  }

  /**
   * Sessions spill a key at a time (a merge can touch any session of a key), oldest keys first,
   * until half the budget is left. A spilled key's timers leave the timer service; the queue of
   * spilled keys knows when the first is due, and the key is read back before a batch that gets
   * there, where schedule() registers them again from the watermark, as a restore does.
   */
  private async spillSessions(watermarkMs: number): Promise<void> {
    const scratch = await this.openScratch();
    if (this.residentRows <= this.budgetRows) return;
    const target = Math.floor(this.budgetRows / 2);
    const rows: StateRow[] = [];
    for (const [key, sessions] of this.sessions) {
      if (this.residentRows <= target) break;
      const spilled: SpilledSession[] = [];
      let dueMs = Infinity;
      let dirty = false;
      for (const row of sessions) {
        const flags = (row.stored ? SPILLED_STORED : 0) | (row.dirty ? SPILLED_DIRTY : 0);
        dirty ||= row.dirty;
        spilled.push([row.start, row.end, row.accumulator, row.revision, flags]);
        this.unschedule(key, row.start, row.end);
        const window = { start: row.start, end: row.end };
        dueMs = Math.min(
          dueMs,
          isFired(window, watermarkMs) ? cleanupTime(window, this.allowedLatenessMs) : fireTime(window),
        );
        row.spilled = true;
      }
      rows.push([encodeKey([key]), spilled]);
      this.sessions.delete(key);
      this.residentRows -= sessions.length;
      this.spilledRows += sessions.length;
      this.spilledSessionKeys.set(key, sessions.length);
      this.spilledSessionsDue.push({ dueMs, key });
      if (dirty) this.spilledSessionKeysDirty.add(key);
    }
    this.dirty = this.dirty.filter((row) => !row.spilled);
    await scratch.write(rows);
  }

  /** Spilled keys of the batch and those whose first session is due by `watermarkBoundMs`: their sessions back in memory. */
  private async readBackSessions(
    keys: readonly string[],
    watermarkMs: number,
    watermarkBoundMs: number,
  ): Promise<void> {
    const wanted = new Set<string>();
    for (const key of keys) if (this.spilledSessionKeys.has(key)) wanted.add(key);
    const due = this.spilledSessionsDue;
    while (due.length > 0 && due.peek()!.dueMs <= watermarkBoundMs) {
      const { key } = due.pop()!;
      // An entry of a key read back (and maybe spilled again, with an entry of its own) since.
      if (this.spilledSessionKeys.has(key)) wanted.add(key);
    }
    if (wanted.size === 0) return;
    const keyList = [...wanted];
    const values = await this.scratch!.getMany(keyList.map((key) => encodeKey([key])));
    for (let index = 0; index < keyList.length; index++) {
      const key = keyList[index]!;
      const spilled = values[index] as SpilledSession[];
      this.spilledSessionKeys.delete(key);
      this.spilledSessionKeysDirty.delete(key);
      this.spilledRows -= spilled.length;
      for (const [start, end, accumulator, revision, flags] of spilled) {
        const row = new WindowRow(key, start, end, accumulator);
        row.revision = revision;
        row.stored = (flags & SPILLED_STORED) !== 0;
        this.addSession(row);
        this.schedule(key, start, end, watermarkMs);
        if ((flags & SPILLED_DIRTY) !== 0) this.markDirty(row);
      }
    }
  }

  /** The spilled sessions changed since the last sync go to keyed state, and are marked stored in the scratch store. */
  private async syncSpilledSessions(): Promise<void> {
    const keys = [...this.spilledSessionKeysDirty];
    if (keys.length === 0) return;
    this.spilledSessionKeysDirty = new Set();
    const scratch = this.scratch!;
    const values = await scratch.getMany(keys.map((key) => encodeKey([key])));
    const rewritten: StateRow[] = [];
    for (let index = 0; index < keys.length; index++) {
      const key = keys[index]!;
      const spilled = values[index] as SpilledSession[];
      for (const session of spilled) {
        const [start, end, accumulator, revision, flags] = session;
        if ((flags & SPILLED_DIRTY) === 0) continue;
        const stored: StoredWindowRow = { accumulator, revision };
        this.state.putUncached(key, WINDOW_NAMESPACE, [start, end], stored);
        session[4] = SPILLED_STORED;
      }
      rewritten.push([encodeKey([key]), spilled]);
    }
    await scratch.write(rewritten);
  }

  /**
   * Purged windows leave the scratch store: the spilled rows keyed state holds are deleted from it
   * (rows in memory at the purge were deleted as any purged row), then the window's range goes.
   */
  private async clearPurged(): Promise<void> {
    const purged = this.purgedInScratch;
    if (purged.length === 0) return;
    this.purgedInScratch = [];
    const scratch = this.scratch!;
    for (const window of purged) {
      const prefix = encodeKey([window.start]);
      if (window.spilledStored > 0) {
        for await (const rows of scratch.scanBatches(prefix, prefixUpperBound(prefix), SCRATCH_READ_ROWS)) {
          for (const [rowKey, value] of rows) {
            if (((value as SpilledRow)[2] & SPILLED_STORED) === 0) continue;
            const key = decodeKey(rowKey)[1] as string;
            if (!window.rows.has(key)) this.state.deleteUncached(key, WINDOW_NAMESPACE, window.start);
          }
        }
      }
      await scratch.deleteRange(prefix, prefixUpperBound(prefix));
    }
  }

  private async spill(): Promise<void> {
    const scratch = await this.openScratch();
    await this.clearPurged();
    if (this.residentRows <= this.budgetRows) return;
    const target = Math.floor(this.budgetRows / 2);
    const order = [
      ...this.openAligned.filter((window) => window.fired),
      ...this.openAligned.filter((window) => !window.fired).reverse(),
    ];
    const rows: StateRow[] = [];
    for (const window of order) {
      if (this.residentRows <= target) break;
      if (window.rows.size === 0) continue;
      for (const row of window.rows.values()) {
        let flags = 0;
        if (row.stored) {
          flags |= SPILLED_STORED;
          window.spilledStored++;
        }
        if (row.dirty) {
          flags |= SPILLED_DIRTY;
          window.spilledDirty++;
        }
        row.spilled = true;
        rows.push([encodeKey([window.start, row.key]), [row.accumulator, row.revision, flags] satisfies SpilledRow]);
      }
      window.spilled += window.rows.size;
      this.spilledRows += window.rows.size;
      this.residentRows -= window.rows.size;
      window.rows.clear();
      window.inScratch = true;
    }
    this.dirty = this.dirty.filter((row) => !row.spilled);
    // If this write fails the rows are in neither place: the error fails the task, which restarts
    // from its last checkpoint (nothing is lost, as after a crash).
    await scratch.write(rows);
  }

  /** The scratch store, emptied on first use: rows of an operator this one replaced are not ours. */
  private async openScratch(): Promise<TaskStore> {
    if (this.scratch !== undefined) return this.scratch;
    const scratch = await this.state.scratch();
    await scratch.clear();
    this.scratch = scratch;
    return scratch;
  }

  /**
   * Before a batch: reads back the spilled rows its events update, and every spilled window that
   * fires at a watermark up to `watermarkBoundMs` (what the batch can reach), so the batch runs
   * from memory; for sessions, the spilled keys of the batch and those with a session due by then.
   * `keys` and `times` are the batch's events, `watermarkMs` the watermark now (a session read
   * back is scheduled from it, as at a restore). Undefined when nothing is spilled (the usual
   * case: no await).
   */
  readBackFor(
    keys: readonly string[],
    times: readonly number[],
    watermarkMs: number,
    watermarkBoundMs: number,
  ): Promise<void> | undefined {
    if (this.spilledRows === 0) return undefined;
    if (this.window.kind === 'session') return this.readBackSessions(keys, watermarkMs, watermarkBoundMs);
    return this.readBack(keys, times, watermarkBoundMs);
  }

  private async readBack(keys: readonly string[], times: readonly number[], watermarkBoundMs: number): Promise<void> {
    // A window fires whole, in key order: read back before the watermark can reach its end. A
    // fired one is not read back to be purged (purgeAligned).
    for (const window of this.openAligned) {
      if (window.spilled > 0 && !window.fired && fireTime(window) <= watermarkBoundMs)
        await this.readBackWindow(window);
    }
    const wanted: Array<[AlignedWindow, string]> = [];
    const seen = new Set<string>();
    for (let index = 0; index < keys.length; index++) {
      const key = keys[index]!;
      for (const start of this.alignedStartsOf(times[index]!)) {
        const window = this.aligned.get(start);
        if (window === undefined || window.spilled === 0 || window.rows.has(key)) continue;
        const identity = `${start}/${key}`;
        if (seen.has(identity)) continue;
        seen.add(identity);
        wanted.push([window, key]);
      }
    }
    if (wanted.length === 0) return;
    const values = await this.scratch!.getMany(wanted.map(([window, key]) => encodeKey([window.start, key])));
    for (let index = 0; index < wanted.length; index++) {
      const value = values[index];
      if (value === undefined) continue; // a key new to the window
      const [window, key] = wanted[index]!;
      this.readBackRow(window, key, value as SpilledRow);
    }
  }

  private async readBackWindow(window: AlignedWindow): Promise<void> {
    const prefix = encodeKey([window.start]);
    for await (const rows of this.scratch!.scanBatches(prefix, prefixUpperBound(prefix), SCRATCH_READ_ROWS)) {
      for (const [rowKey, value] of rows) {
        const key = decodeKey(rowKey)[1] as string;
        // In memory already: read back earlier, newer than this copy.
        if (!window.rows.has(key)) this.readBackRow(window, key, value as SpilledRow);
      }
    }
    assertLoaded(window, 'read back');
  }

  private readBackRow(window: AlignedWindow, key: string, [accumulator, revision, flags]: SpilledRow): void {
    const row = new WindowRow(key, window.start, window.end, accumulator);
    row.revision = revision;
    row.stored = (flags & SPILLED_STORED) !== 0;
    if (row.stored) window.spilledStored--;
    window.rows.set(key, row);
    window.spilled--;
    this.spilledRows--;
    this.residentRows++;
    if ((flags & SPILLED_DIRTY) !== 0) {
      window.spilledDirty--;
      this.markDirty(row);
    }
  }

  /** Starts of the tumbling or hopping windows an event at `timeMs` belongs to. */
  private alignedStartsOf(timeMs: number): number[] {
    if (!Number.isFinite(timeMs)) return [];
    switch (this.window.kind) {
      case 'tumbling':
        return [timeMs - floorMod(timeMs - this.window.offsetMs, this.window.sizeMs)];
      case 'hopping':
        return hoppingWindows(timeMs, this.window.sizeMs, this.window.slideMs, this.window.offsetMs).map(
          (window) => window.start,
        );
      case 'session':
        return [];
    }
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

  private reportLate(key: string, timeMs: number, value: unknown, windows: Window[], origin: RawMessage): void {
    this.out.late.push(lateRecordOf(key, timeMs, value, windows, this.partition, origin));
  }
}

/** Rows read from the scratch store at a time. */
const SCRATCH_READ_ROWS = 4_096;

function sessionIdentity(row: WindowRow): string {
  return `${row.key}/${row.start}/${row.end}`;
}

/** A window fires and is purged from memory: every spilled row of it must have been read back first. */
function assertLoaded(window: AlignedWindow, what: string): void {
  if (window.spilled > 0) {
    throw new Error(
      `window [${window.start}, ${window.end}) ${what} with ${window.spilled} of its rows still spilled (a bug: the batch did not read them back)`,
    );
  }
}
