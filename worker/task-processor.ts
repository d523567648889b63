// The processing core of one task (job, version, partition), shared by the streaming worker and
// `kappa run`: it takes a batch of raw messages, decodes them, activates their keys' state in
// one batch, then runs every event synchronously through the job's operator (windows or actor),
// advancing the watermark after each event and letting the operator fire what is due —
// collecting outputs, late records and dead letters. No per-event await: the only awaits are per batch.
import { decodeEvent, eventTimeOf, keyProblem, ProtocolError } from '../protocol/index.js';
import type { KeyedState } from '../state/keyed-state.js';
import { ActorOperator } from './actor-operator.js';
import type { Clock } from '../protocol/clock.js';
import type { JobSpec } from './job.js';
import type { Operator, OperatorOutput, RawMessage } from './operator.js';
import type { DeadLetter, DeadLetterReason, LateRecord, Output } from './types.js';
import { idleWatermark, Watermark, type WatermarkSnapshot } from './watermark.js';
import { WindowOperator } from './window/operator.js';

export type { RawMessage } from './operator.js';

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

export class TaskProcessor implements OperatorOutput {
  readonly watermark: Watermark;
  private readonly result: BatchResult = {
    outputs: [],
    late: [],
    deadLetters: [],
    processed: 0,
    lateUpdates: 0,
    lastSequence: 0,
    watermarkMs: -Infinity,
  };
  private readonly operator: Operator;
  // Decoded batch, reused between batches (no per-batch array growth after warm-up).
  private keys: string[] = [];
  private times: number[] = [];
  private values: unknown[] = [];
  private messages: RawMessage[] = [];
  private lastEventAtMs: number;
  /** Sequence of the event being handled: timers and windows it fires are named after it. */
  sequence = 0;

  constructor(
    private readonly job: JobSpec,
    readonly partition: number,
    private readonly state: KeyedState,
    private readonly clock: Clock,
    restored?: EngineSnapshot,
  ) {
    this.watermark = new Watermark(job.maxOutOfOrdernessMs, restored && watermarkFromJson(restored.watermark));
    this.lastEventAtMs = clock.now();
    if (job.kind === 'window') {
      this.operator = new WindowOperator(job, state, this, partition);
    } else {
      const actor = new ActorOperator(job, state, this, partition, clock);
      if (restored?.actor) actor.restoreEmitCounter(emitCounterOf(restored.actor));
      this.operator = actor;
    }
  }

  get outputs(): Output[] {
    return this.result.outputs;
  }

  get late(): LateRecord[] {
    return this.result.late;
  }

  /**
   * A processor for a task restored from a checkpoint: `state` holds the checkpoint's rows and
   * `engine` what snapshot() returned. What the operator keeps only in memory (its timers, which
   * keys stay resident) is rebuilt from the stored rows in one sequential scan.
   */
  static async restore(
    job: JobSpec,
    partition: number,
    state: KeyedState,
    clock: Clock,
    engine: EngineSnapshot,
  ): Promise<TaskProcessor> {
    const processor = new TaskProcessor(job, partition, state, clock, engine);
    const watermarkMs = processor.watermark.current;
    const operator = processor.operator;
    await state.restoreResident(new Set(operator.residentNamespaces), (key, namespace, subKey) =>
      operator.restoreRow(key, namespace, subKey, watermarkMs),
    );
    return processor;
  }

  /** What a checkpoint must hold besides keyed state to resume this processor exactly (JSON-safe). */
  snapshot(): EngineSnapshot {
    const watermark = this.watermark.snapshot();
    return {
      watermark: {
        currentMs: finiteOrNull(watermark.currentMs),
        maxEventTimeMs: finiteOrNull(watermark.maxEventTimeMs),
        atLastEventMs: finiteOrNull(watermark.atLastEventMs),
      },
      ...(this.operator instanceof ActorOperator ? { actor: { emits: this.operator.emitCounter } } : {}),
    };
  }

  /** Keys that must stay in memory (open windows or pending timers). */
  isPinned = (key: string): boolean => this.operator.isPinned(key);

  async processBatch(messages: readonly RawMessage[]): Promise<BatchResult> {
    this.resetResult();
    const count = this.decode(messages);
    if (count > 0) await this.state.activate(new Set(this.keys.slice(0, count)));
    const operator = this.operator;
    for (let index = 0; index < count; index++) {
      const timeMs = this.times[index]!;
      const message = this.messages[index]!;
      const watermarkBefore = this.watermark.current;
      this.sequence = message.sequence;
      // A dead-lettered event still has a valid time: it advances the watermark like any other.
      if (operator.onEvent(this.keys[index]!, timeMs, this.values[index], watermarkBefore, message))
        this.result.processed++;
      this.watermark.observe(timeMs);
      if (this.watermark.current > watermarkBefore) operator.onWatermark(this.watermark.current);
    }
    if (messages.length > 0) {
      this.result.lastSequence = messages[messages.length - 1]!.sequence;
      this.lastEventAtMs = this.clock.now();
    }
    operator.onProcessingTime(this.clock.now(), this.watermark.current);
    return this.finishResult();
  }

  /**
   * Called when no events arrive: fires due processing-time timers, and with an idle timeout,
   * advances the watermark by processing time (then results depend on wall-clock time).
   */
  onIdle(): BatchResult {
    this.resetResult();
    const idleTimeoutMs = this.job.idleTimeoutMs;
    if (idleTimeoutMs !== undefined && this.watermark.current > -Infinity) {
      this.advanceWatermarkTo(
        idleWatermark(this.watermark.atLastEvent, this.lastEventAtMs, this.clock.now(), idleTimeoutMs),
      );
    }
    this.operator.onProcessingTime(this.clock.now(), this.watermark.current);
    return this.finishResult();
  }

  /**
   * Moves the watermark to `watermarkMs` (never back) and fires what is due: what an idle task and
   * the end of input do, and what a test driver uses to step event time.
   */
  advanceWatermark(watermarkMs: number): BatchResult {
    this.resetResult();
    this.advanceWatermarkTo(watermarkMs);
    return this.finishResult();
  }

  /**
   * End of input (`kappa run`), as Flink's and Beam's batch modes end: event time and processing
   * time both jump to the end of time, so every window and every pending timer of either kind
   * fires (an actor that clears an alert after 5 quiet minutes clears it).
   */
  endOfInput(): BatchResult {
    this.resetResult();
    this.advanceWatermarkTo(Infinity);
    this.operator.onProcessingTime(Infinity, Infinity);
    return this.finishResult();
  }

  private advanceWatermarkTo(watermarkMs: number): void {
    const before = this.watermark.current;
    this.watermark.advanceTo(watermarkMs);
    if (this.watermark.current > before) this.operator.onWatermark(this.watermark.current);
  }

  private resetResult(): void {
    this.result.outputs.length = 0;
    this.result.late.length = 0;
    this.result.deadLetters.length = 0;
    this.result.processed = 0;
    this.result.lateUpdates = 0;
  }

  private finishResult(): BatchResult {
    this.result.watermarkMs = this.watermark.current;
    this.result.lateUpdates = this.operator.takeLateUpdates();
    return this.result;
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
          this.deadLetter('bad-key', `event key is not usable: ${tooLong}`, message);
          continue;
        }
        time = this.job.time(value);
      } catch (error) {
        const reason: DeadLetterReason =
          error instanceof ProtocolError ? 'undecodable' : key === undefined ? 'no-key' : 'no-time';
        const what = reason === 'no-key' ? 'key' : reason === 'no-time' ? 'time' : undefined;
        this.deadLetter(
          reason,
          what ? `the job's ${what} function threw: ${(error as Error).message}` : (error as Error).message,
          message,
        );
        continue;
      }
      const timeMs = eventTimeOf(time);
      if (typeof timeMs === 'string') {
        this.deadLetter(
          'no-time',
          `event has no usable time: the job's time function returned a value that ${timeMs}`,
          message,
        );
        continue;
      }
      // The far-future guard (README "Bad input"): an event claiming a time well after the log
      // received it would drag the watermark ahead and make the rest of the partition late. The
      // log's timestamp is part of the log, so a replay decides the same.
      if (
        maxFutureSkewMs !== undefined &&
        message.logTimeMs !== undefined &&
        timeMs > message.logTimeMs + maxFutureSkewMs
      ) {
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
      this.messages[count] = message;
      count++;
    }
    return count;
  }

  deadLetter(reason: DeadLetterReason, error: string, origin: RawMessage, idSuffix = ''): void {
    this.result.deadLetters.push({
      id: `${this.partition}/${origin.sequence}${idSuffix}`,
      reason,
      error,
      partition: this.partition,
      sequence: origin.sequence,
      data: origin.data,
    });
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
  return {
    currentMs: json.currentMs ?? -Infinity,
    maxEventTimeMs: json.maxEventTimeMs ?? -Infinity,
    atLastEventMs: json.atLastEventMs ?? -Infinity,
  };
}

function emitCounterOf(counter: NonNullable<EngineSnapshot['actor']>): number {
  // The last revision an old-format checkpoint issued: new revisions continue above it.
  return 'sequence' in counter ? counter.sequence * 1024 + counter.emits : counter.emits;
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
