// The processing core of one task (job, version, partition), shared by the streaming worker and
// `kappa run`: it takes a batch of raw messages, decodes them, activates their keys' state in
// one batch when the operator reads keyed state (the actor; the window operator folds in memory),
// then runs every event synchronously through the job's operator (windows or actor),
// advancing the watermark after each event and letting the operator fire what is due —
// collecting outputs, late records and dead letters. No per-event await: the only awaits are per batch.
import {
  decodeEventInto,
  decodeRoutedRecord,
  encodeRoutedEvent,
  routedRecordsOf,
  eventTimeOf,
  keyProblem,
  partitionOf,
  ProtocolError,
  type EventEnvelope,
  type RoutedEvent,
  type RoutedRecord,
  type WatermarkMark,
} from '../protocol/index.js';
import type { KeyedState } from '../state/keyed-state.js';
import { ActorOperator } from './actor-operator.js';
import type { Clock } from '../protocol/clock.js';
import type { JobSpec } from './job.js';
import type { Operator, OperatorOutput, RawMessage } from './operator.js';
import type { TaskInput } from './task-input.js';
import { positionOf, type DeadLetter, type DeadLetterReason, type LateRecord, type Output } from './types.js';
import { UpstreamWatermarks, type UpstreamSnapshot } from './upstream-watermarks.js';
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
  /** A route task's events, each for the repartition-topic partition `target`. */
  routed: RoutedOutput[];
  /** A route task's watermark to send to every downstream partition, when it moved (or idleness changed). */
  mark: WatermarkMark | undefined;
}

/** An event a route task keyed, for partition `target` of the repartition topic. */
export interface RoutedOutput extends RoutedEvent {
  target: number;
  /** The event as a repartition-topic record (encodeRoutedEvent). */
  record: Uint8Array;
}

const NO_RECORD = new Uint8Array(0);

/** The input of a task the test driver and `kappa run` feed: keyed events, no partition check. */
const UNCHECKED_INPUT: TaskInput = { kind: 'direct', partitions: undefined };

/** How often a route task sends its watermark downstream at most (Flink's autoWatermarkInterval). */
export const MARK_INTERVAL_MS = 200;

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
    routed: [],
    mark: undefined,
  };
  private readonly operator: Operator | undefined;
  /** The operator when it is the window aggregation, which may spill windows out of memory. */
  private readonly windows: WindowOperator | undefined;
  /** Set for a keyed task reading a repartition topic. */
  private readonly upstreams: UpstreamWatermarks | undefined;
  // Decoded batch, reused between batches (no per-batch array growth after warm-up).
  private keys: string[] = [];
  private times: number[] = [];
  private values: unknown[] = [];
  private messages: RawMessage[] = [];
  private readonly activationKeys: string[] = [];
  /** Per decoded entry: its source index, and for a routed record its upstream index (−1 otherwise). */
  private sourceIndexes: number[] = [];
  private upstreamIndexes: number[] = [];
  /** Per decoded entry of a merged task: the upstream watermark after it; marks have no key. */
  private upstreamWatermarks: number[] = [];
  private upstreamSequences: number[] = [];
  /** A route task's last routed sequence: what a mark sent on an idle tick says it follows. */
  private lastRoutedSequence = 0;
  private lastEventAtMs: number;
  /** A route task's last mark: what it said and when. */
  private markedWatermarkMs = -Infinity;
  private markedIdle = false;
  private markedAtMs = -Infinity;
  /** Sequence of the event being handled: timers and windows it fires are named after it. */
  sequence = 0;
  /** Source of the event being handled (`ctx.source`). */
  source: string;
  /** The envelope each event of a batch is decoded into (its fields are taken at once). */
  private readonly envelope: EventEnvelope = { key: '', time: 0, value: undefined };
  /** Dead-letter ids of a route task start with its stage, so they never meet the keyed task's. */
  private readonly deadLetterPrefix: string;

  constructor(
    private readonly job: JobSpec,
    readonly partition: number,
    private readonly state: KeyedState,
    private readonly clock: Clock,
    restored?: EngineSnapshot,
    private readonly input: TaskInput = UNCHECKED_INPUT,
    stage?: string,
    windowMemoryRows?: number,
  ) {
    this.watermark = new Watermark(job.maxOutOfOrdernessMs, restored && watermarkFromJson(restored.watermark));
    this.lastEventAtMs = clock.now();
    this.source = job.sources[0]!.name;
    this.deadLetterPrefix = stage === undefined ? '' : `${stage}/`;
    if (input.kind === 'merged') this.upstreams = new UpstreamWatermarks(input.upstreamPartitions, restored?.upstreams);
    if (input.kind === 'route') {
      this.operator = undefined;
    } else if (job.kind === 'window') {
      this.windows = new WindowOperator(job, state, this, partition, windowMemoryRows);
      this.operator = this.windows;
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
    input?: TaskInput,
    stage?: string,
    windowMemoryRows?: number,
  ): Promise<TaskProcessor> {
    const processor = new TaskProcessor(job, partition, state, clock, engine, input, stage, windowMemoryRows);
    const watermarkMs = processor.watermark.current;
    const operator = processor.operator;
    if (!operator) return processor;
    // Keys are made active only for an operator that reads keyed state; the window operator holds
    // its rows itself (spilling what is over its budget next).
    await state.restoreResident(
      new Set(operator.residentNamespaces),
      (key, namespace, subKey, value) => operator.restoreRow(key, namespace, subKey, value, watermarkMs),
      { activate: operator.readsKeyedState },
    );
    await processor.windows?.spillIfOverBudget(processor.watermark.current);
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
      ...(this.upstreams ? { upstreams: this.upstreams.snapshot() } : {}),
    };
  }

  /** Writes what the operator holds only in memory (open windows) into keyed state: before every checkpoint. */
  async syncState(): Promise<void> {
    await this.operator?.syncState();
  }

  /** Open windows, in memory or spilled (a window job's; 0 for other operators). */
  get openWindows(): number {
    return this.windows?.openWindows ?? 0;
  }

  /** Open windows spilled out of memory to the task's scratch RocksDB. */
  get spilledWindows(): number {
    return this.windows?.spilledWindows ?? 0;
  }

  /** Keys keyed state must keep in memory (an actor's pending timers). */
  isPinned = (key: string): boolean => this.operator?.isPinned(key) ?? false;

  async processBatch(messages: readonly RawMessage[]): Promise<BatchResult> {
    this.resetResult();
    const input = this.input;
    const count =
      input.kind === 'merged' ? this.decodeRouted(messages, input.partitions) : this.decode(messages, input);
    if (messages.length > 0) {
      this.result.lastSequence = messages[messages.length - 1]!.sequence;
      this.lastEventAtMs = this.clock.now();
    }
    const operator = this.operator;
    if (!operator) {
      this.route(count, input as Extract<TaskInput, { kind: 'route' }>);
      return this.finishResult();
    }
    if (count > 0 && operator.readsKeyedState) await this.state.activate(this.batchKeys(count));
    if (this.spilledWindows > 0) await this.readBackForBatch(count);
    this.runEvents(operator, count);
    operator.onProcessingTime(this.clock.now(), this.watermark.current);
    const spill = this.windows?.spillIfOverBudget(this.watermark.current);
    if (spill) await spill;
    return this.finishResult();
  }

  /**
   * The decoded batch through the operator, event by event. Kept out of the async processBatch:
   * there the loop ran in code entered by on-stack replacement anew on every call (one OSR entry
   * per batch with --trace-osr), deoptimized a few times at first, and the first batches of a
   * run cost ≈ 0.3 s more per 1M events (bench/README.md "Per-event path"); a plain method is
   * optimized whole after a few calls.
   */
  private runEvents(operator: Operator, count: number): void {
    const upstreams = this.upstreams;
    const sources = this.job.sources;
    for (let index = 0; index < count; index++) {
      const key = this.keys[index]!;
      const watermarkBefore = this.watermark.current;
      if (upstreams) {
        const upstream = this.upstreamIndexes[index]!;
        if (key === MARK) {
          // A mark (or an event dead-lettered at decode) moves an upstream's watermark and maybe the minimum.
          const mark = this.values[index] as RoutedRecord;
          if (mark.kind === 'mark') upstreams.acceptMark(upstream, mark.sequence, mark.watermarkMs, mark.idle);
          else upstreams.acceptEvent(upstream, mark.sequence, mark.watermarkMs);
          this.advanceWatermarkTo(upstreams.minimum());
          continue;
        }
        const message = this.messages[index]!;
        this.sequence = message.sequence;
        this.source = sources[this.sourceIndexes[index]!]!.name;
        // Judged against the watermark before it, like any event; then its upstream's watermark counts.
        if (operator.onEvent(key, this.times[index]!, this.values[index], watermarkBefore, message))
          this.result.processed++;
        upstreams.acceptEvent(upstream, this.upstreamSequences[index]!, this.upstreamWatermarks[index]!);
        this.advanceWatermarkTo(upstreams.minimum());
        continue;
      }
      const timeMs = this.times[index]!;
      const message = this.messages[index]!;
      this.sequence = message.sequence;
      this.source = sources[this.sourceIndexes[index]!]!.name;
      // A dead-lettered event still has a valid time: it advances the watermark like any other.
      if (operator.onEvent(key, timeMs, this.values[index], watermarkBefore, message)) this.result.processed++;
      this.watermark.observe(timeMs);
      if (this.watermark.current > watermarkBefore) operator.onWatermark(this.watermark.current);
    }
  }

  /**
   * Reads back the spilled windows the batch needs: the rows its events update and the windows
   * its watermark may fire (bounded by its highest event time or upstream watermark).
   */
  private async readBackForBatch(count: number): Promise<void> {
    const keys: string[] = [];
    const times: number[] = [];
    let boundMs = this.upstreams ? this.upstreams.maximum() : this.watermark.current;
    for (let index = 0; index < count; index++) {
      const key = this.keys[index]!;
      if (this.upstreams) {
        const watermarkMs =
          key === MARK ? (this.values[index] as RoutedRecord).watermarkMs : this.upstreamWatermarks[index]!;
        if (watermarkMs > boundMs) boundMs = watermarkMs;
      }
      if (key === MARK) continue;
      keys.push(key);
      times.push(this.times[index]!);
      // The watermark never passes the highest event time seen.
      if (!this.upstreams && this.times[index]! > boundMs) boundMs = this.times[index]!;
    }
    await this.windows!.readBackFor(keys, times, this.watermark.current, boundMs);
  }

  /** Before the watermark moves outside a batch (idle, a test's step, the end of input). */
  private async readBackUpTo(watermarkMs: number): Promise<void> {
    await this.windows?.readBackFor([], [], this.watermark.current, watermarkMs);
  }

  /** The keys of the decoded batch (marks excluded; repeats left to activate()), to activate their state at once. */
  private batchKeys(count: number): string[] {
    const keys = this.activationKeys;
    let length = 0;
    for (let index = 0; index < count; index++) if (this.keys[index] !== MARK) keys[length++] = this.keys[index]!;
    keys.length = length;
    return keys;
  }

  /**
   * A route task: each event goes to the repartition-topic partition its key hashes to, carrying
   * this partition's watermark after it; lateness is the keyed stage's to decide.
   */
  private route(count: number, input: Extract<TaskInput, { kind: 'route' }>): void {
    const routed = this.result.routed;
    for (let index = 0; index < count; index++) {
      const key = this.keys[index]!;
      const message = this.messages[index]!;
      // Dead-lettered or not, the event's time moves this partition's watermark.
      this.watermark.observe(this.times[index]!);
      const event: RoutedOutput = {
        kind: 'event',
        source: input.sourceIndex,
        partition: this.partition,
        sequence: message.sequence,
        watermarkMs: this.watermark.current,
        key,
        time: this.times[index]!,
        value: this.values[index],
        target: partitionOf(key, input.targetPartitions),
        record: NO_RECORD,
      };
      event.record = encodeRoutedEvent(event);
      if (input.maxRecordBytes !== undefined && event.record.length > input.maxRecordBytes) {
        this.deadLetter(
          'too-large',
          `event is ${event.record.length} bytes as a repartition record, more than the ${input.maxRecordBytes} the repartition topic takes (the server's max_payload less the bundle's headers): it cannot cross to the keyed stage`,
          message,
        );
        continue;
      }
      routed.push(event);
      this.result.processed++;
    }
    this.markIfDue(input, false);
  }

  /**
   * A route task's watermark goes to every downstream partition when it moved or its idleness
   * changed, at most every MARK_INTERVAL_MS: downstream partitions that get no events must still
   * see time pass.
   */
  private markIfDue(input: Extract<TaskInput, { kind: 'route' }>, idle: boolean): void {
    const now = this.clock.now();
    const watermarkMs = this.watermark.current;
    if (watermarkMs === this.markedWatermarkMs && idle === this.markedIdle) return;
    if (now - this.markedAtMs < MARK_INTERVAL_MS) return;
    this.markedWatermarkMs = watermarkMs;
    this.markedIdle = idle;
    this.markedAtMs = now;
    this.result.mark = {
      kind: 'mark',
      source: input.sourceIndex,
      partition: this.partition,
      sequence: this.result.lastSequence || this.lastRoutedSequence,
      watermarkMs,
      idle,
    };
  }

  /**
   * Called when no events arrive: fires due processing-time timers, and with an idle timeout,
   * advances the watermark by processing time (then results depend on wall-clock time).
   */
  async onIdle(): Promise<BatchResult> {
    this.resetResult();
    const idleTimeoutMs = this.job.idleTimeoutMs;
    // A keyed task over a repartition topic follows its upstreams, which apply the idle rule themselves.
    if (idleTimeoutMs !== undefined && this.watermark.current > -Infinity && !this.upstreams) {
      const watermarkMs = idleWatermark(
        this.watermark.atLastEvent,
        this.lastEventAtMs,
        this.clock.now(),
        idleTimeoutMs,
      );
      await this.readBackUpTo(watermarkMs);
      this.advanceWatermarkTo(watermarkMs);
    }
    if (this.input.kind === 'route') {
      const idle = idleTimeoutMs !== undefined && this.clock.now() - this.lastEventAtMs >= idleTimeoutMs;
      this.markIfDue(this.input, idle);
      return this.finishResult();
    }
    this.operator!.onProcessingTime(this.clock.now(), this.watermark.current);
    return this.finishResult();
  }

  /**
   * Moves the watermark to `watermarkMs` (never back) and fires what is due: what an idle task and
   * the end of input do, and what a test driver uses to step event time.
   */
  async advanceWatermark(watermarkMs: number): Promise<BatchResult> {
    this.resetResult();
    await this.readBackUpTo(watermarkMs);
    this.advanceWatermarkTo(watermarkMs);
    return this.finishResult();
  }

  /**
   * End of input (`kappa run`), as Flink's and Beam's batch modes end: event time and processing
   * time both jump to the end of time, so every window and every pending timer of either kind
   * fires (an actor that clears an alert after 5 quiet minutes clears it).
   */
  async endOfInput(): Promise<BatchResult> {
    this.resetResult();
    await this.readBackUpTo(Infinity);
    this.advanceWatermarkTo(Infinity);
    this.operator?.onProcessingTime(Infinity, Infinity);
    return this.finishResult();
  }

  private advanceWatermarkTo(watermarkMs: number): void {
    const before = this.watermark.current;
    this.watermark.advanceTo(watermarkMs);
    if (this.watermark.current > before) this.operator?.onWatermark(this.watermark.current);
  }

  private resetResult(): void {
    this.result.outputs.length = 0;
    this.result.late.length = 0;
    this.result.deadLetters.length = 0;
    this.result.processed = 0;
    this.result.lateUpdates = 0;
    this.result.routed.length = 0;
    this.result.mark = undefined;
  }

  private finishResult(): BatchResult {
    this.result.watermarkMs = this.watermark.current;
    this.result.lateUpdates = this.operator?.takeLateUpdates() ?? 0;
    const routed = this.result.routed;
    if (routed.length > 0) this.lastRoutedSequence = routed[routed.length - 1]!.sequence;
    return this.result;
  }

  /**
   * Decodes a batch of repartition-topic messages (bundles of records, protocol/routed-event.ts)
   * into their events (key and time computed upstream) and marks, in order. Each bundled record
   * becomes a message of its own (its bytes, the bundle's sequence, its index as `part`), so its
   * late and dead-letter records have ids of their own. A repeat of an upstream event already seen
   * is dropped here; a key that is not this partition's is dead-lettered. Returns the entry count.
   */
  private decodeRouted(messages: readonly RawMessage[], partitions: number): number {
    const seen = new Map<number, number>();
    let count = 0;
    for (const message of messages) {
      let records;
      try {
        records = routedRecordsOf(message.data);
      } catch (error) {
        this.deadLetter('undecodable', (error as Error).message, message);
        continue;
      }
      if (records.length === 1 && records[0] === message.data) {
        count = this.decodeRoutedRecord(message, partitions, seen, count);
        continue;
      }
      for (let part = 0; part < records.length; part++) {
        const record = { data: records[part]!, sequence: message.sequence, logTimeMs: message.logTimeMs, part };
        count = this.decodeRoutedRecord(record, partitions, seen, count);
      }
    }
    return count;
  }

  /** One routed record into the batch's arrays at `count`; returns the new count. */
  private decodeRoutedRecord(
    message: RawMessage,
    partitions: number,
    seen: Map<number, number>,
    count: number,
  ): number {
    const upstreams = this.upstreams!;
    let record;
    try {
      record = decodeRoutedRecord(message.data);
    } catch (error) {
      this.deadLetter('undecodable', (error as Error).message, message);
      return count;
    }
    const upstream = upstreams.indexOf(record.source, record.partition);
    if (upstream < 0) {
      this.deadLetter(
        'undecodable',
        `routed record names source ${record.source} partition ${record.partition}, which the plan does not have`,
        message,
      );
      return count;
    }
    if (record.kind === 'event') {
      // Repeats are judged against what this batch accepted too, not only earlier batches.
      const last = seen.get(upstream);
      if ((last !== undefined && record.sequence <= last) || upstreams.isRepeat(upstream, record.sequence))
        return count;
      seen.set(upstream, record.sequence);
      if (this.wrongPartition(record.key, partitions, message)) {
        // Still an event of that upstream: its position and watermark count, in their place
        // among the batch's records (so it rides along as a mark-like entry).
        this.keys[count] = MARK;
        this.values[count] = record;
      } else {
        this.keys[count] = record.key;
        this.times[count] = record.time;
        this.values[count] = record.value;
        this.sourceIndexes[count] = record.source;
      }
    } else {
      this.keys[count] = MARK;
      this.values[count] = record;
    }
    this.messages[count] = message;
    this.upstreamIndexes[count] = upstream;
    this.upstreamSequences[count] = record.sequence;
    this.upstreamWatermarks[count] = record.watermarkMs;
    return count + 1;
  }

  /** The safety net: a key that does not hash to this task's partition is dead-lettered, never counted. */
  private wrongPartition(key: string, partitions: number | undefined, message: RawMessage): boolean {
    if (partitions === undefined) return false;
    const belongs = partitionOf(key, partitions);
    if (belongs === this.partition) return false;
    this.deadLetter(
      'wrong-partition',
      `event key ${JSON.stringify(key.slice(0, 80))} belongs to partition ${belongs} of ${partitions}, not ${this.partition}: the job says its key is the key the topic is partitioned by, but the producer keyed this event otherwise`,
      message,
    );
    return true;
  }

  /**
   * Decodes a batch into the reused arrays; bad messages become dead letters (README "Bad input").
   * Returns the event count.
   */
  private decode(messages: readonly RawMessage[], input: Exclude<TaskInput, { kind: 'merged' }>): number {
    let count = 0;
    const maxFutureSkewMs = this.job.maxFutureSkewMs;
    const sources = this.job.sources;
    const routeSource = input.kind === 'route' ? input.sourceIndex : undefined;
    const checkedPartitions = input.kind === 'direct' ? input.partitions : undefined;
    for (const message of messages) {
      let key: unknown;
      let time: unknown;
      let value: unknown;
      const sourceIndex = routeSource ?? message.source ?? 0;
      const source = sources[sourceIndex]!;
      try {
        const event = message.decoded ?? decodeEventInto(message.data, this.envelope);
        value = event.value;
        key = source.key ? source.key(value) : event.key;
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
        time = source.time(value);
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
      // Like the other events set aside at decode, it does not move the watermark.
      if (this.wrongPartition(key as string, checkedPartitions, message)) continue;
      this.keys[count] = key as string;
      this.times[count] = timeMs;
      this.values[count] = value;
      this.messages[count] = message;
      this.sourceIndexes[count] = sourceIndex;
      count++;
    }
    return count;
  }

  deadLetter(reason: DeadLetterReason, error: string, origin: RawMessage, idSuffix = ''): void {
    this.result.deadLetters.push({
      id: `${this.deadLetterPrefix}${this.partition}/${positionOf(origin)}${idSuffix}`,
      reason,
      error,
      partition: this.partition,
      sequence: origin.sequence,
      ...(origin.part === undefined ? {} : { part: origin.part }),
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
  /** A keyed task over a repartition topic: its upstream partitions' watermarks and positions. */
  upstreams?: UpstreamSnapshot;
  [field: string]: unknown;
}

/** The key slot of a decoded mark (a watermark with no event); no real key is ever this object's identity. */
const MARK = '\u0000mark';

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
