// What an actor handler sees: its key, keyed state (value and map), event- and processing-time
// timers, the watermark, and emit. One context object per task is reused for every event; a
// handler that throws has its state writes, timers and emits undone before it is retried.
import type { KeyedState } from '../state/keyed-state.js';
import type { RawMessage } from './operator.js';
import { lateRecordOf, type LateRecord, type Output, type Window } from './types.js';
import { copyValue } from './value-copy.js';

import type { TimerDomain } from './timer-service.js';

export type { TimerDomain };

export interface TimerInfo {
  domain: TimerDomain;
  /** When it was due: an event time for event-time timers, a wall-clock time otherwise. */
  timeMs: number;
  tag: string;
}

export interface ValueState<T = unknown> {
  get(): T | undefined;
  set(value: T): void;
  clear(): void;
}

export interface MapState<V = unknown> {
  get(mapKey: string): V | undefined;
  set(mapKey: string, value: V): void;
  delete(mapKey: string): void;
  entries(): Array<[string, V]>;
}

export interface ActorContext {
  readonly key: string;
  /** Event time of the event being handled (or the timer's time). */
  readonly eventTimeMs: number;
  /** The task's watermark before this event. */
  readonly watermarkMs: number;
  readonly partition: number;
  /** The source (`sources` name, or the topic of `source`) of the event being handled; undefined in onTimer. */
  readonly source: string | undefined;
  /** Processing time (the injected clock). */
  now(): number;
  value<T = unknown>(name: string): ValueState<T>;
  map<V = unknown>(name: string): MapState<V>;
  /** Calls onTimer once the watermark reaches timeMs (Flink: fires when wm >= timestamp). */
  setEventTimeTimer(timeMs: number, tag?: string): void;
  /** Calls onTimer once the clock reaches timeMs. */
  setProcessingTimeTimer(timeMs: number, tag?: string): void;
  deleteTimer(domain: TimerDomain, timeMs: number, tag?: string): void;
  /**
   * Upserts the row `row` (default: the key's own row) of the serving table. `time` is the event
   * time the output carries to a topic sink (default: the event's or the timer's time).
   */
  emit(value: unknown, options?: EmitOptions): void;
  /**
   * Sends the event being handled to the job's late-data subject, counted like a window's late
   * event (README "Semantics"): for an event the handler sets aside because its time has passed,
   * e.g. a join's window already fired. `windows` names what it missed. Only in onEvent.
   */
  late(windows?: Window[]): void;
}

export interface EmitOptions {
  row?: string;
  /** Event time of the output in ms since the epoch (a finite number). */
  time?: number;
}

export const TIMER_NAMESPACE = 't';
const VALUE_PREFIX = 'v:';
const MAP_PREFIX = 'm:';

interface UndoEntry {
  namespace: string;
  subKey: string;
  previous: unknown;
}

export interface TimerRequest {
  key: string;
  domain: TimerDomain;
  timeMs: number;
  tag: string;
  cancel: boolean;
}

/** The reusable context; the task sets the current key and event before each handler call. */
export class TaskActorContext implements ActorContext {
  key = '';
  source: string | undefined = undefined;
  eventTimeMs = 0;
  watermarkMs = -Infinity;
  /**
   * Output revisions: one counter per task, incremented by every emit and checkpointed with the
   * task, so revisions grow strictly per output id (a key lives in one task) with no capacity
   * limit, and a replay from a checkpoint reproduces the same revisions.
   */
  private emits = 0;
  private readonly undo: UndoEntry[] = [];
  readonly timerRequests: TimerRequest[] = [];
  private readonly values = new Map<string, ValueState>();
  private readonly maps = new Map<string, MapState>();
  private readonly idPrefix: string;
  private outputsMark = 0;
  private emitsMark = 0;
  private lateMark = 0;
  /** The event being handled, what late() sends; its origin undefined in onTimer. */
  private eventValue: unknown = undefined;
  private eventOrigin: RawMessage | undefined = undefined;

  constructor(
    private readonly state: KeyedState,
    private readonly job: { name: string; version: string },
    readonly partition: number,
    private readonly outputs: Output[],
    readonly now: () => number,
    private readonly lateRecords: LateRecord[] = [],
  ) {
    this.idPrefix = `${job.name}/${job.version}/`;
  }

  /** The output revision counter, for a checkpoint. */
  emitCounter(): number {
    return this.emits;
  }

  restoreEmitCounter(emits: number): void {
    this.emits = emits;
  }

  /** Starts one handler attempt for a key; `value` and `origin` are the event's (none for a timer). */
  begin(
    key: string,
    eventTimeMs: number,
    watermarkMs: number,
    source?: string,
    value?: unknown,
    origin?: RawMessage,
  ): void {
    this.key = key;
    this.source = source;
    this.eventValue = value;
    this.eventOrigin = origin;
    this.eventTimeMs = eventTimeMs;
    this.watermarkMs = watermarkMs;
    // Setting length is a runtime call even on an empty array, and this runs for every event.
    if (this.undo.length > 0) this.undo.length = 0;
    if (this.timerRequests.length > 0) this.timerRequests.length = 0;
    this.outputsMark = this.outputs.length;
    this.emitsMark = this.emits;
    this.lateMark = this.lateRecords.length;
  }

  /** Undoes every write, timer and emit of the attempt that just threw. */
  rollback(): void {
    for (let index = this.undo.length - 1; index >= 0; index--) {
      const entry = this.undo[index]!;
      if (entry.previous === undefined) this.state.delete(this.key, entry.namespace, entry.subKey);
      else this.state.put(this.key, entry.namespace, entry.subKey, entry.previous);
    }
    this.undo.length = 0;
    this.timerRequests.length = 0;
    this.outputs.length = this.outputsMark;
    this.emits = this.emitsMark;
    this.lateRecords.length = this.lateMark;
  }

  // Value semantics: reads hand out copies, so the stored value is only ever replaced by write(),
  // never mutated in place, and the undo log's reference to it stays the value as it was.
  private read(namespace: string, subKey: string): unknown {
    return copyValue(this.state.get(this.key, namespace, subKey));
  }

  private write(namespace: string, subKey: string, value: unknown): void {
    this.undo.push({ namespace, subKey, previous: this.state.get(this.key, namespace, subKey) });
    if (value === undefined) this.state.delete(this.key, namespace, subKey);
    else this.state.put(this.key, namespace, subKey, value);
  }

  value<T = unknown>(name: string): ValueState<T> {
    let handle = this.values.get(name);
    if (!handle) {
      const namespace = VALUE_PREFIX + name;
      handle = {
        get: () => this.read(namespace, ''),
        set: (value: unknown) => this.write(namespace, '', value),
        clear: () => this.write(namespace, '', undefined),
      };
      this.values.set(name, handle);
    }
    return handle as ValueState<T>;
  }

  map<V = unknown>(name: string): MapState<V> {
    let handle = this.maps.get(name);
    if (!handle) {
      const namespace = MAP_PREFIX + name;
      handle = {
        get: (mapKey: string) => this.read(namespace, mapKey),
        set: (mapKey: string, value: unknown) => this.write(namespace, mapKey, value),
        delete: (mapKey: string) => this.write(namespace, mapKey, undefined),
        entries: () =>
          [...this.state.entries(this.key, namespace)].map(([subKey, value]) => [String(subKey), copyValue(value)]),
      };
      this.maps.set(name, handle);
    }
    return handle as MapState<V>;
  }

  setEventTimeTimer(timeMs: number, tag = ''): void {
    this.timerRequests.push({ key: this.key, domain: 'event-time', timeMs, tag, cancel: false });
  }

  setProcessingTimeTimer(timeMs: number, tag = ''): void {
    this.timerRequests.push({ key: this.key, domain: 'processing-time', timeMs, tag, cancel: false });
  }

  deleteTimer(domain: TimerDomain, timeMs: number, tag = ''): void {
    this.timerRequests.push({ key: this.key, domain, timeMs, tag, cancel: true });
  }

  emit(value: unknown, options?: EmitOptions): void {
    const row = options?.row;
    const time = options?.time ?? this.eventTimeMs;
    // Thrown inside the handler: it is retried, then dead-lettered, like any handler error.
    if (typeof time !== 'number' || !Number.isFinite(time))
      throw new TypeError(`emit: time must be a finite number of ms, found ${String(time)}`);
    this.outputs.push({
      id: this.idPrefix + actorOutputName(this.key, row),
      job: this.job.name,
      version: this.job.version,
      key: this.key,
      ...(row === undefined ? {} : { row }),
      // A snapshot: the handler may go on mutating the object it emitted.
      value: copyValue(value),
      revision: ++this.emits,
      kind: 'update',
      time,
    });
  }

  late(windows: Window[] = []): void {
    const origin = this.eventOrigin;
    if (origin === undefined)
      throw new Error('ctx.late() sends the event being handled: call it in onEvent, not onTimer');
    this.lateRecords.push(lateRecordOf(this.key, this.eventTimeMs, this.eventValue, windows, this.partition, origin));
  }
}

/**
 * The part of an actor output id after `<job>/<version>/`: the key, length-prefixed, then `/<row>`
 * for a named row. The prefix says where the key ends, so key `a/b` and key `a` row `b` never meet.
 */
export function actorOutputName(key: string, row: string | undefined): string {
  return row === undefined ? `${key.length}:${key}` : `${key.length}:${key}/${row}`;
}
