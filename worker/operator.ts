// What the task processor asks of an operator (the window aggregation, the actor, the joins to
// come): handle one event, react to the watermark and the clock through its own timer service,
// say which keys must stay resident, and rebuild what it keeps in memory from restored rows.
// The processor owns decoding, the watermark and the batch; operators own their state layout.
import type { EventEnvelope } from '../protocol/index.js';
import type { SubKey } from '../state/keyed-state.js';
import type { DeadLetterReason, LateRecord, Output } from './types.js';

/** One message of a partition, as the source hands it to the processor. */
export interface RawMessage {
  data: Uint8Array;
  /** Stream sequence (the partition's offset). */
  sequence: number;
  /**
   * The event's index in its message when one stored message holds several (a repartition
   * bundle): ids of its late and dead-letter records name it, as `<sequence>.<part>`.
   */
  part?: number;
  /**
   * When the log stored the message (JetStream's timestamp), in ms: the reference of the
   * far-future guard, so the decision depends only on the log, never on when it is read.
   */
  logTimeMs?: number;
  /**
   * Which of the job's sources it comes from (index into job.sources; default 0), where no routed
   * record says so: `kappa run` and the test driver feed several sources straight to a keyed task.
   */
  source?: number;
  /**
   * The event already decoded (a line of a file in `kappa run`): the processor takes it as it is
   * instead of decoding `data`, which such a message encodes only when asked (a dead letter).
   */
  decoded?: EventEnvelope;
}

/** Where an operator's results go; the processor resets the arrays per batch. */
export interface OperatorOutput {
  readonly outputs: Output[];
  readonly late: LateRecord[];
  /**
   * Sets something aside with its reason. `origin` is the message concerned (or, for a timer or a
   * window firing, the bytes describing it under the sequence of the event being handled);
   * `idSuffix` names it apart from other letters of the same sequence.
   */
  deadLetter(reason: DeadLetterReason, error: string, origin: RawMessage, idSuffix?: string): void;
  /** The sequence of the event being handled (timers and windows it fires are named after it). */
  readonly sequence: number;
  /** The name of the source of the event being handled (`ctx.source`). */
  readonly source: string;
}

export interface Operator {
  /** State namespaces whose rows make a key resident after a restore (open windows, timers). */
  readonly residentNamespaces: readonly string[];
  /**
   * Whether handling an event reads keyed state, so each batch's keys must be activated first
   * (the actor's state). The window operator keeps its open windows in memory and does not.
   */
  readonly readsKeyedState: boolean;
  /**
   * Handles one event, judged against the watermark before it; the caller has activated the key
   * when the operator reads keyed state.
   * Returns false when the event was dead-lettered.
   */
  onEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, message: RawMessage): boolean;
  /** The watermark advanced: fire what is due. */
  onWatermark(watermarkMs: number): void;
  /** Processing time is now `nowMs`: fire what is due. */
  onProcessingTime(nowMs: number, watermarkMs: number): void;
  /** Keys that must stay in memory (pending timers). */
  isPinned(key: string): boolean;
  /** A row of `residentNamespaces` read back at restore: rebuild what it implies in memory (timers, open windows). */
  restoreRow(key: string, namespace: string, subKey: SubKey, value: unknown, watermarkMs: number): void;
  /**
   * Writes what the operator holds only in memory into keyed state, so that a flush (a checkpoint)
   * stores it: called before every checkpoint.
   */
  syncState(): Promise<void>;
  /** Events that updated a window after it fired, since the last call (for a metric). */
  takeLateUpdates(): number;
}
