// Types shared by the engine, the job API and the runners (standalone worker, `kappa run`).

/** A duration: a number of ms, or a string such as '5s', '1m', '250ms'. */
export type Duration = number | string;

export type WindowKind = 'tumbling' | 'hopping' | 'session';

/** A window [start, end): end exclusive, times in ms since the epoch. */
export interface Window {
  start: number;
  end: number;
}

/**
 * One result of a job version, as every sink receives it. `id` is deterministic (job, version,
 * key, window) so a re-emission overwrites instead of doubling; `revision` grows with every
 * re-emission of the same id (late updates), and a sink never lets an older revision win.
 * `retract` removes a row: a session window that was emitted and then merged into a larger one.
 */
export interface Output {
  id: string;
  job: string;
  version: string;
  key: string;
  /** The named row of an actor output (`emit(value, { row })`); absent for the key's own row. */
  row?: string;
  /** Present for windowed outputs. */
  window?: Window;
  value: unknown;
  revision: number;
  kind: 'update' | 'retract';
  /**
   * Event time of an actor output (the handled event's or timer's, or `emit(value, { time })`), the
   * time a topic sink gives it; absent for windowed outputs, whose time is their window's end − 1.
   */
  time?: number;
}

/** An event that arrived after every window it belongs to (or some of them) was purged. */
export interface LateRecord {
  key: string;
  time: number;
  value: unknown;
  /** The windows it missed. */
  windows: Window[];
  partition: number;
  sequence: number;
  /** The event's index in a bundled message (RawMessage.part). */
  part?: number;
}

/** Where an event sits in its partition, as ids name it: `<sequence>` or, in a bundle, `<sequence>.<part>`. */
export function positionOf(origin: { sequence: number; part?: number }): string {
  return origin.part === undefined ? String(origin.sequence) : `${origin.sequence}.${origin.part}`;
}

/** The late record of an event read from `origin`. */
export function lateRecordOf(
  key: string,
  time: number,
  value: unknown,
  windows: Window[],
  partition: number,
  origin: { sequence: number; part?: number },
): LateRecord {
  const record: LateRecord = { key, time, value, windows, partition, sequence: origin.sequence };
  if (origin.part !== undefined) record.part = origin.part;
  return record;
}

/**
 * Why the engine set something aside (README "Bad input"): bytes that are not an event, a key that
 * is missing, too long or holds NUL, a time that is missing or not a time, a time too far ahead of when the
 * log received it, a key that does not belong to the task's partition (the job claimed the topic's
 * key but the producer keyed otherwise), an actor handler or an aggregate function that kept throwing.
 */
export type DeadLetterReason =
  | 'undecodable'
  | 'no-key'
  | 'bad-key'
  | 'no-time'
  | 'future-time'
  | 'wrong-partition'
  | 'too-large'
  | 'handler-failed'
  | 'aggregate-failed';

/** An event (or a timer, or a window result) the engine could not process; it goes to the job's dead-letter subject. */
export interface DeadLetter {
  /**
   * Unique and deterministic within the job version, so the dead-letter stream deduplicates only
   * a replay of the same letter: `<partition>/<sequence>` for an event, with `/timer/…` or
   * `/window/…` after it for a timer or window result that failed while that event was handled.
   */
  id: string;
  reason: DeadLetterReason;
  /** Says what was wrong, for a person. */
  error: string;
  partition: number;
  sequence: number;
  /** The record's index in a repartition bundle (RawMessage.part); the bundle is at `sequence`. */
  part?: number;
  /** The original message bytes, so nothing is lost. */
  data: Uint8Array;
}
