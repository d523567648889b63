// The processing core of one task (job, version, partition), shared by the streaming worker and
// `kappa run`: it takes a batch of raw messages, decodes them, activates their keys' state in
// one batch, then runs every event synchronously — key, time, lateness, windows or actor,
// watermark advance, due windows and timers — collecting outputs, late records and dead letters.
// No per-event await: the only awaits are per batch.
import TinyQueue from 'tinyqueue';
import { decodeEvent, ProtocolError } from '../protocol/index.js';
import type { KeyedState, SubKey } from '../state/keyed-state.js';
import { TaskActorContext, TIMER_NAMESPACE, type TimerDomain, type TimerRequest } from './actor-context.js';
import type { Clock } from './clock.js';
import type { JobSpec } from './job.js';
import type { DeadLetter, DeadLetterReason, LateRecord, Output } from './types.js';
import { idleWatermark, Watermark, type WatermarkSnapshot } from './watermark.js';
import { WINDOW_NAMESPACE, WindowOperator } from './window/operator.js';

export interface RawMessage {
  data: Uint8Array;
  /** Stream sequence (the partition's offset). */
  sequence: number;
}

/** Everything one batch produced; the arrays are reused, so consume them before the next batch. */
export interface BatchResult {
  outputs: Output[];
  late: LateRecord[];
  deadLetters: DeadLetter[];
  /** Events handled (dead letters excluded). */
  processed: number;
  /** Events that updated an already-fired window within the allowed lateness (re-emitting it). */
  lateUpdates: number;
  lastSequence: number;
  watermarkMs: number;
}

interface ActorTimer {
  timeMs: number;
  key: string;
  domain: TimerDomain;
  tag: string;
}

const byTime = (a: ActorTimer, b: ActorTimer) => a.timeMs - b.timeMs;

export class TaskProcessor {
  readonly watermark: Watermark;
  private readonly result: BatchResult = { outputs: [], late: [], deadLetters: [], processed: 0, lateUpdates: 0, lastSequence: 0, watermarkMs: -Infinity };
  private readonly windows: WindowOperator | undefined;
  private readonly actor: TaskActorContext | undefined;
  private readonly eventTimers = new TinyQueue<ActorTimer>([], byTime);
  private readonly processingTimers = new TinyQueue<ActorTimer>([], byTime);
  /** Pending timers per key, so a key with timers stays active. */
  private readonly timersPerKey = new Map<string, number>();
  // Decoded batch, reused between batches (no per-batch array growth after warm-up).
  private keys: string[] = [];
  private times: number[] = [];
  private values: unknown[] = [];
  private sequences: number[] = [];
  private lastEventAtMs: number;

  constructor(
    private readonly job: JobSpec,
    readonly partition: number,
    private readonly state: KeyedState,
    private readonly clock: Clock,
    restored?: EngineSnapshot,
  ) {
    this.watermark = new Watermark(job.maxOutOfOrdernessMs, restored && watermarkFromJson(restored.watermark));
    this.lastEventAtMs = clock.now();
    if (job.window) {
      this.windows = new WindowOperator(job, state, this.result.outputs, this.result.late, partition);
    } else {
      this.actor = new TaskActorContext(state, job, partition, this.result.outputs, () => clock.now());
    }
  }

  /**
   * A processor for a task restored from a checkpoint: `state` holds the checkpoint's rows and
   * `engine` what snapshot() returned. What the engine keeps only in memory (window fire and
   * purge queues, timer queues, which keys stay resident) is rebuilt from the stored rows.
   */
  static async restore(job: JobSpec, partition: number, state: KeyedState, clock: Clock, engine: EngineSnapshot): Promise<TaskProcessor> {
    const processor = new TaskProcessor(job, partition, state, clock, engine);
    const watermarkMs = processor.watermark.current;
    const windows: Array<[string, SubKey]> = [];
    const timers: ActorTimer[] = [];
    await state.restoreResident(new Set([WINDOW_NAMESPACE, TIMER_NAMESPACE]), (key, namespace, subKey) => {
      if (namespace === WINDOW_NAMESPACE) {
        windows.push([key, subKey]);
      } else {
        const [domain, timeMs, tag] = subKey as [TimerDomain, number, string];
        timers.push({ key, domain, timeMs, tag });
      }
    });
    for (const [key, subKey] of windows) processor.windows?.restoreWindow(key, subKey, watermarkMs);
    for (const timer of timers) {
      (timer.domain === 'event-time' ? processor.eventTimers : processor.processingTimers).push(timer);
      processor.countTimer(timer.key, 1);
    }
    if (processor.actor && engine.actor) processor.actor.restoreEmitCounter(engine.actor.sequence, engine.actor.emits);
    return processor;
  }

  /** What a checkpoint must hold besides keyed state to resume this processor exactly (JSON-safe). */
  snapshot(): EngineSnapshot {
    const watermark = this.watermark.snapshot();
    return {
      watermark: { currentMs: finiteOrNull(watermark.currentMs), maxEventTimeMs: finiteOrNull(watermark.maxEventTimeMs), atLastEventMs: finiteOrNull(watermark.atLastEventMs) },
      ...(this.actor ? { actor: this.actor.emitCounter() } : {}),
    };
  }

  /** Keys that must stay in memory (open windows or pending timers). */
  isPinned = (key: string): boolean => (this.windows?.isPinned(key) ?? false) || this.timersPerKey.has(key);

  async processBatch(messages: readonly RawMessage[]): Promise<BatchResult> {
    this.resetResult();
    const count = this.decode(messages);
    if (count > 0) await this.state.activate(new Set(this.keys.slice(0, count)));
    for (let index = 0; index < count; index++) {
      const key = this.keys[index]!;
      const timeMs = this.times[index]!;
      const sequence = this.sequences[index]!;
      const watermarkBefore = this.watermark.current;
      if (this.windows) this.windows.onEvent(key, timeMs, this.values[index], watermarkBefore, sequence);
      else this.runActor(key, timeMs, this.values[index], watermarkBefore, sequence, messages);
      this.result.processed++;
      this.watermark.observe(timeMs);
      if (this.watermark.current > watermarkBefore) this.onWatermark(this.watermark.current);
    }
    if (messages.length > 0) {
      this.result.lastSequence = messages[messages.length - 1]!.sequence;
      this.lastEventAtMs = this.clock.now();
    }
    this.fireProcessingTimers();
    this.result.watermarkMs = this.watermark.current;
    if (this.windows) {
      this.result.lateUpdates = this.windows.lateUpdates;
      this.windows.lateUpdates = 0;
    }
    return this.result;
  }

  /**
   * Called when no events arrive: fires due processing-time timers, and with an idle timeout,
   * advances the watermark by processing time (then results depend on wall-clock time).
   */
  onIdle(): BatchResult {
    this.resetResult();
    const idleTimeoutMs = this.job.idleTimeoutMs;
    if (idleTimeoutMs !== undefined && this.watermark.current > -Infinity) {
      const before = this.watermark.current;
      this.watermark.advanceTo(idleWatermark(this.watermark.atLastEvent, this.lastEventAtMs, this.clock.now(), idleTimeoutMs));
      if (this.watermark.current > before) this.onWatermark(this.watermark.current);
    }
    this.fireProcessingTimers();
    this.result.watermarkMs = this.watermark.current;
    return this.result;
  }

  /** End of input (`kappa run`): the watermark goes to the end of time and every window fires. */
  endOfInput(): BatchResult {
    this.resetResult();
    this.watermark.advanceTo(Infinity);
    this.onWatermark(Infinity);
    this.result.watermarkMs = this.watermark.current;
    return this.result;
  }

  private resetResult(): void {
    this.result.outputs.length = 0;
    this.result.late.length = 0;
    this.result.deadLetters.length = 0;
    this.result.processed = 0;
    this.result.lateUpdates = 0;
  }

  /** Decodes a batch into the reused arrays; bad messages become dead letters. Returns the event count. */
  private decode(messages: readonly RawMessage[]): number {
    let count = 0;
    for (const message of messages) {
      let key: unknown;
      let time: unknown;
      let value: unknown;
      try {
        const event = decodeEvent(message.data);
        value = event.value;
        key = this.job.key ? this.job.key(value) : event.key;
        if (typeof key === 'number') key = String(key);
        if (typeof key !== 'string' || key.length === 0) {
          this.deadLetter('no-key', `event has no usable key: found ${describeValue(key)}`, message);
          continue;
        }
        time = this.job.time(value);
      } catch (error) {
        const reason: DeadLetterReason = error instanceof ProtocolError ? 'undecodable' : key === undefined ? 'no-key' : 'no-time';
        this.deadLetter(reason, (error as Error).message, message);
        continue;
      }
      const timeMs = toEventTime(time);
      if (timeMs === undefined) {
        this.deadLetter('no-time', `event has no usable time: found ${describeValue(time)}`, message);
        continue;
      }
      this.keys[count] = key as string;
      this.times[count] = timeMs;
      this.values[count] = value;
      this.sequences[count] = message.sequence;
      count++;
    }
    return count;
  }

  private deadLetter(reason: DeadLetterReason, error: string, message: RawMessage): void {
    this.result.deadLetters.push({ reason, error, partition: this.partition, sequence: message.sequence, data: message.data });
  }

  private runActor(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number, messages: readonly RawMessage[]): void {
    const context = this.actor!;
    const handler = this.job.actor!;
    for (let attempt = 0; ; attempt++) {
      context.begin(key, timeMs, watermarkMs, sequence);
      try {
        handler.onEvent(context, value);
        this.applyTimerRequests(context.timerRequests);
        return;
      } catch (error) {
        context.rollback();
        if (attempt >= this.job.handlerRetries) {
          const message = messages.find((candidate) => candidate.sequence === sequence)!;
          this.deadLetter('handler-failed', `onEvent threw after ${attempt + 1} attempts: ${(error as Error).message}`, message);
          return;
        }
      }
    }
  }

  private applyTimerRequests(requests: readonly TimerRequest[]): void {
    for (const request of requests) {
      const subKey = [request.domain, request.timeMs, request.tag];
      const exists = this.state.get(request.key, TIMER_NAMESPACE, subKey) !== undefined;
      if (request.cancel) {
        if (exists) {
          this.state.delete(request.key, TIMER_NAMESPACE, subKey);
          this.countTimer(request.key, -1);
        }
      } else if (!exists) {
        this.state.put(request.key, TIMER_NAMESPACE, subKey, 1);
        this.countTimer(request.key, 1);
        const queue = request.domain === 'event-time' ? this.eventTimers : this.processingTimers;
        queue.push({ timeMs: request.timeMs, key: request.key, domain: request.domain, tag: request.tag });
      }
    }
  }

  private countTimer(key: string, delta: number): void {
    const count = (this.timersPerKey.get(key) ?? 0) + delta;
    if (count > 0) this.timersPerKey.set(key, count);
    else this.timersPerKey.delete(key);
  }

  private onWatermark(watermarkMs: number): void {
    this.windows?.onWatermark(watermarkMs);
    // Flink: an event-time timer fires when the watermark reaches its timestamp.
    this.fireDue(this.eventTimers, watermarkMs, watermarkMs);
  }

  private fireProcessingTimers(): void {
    const now = this.clock.now();
    const next = this.processingTimers.peek();
    if (next && next.timeMs <= now) this.fireDue(this.processingTimers, now, this.watermark.current);
  }

  private fireDue(queue: TinyQueue<ActorTimer>, untilMs: number, watermarkMs: number): void {
    let timer = queue.peek();
    while (timer && timer.timeMs <= untilMs) {
      queue.pop();
      const subKey = [timer.domain, timer.timeMs, timer.tag];
      // A deleted timer leaves its queue entry behind; its state row tells whether it is live.
      if (this.state.get(timer.key, TIMER_NAMESPACE, subKey) !== undefined) {
        this.state.delete(timer.key, TIMER_NAMESPACE, subKey);
        this.countTimer(timer.key, -1);
        this.runTimer(timer, watermarkMs);
      }
      timer = queue.peek();
    }
  }

  private runTimer(timer: ActorTimer, watermarkMs: number): void {
    const onTimer = this.job.actor?.onTimer;
    if (!onTimer) return;
    const context = this.actor!;
    const info = { domain: timer.domain, timeMs: timer.timeMs, tag: timer.tag };
    for (let attempt = 0; ; attempt++) {
      context.begin(timer.key, timer.timeMs, watermarkMs, context.sequence);
      try {
        onTimer(context, info);
        this.applyTimerRequests(context.timerRequests);
        return;
      } catch (error) {
        context.rollback();
        if (attempt >= this.job.handlerRetries) {
          const data = new TextEncoder().encode(JSON.stringify({ key: timer.key, timer: info }));
          this.deadLetter('handler-failed', `onTimer threw after ${attempt + 1} attempts: ${(error as Error).message}`, { data, sequence: context.sequence });
          return;
        }
      }
    }
  }
}

/** The engine's part of a checkpoint; non-finite watermarks (before the first event) are null. */
export interface EngineSnapshot {
  watermark: { currentMs: number | null; maxEventTimeMs: number | null; atLastEventMs: number | null };
  /** The actor's output revision counter (sequence and emits within it), so revisions continue exactly. */
  actor?: { sequence: number; emits: number };
  [field: string]: unknown;
}

function finiteOrNull(ms: number): number | null {
  return Number.isFinite(ms) ? ms : null;
}

function watermarkFromJson(json: EngineSnapshot['watermark']): WatermarkSnapshot {
  return { currentMs: json.currentMs ?? -Infinity, maxEventTimeMs: json.maxEventTimeMs ?? -Infinity, atLastEventMs: json.atLastEventMs ?? -Infinity };
}

/** Event time from what a job's `time` function returned: ms, a Date, or an ISO string. */
function toEventTime(value: unknown): number | undefined {
  const timeMs = typeof value === 'number' ? value : value instanceof Date ? value.getTime() : typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isFinite(timeMs) ? timeMs : undefined;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    return JSON.stringify(value)?.slice(0, 80) ?? String(value);
  } catch {
    return typeof value;
  }
}
