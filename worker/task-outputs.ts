// What one task has produced and not yet written, and when it is written. Near the head of the log
// every batch is written before the next is read (results show up within a batch). While the task
// replays (worker/replay-mode.ts), a table's outputs are coalesced per row across batches (only a
// row's newest revision matters between checkpoints, as in Flink's and Kafka Streams' caches) and
// written behind: one write in flight while the next batches are processed, started when enough
// rows are waiting or enough time has passed. Before every checkpoint everything is written and
// acknowledged (flush), so a checkpoint never covers an event whose results are not durable, and a
// restart from it re-emits the same revisions, which the sinks' revision guards and message ids absorb.
import type { BatchResult } from './task-processor.js';
import type { JobSinks, SinkWrite } from './sinks.js';
import type { DeadLetter, LateRecord, Output } from './types.js';

export interface TaskOutputsOptions {
  /** Coalesce outputs per row across batches (table sinks: only the newest revision is kept anyway). */
  coalesce: boolean;
  /** While replaying: start a write when this many rows are waiting… */
  maxPendingRows?: number;
  /** …or when the oldest waiting result is this old. */
  maxDelayMs?: number;
}

const DEFAULT_MAX_PENDING_ROWS = 20_000;
const DEFAULT_MAX_DELAY_MS = 1_000;

export class TaskOutputs {
  /** Newest output per row id (coalescing) or every output in order. */
  private rows = new Map<string, Output>();
  private outputs: Output[] = [];
  private late: LateRecord[] = [];
  private deadLetters: DeadLetter[] = [];
  private pendingSinceMs: number | undefined;
  /** The last sequence added, and the last one whose results are acknowledged. */
  private pendingThrough: number;
  private written: number;
  /** The write in flight, if any (its failure surfaces at the next flush). */
  private inFlight: Promise<void> | undefined;
  private readonly maxPendingRows: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly sinks: JobSinks,
    private readonly options: TaskOutputsOptions,
    /** The task's position when it started (its checkpoint's sequence). */
    startSequence: number,
  ) {
    this.pendingThrough = startSequence;
    this.written = startSequence;
    this.maxPendingRows = options.maxPendingRows ?? DEFAULT_MAX_PENDING_ROWS;
    this.maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  }

  /** The last stream sequence whose results are all written (what status reports as the task's position). */
  get writtenSequence(): number {
    return this.written;
  }

  /** Takes the results of a batch that ends at stream sequence `sequence` (copied out: the processor reuses its arrays). */
  add(result: BatchResult, sequence: number, nowMs: number): void {
    if (result.outputs.length === 0 && result.late.length === 0 && result.deadLetters.length === 0) {
      // Nothing to write for it: written as soon as what is before it is.
      if (this.pendingSinceMs === undefined && this.inFlight === undefined) this.written = sequence;
      this.pendingThrough = sequence;
      return;
    }
    this.pendingSinceMs ??= nowMs;
    this.pendingThrough = sequence;
    if (this.options.coalesce) {
      for (const output of result.outputs) {
        const seen = this.rows.get(output.id);
        if (!seen || output.revision >= seen.revision) this.rows.set(output.id, output);
      }
    } else {
      for (const output of result.outputs) this.outputs.push(output);
    }
    for (const late of result.late) this.late.push(late);
    for (const letter of result.deadLetters) this.deadLetters.push(letter);
  }

  /** Results waiting to be written (rows, records). */
  get pending(): number {
    return this.rows.size + this.outputs.length + this.late.length + this.deadLetters.length;
  }

  /** While replaying: is it time to start writing what waits? */
  due(nowMs: number): boolean {
    if (this.pendingSinceMs === undefined) return false;
    return (
      !this.options.coalesce || this.pending >= this.maxPendingRows || nowMs - this.pendingSinceMs >= this.maxDelayMs
    );
  }

  /** Writes everything waiting, after the write in flight; resolves when all of it is acknowledged. */
  async flush(): Promise<void> {
    await this.writeBehind();
    await this.settle();
  }

  /**
   * Starts writing everything waiting and returns without waiting for it, once the previous
   * write is done (one write in flight, so a row's revisions reach the table in order); the
   * previous write's failure is thrown here.
   */
  async writeBehind(): Promise<void> {
    await this.settle();
    const through = this.pendingThrough;
    if (this.pendingSinceMs === undefined) {
      this.written = through;
      return;
    }
    const write: SinkWrite = {
      outputs: this.options.coalesce ? [...this.rows.values()] : this.outputs,
      late: this.late,
      deadLetters: this.deadLetters,
      newestPerId: this.options.coalesce,
    };
    this.rows = new Map();
    this.outputs = [];
    this.late = [];
    this.deadLetters = [];
    this.pendingSinceMs = undefined;
    const inFlight = this.sinks.write(write).then(() => {
      this.written = through;
    });
    // Observed at once so a failure is not an unhandled rejection; thrown at the next settle().
    inFlight.catch(() => undefined);
    this.inFlight = inFlight;
  }

  /** Waits for the write in flight; throws its failure. */
  private async settle(): Promise<void> {
    const inFlight = this.inFlight;
    if (!inFlight) return;
    try {
      await inFlight;
    } finally {
      if (this.inFlight === inFlight) this.inFlight = undefined;
    }
  }
}
