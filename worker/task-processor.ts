// The processing core of one task (job, version, partition), shared by the streaming worker and
// `kappa run`: it takes a batch of raw messages, decodes them, activates their keys' state in
// one batch, then runs every event synchronously — key, time, lateness, windows or actor,
// watermark advance, due windows and timers — collecting outputs, late records and dead letters.
// No per-event await: the only awaits are per batch.
import TinyQueue from 'tinyqueue';
import { createHash } from 'node:crypto';
import { decodeEvent, eventTimeOf, keyProblem, ProtocolError } from '../protocol/index.js';
import type { KeyedState, SubKey } from '../state/keyed-state.js';
import { TaskActorContext, TIMER_NAMESPACE, type TimerDomain, type TimerRequest } from './actor-context.js';
import type { Clock } from './clock.js';
import type { JobSpec } from './job.js';
import type { DeadLetter, DeadLetterReason, LateRecord, Output } from './types.js';
import { idleWatermark, Watermark, type WatermarkSnapshot } from './watermark.js';
import { AggregateFunctionError, WINDOW_NAMESPACE, WindowOperator } from './window/operator.js';
import type { Window } from './types.js';

export interface RawMessage {
  data: Uint8Array;
  /** Stream sequence (the partition's offset). */
  sequence: number;
  /**
   * When the log stored the message (JetStream's timestamp), in ms: the reference of the
   * far-future guard, so the decision depends only on the log, never on when it is read.
   */
  logTimeMs?: number;
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
  /** Sequence of the event being handled: timers and windows it fires are named after it. */
  private sequence = 0;

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
      this.windows = new WindowOperator(job, state, this.result.outputs, this.result.late, partition, (key, window, error, attempts) =>
        this.deadLetterWindow(key, window, error, attempts),
      );
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
    if (processor.actor && engine.actor) processor.actor.restoreEmitCounter(emitCounterOf(engine.actor));
    return processor;
  }

  /** What a checkpoint must hold besides keyed state to resume this processor exactly (JSON-safe). */
  snapshot(): EngineSnapshot {
    const watermark = this.watermark.snapshot();
    return {
      watermark: { currentMs: finiteOrNull(watermark.currentMs), maxEventTimeMs: finiteOrNull(watermark.maxEventTimeMs), atLastEventMs: finiteOrNull(watermark.atLastEventMs) },
      ...(this.actor ? { actor: { emits: this.actor.emitCounter() } } : {}),
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
      this.sequence = sequence;
      const handled = this.windows ? this.runWindows(key, timeMs, this.values[index], watermarkBefore, sequence, messages) : this.runActor(key, timeMs, this.values[index], watermarkBefore, sequence, messages);
      // A dead-lettered event still has a valid time: it advances the watermark like any other.
      if (handled) this.result.processed++;
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

  /**
   * End of input (`kappa run`), as Flink's and Beam's batch modes end: event time and processing
   * time both jump to the end of time, so every window and every pending timer of either kind
   * fires (an actor that clears an alert after 5 quiet minutes clears it).
   */
  endOfInput(): BatchResult {
    this.resetResult();
    this.watermark.advanceTo(Infinity);
    this.onWatermark(Infinity);
    this.fireDue(this.processingTimers, Infinity, Infinity);
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

  /**
   * Decodes a batch into the reused arrays; bad messages become dead letters (README "Bad input").
   * Returns the event count.
   */
  private decode(messages: readonly RawMessage[]): number {
    let count = 0;
    const maxFutureSkewMs = this.job.maxFutureSkewMs;
    for (const message of messages) {
      let key: unknown;
      let time: unknown;
      let value: unknown;
      try {
        const event = decodeEvent(message.data);
        value = event.value;
        key = this.job.key ? this.job.key(value) : event.key;
        if (typeof key === 'number' && Number.isFinite(key)) key = String(key);
        if (typeof key !== 'string' || key.length === 0) {
          this.deadLetter('no-key', `event has no usable key: found ${describeValue(key)}`, message);
          continue;
        }
        const tooLong = keyProblem(key);
        if (tooLong) {
          this.deadLetter('key-too-long', `event key is not usable: ${tooLong}`, message);
          continue;
        }
        time = this.job.time(value);
      } catch (error) {
        const reason: DeadLetterReason = error instanceof ProtocolError ? 'undecodable' : key === undefined ? 'no-key' : 'no-time';
        const what = reason === 'no-key' ? 'key' : reason === 'no-time' ? 'time' : undefined;
        this.deadLetter(reason, what ? `the job's ${what} function threw: ${(error as Error).message}` : (error as Error).message, message);
        continue;
      }
      const timeMs = eventTimeOf(time);
      if (typeof timeMs === 'string') {
        this.deadLetter('no-time', `event has no usable time: the job's time function returned a value that ${timeMs}`, message);
        continue;
      }
      // The far-future guard (README "Bad input"): an event claiming a time well after the log
      // received it would drag the watermark ahead and make the rest of the partition late. The
      // log's timestamp is part of the log, so a replay decides the same.
      if (maxFutureSkewMs !== undefined && message.logTimeMs !== undefined && timeMs > message.logTimeMs + maxFutureSkewMs) {
        this.deadLetter(
          'future-time',
          `event time ${describeTime(timeMs)} is ${describeDuration(timeMs - message.logTimeMs)} after the log received it (${describeTime(message.logTimeMs)}); watermark.maxFutureSkew is ${describeDuration(maxFutureSkewMs)}`,
          message,
        );
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

  private deadLetter(reason: DeadLetterReason, error: string, message: RawMessage, idSuffix = ''): void {
    this.result.deadLetters.push({ id: `${this.partition}/${message.sequence}${idSuffix}`, reason, error, partition: this.partition, sequence: message.sequence, data: message.data });
  }

  /** A window whose result function kept throwing as it fired: the window is dead-lettered, not emitted. */
  private deadLetterWindow(key: string, window: Window, error: Error, attempts: number): void {
    const data = new TextEncoder().encode(JSON.stringify({ key, window }));
    const id = `/window/${digest([key, window.start, window.end])}`;
    this.deadLetter('aggregate-failed', `window [${window.start}, ${window.end}) of key ${JSON.stringify(key.slice(0, 80))} not emitted: ${error.message} (${attempts} attempts)`, { data, sequence: this.sequence }, id);
  }

  /** Runs an event through the windows, retrying an aggregate function that throws; false when it was dead-lettered. */
  private runWindows(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number, messages: readonly RawMessage[]): boolean {
    for (let attempt = 1; ; attempt++) {
      try {
        this.windows!.onEvent(key, timeMs, value, watermarkMs, sequence);
        return true;
      } catch (error) {
        if (!(error instanceof AggregateFunctionError)) throw error;
        if (attempt > this.job.handlerRetries) {
          this.deadLetter('aggregate-failed', `${error.message} (${attempt} attempts)`, messageAt(messages, sequence));
          return false;
        }
      }
    }
  }

  /** Runs an actor's onEvent, retried with its changes undone; false when it was dead-lettered. */
  private runActor(key: string, timeMs: number, value: unknown, watermarkMs: number, sequence: number, messages: readonly RawMessage[]): boolean {
    const context = this.actor!;
    const handler = this.job.actor!;
    for (let attempt = 0; ; attempt++) {
      context.begin(key, timeMs, watermarkMs);
      try {
        handler.onEvent(context, value);
        this.applyTimerRequests(context.timerRequests);
        return true;
      } catch (error) {
        context.rollback();
        if (attempt >= this.job.handlerRetries) {
          this.deadLetter('handler-failed', `onEvent threw after ${attempt + 1} attempts: ${(error as Error).message}`, messageAt(messages, sequence));
          return false;
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
      context.begin(timer.key, timer.timeMs, watermarkMs);
      try {
        onTimer(context, info);
        this.applyTimerRequests(context.timerRequests);
        return;
      } catch (error) {
        context.rollback();
        if (attempt >= this.job.handlerRetries) {
          const data = new TextEncoder().encode(JSON.stringify({ key: timer.key, timer: info }));
          // Several timers may fail while one event advances the watermark: each letter is named by its timer.
          const id = `/timer/${digest([timer.key, timer.domain, timer.timeMs, timer.tag])}`;
          this.deadLetter('handler-failed', `onTimer threw after ${attempt + 1} attempts: ${(error as Error).message}`, { data, sequence: this.sequence }, id);
          return;
        }
      }
    }
  }
}

/** The engine's part of a checkpoint; non-finite watermarks (before the first event) are null. */
export interface EngineSnapshot {
  watermark: { currentMs: number | null; maxEventTimeMs: number | null; atLastEventMs: number | null };
  /**
   * The actor's output revision counter, so revisions continue exactly. Checkpoints before the
   * counter was per task hold { sequence, emits } (revision = sequence × 1024 + emits).
   */
  actor?: { emits: number } | { sequence: number; emits: number };
  [field: string]: unknown;
}

function finiteOrNull(ms: number): number | null {
  return Number.isFinite(ms) ? ms : null;
}

function watermarkFromJson(json: EngineSnapshot['watermark']): WatermarkSnapshot {
  return { currentMs: json.currentMs ?? -Infinity, maxEventTimeMs: json.maxEventTimeMs ?? -Infinity, atLastEventMs: json.atLastEventMs ?? -Infinity };
}

function emitCounterOf(counter: NonNullable<EngineSnapshot['actor']>): number {
  // The last revision an old-format checkpoint issued: new revisions continue above it.
  return 'sequence' in counter ? counter.sequence * 1024 + counter.emits : counter.emits;
}

function messageAt(messages: readonly RawMessage[], sequence: number): RawMessage {
  return messages.find((candidate) => candidate.sequence === sequence)!;
}

/** A short, deterministic name for a dead letter's origin (keys may hold any character). */
function digest(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 22);
}

function describeTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms` : date.toISOString();
}

function describeDuration(ms: number): string {
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)} days`;
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 1000).toFixed(1)} s`;
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
