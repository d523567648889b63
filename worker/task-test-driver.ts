// A test driver for one task (Kafka Streams' TopologyTestDriver): pipe events in, step the
// watermark and a manual clock, read what came out — the job's operator semantics in
// milliseconds, with no nats-server. It runs the same TaskProcessor as the worker, over a real
// RocksDB in a temporary directory.
//
//   const driver = await TaskTestDriver.open(job);
//   await driver.pipeInput([{ key: 'ann', value: { ts: 1_000 } }]);
//   await driver.advanceWatermark(60_000);
//   expect(driver.table()).toEqual(…);
//   await driver.close();
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEvent } from '../protocol/index.js';
import { decodeKey, type KeyPart } from '../state/key-encoding.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { ManualClock } from '../protocol/clock.js';
import { validateJob, type JobDefinition, type JobSpec } from './job.js';
import { ServingView } from './serving-view.js';
import { TaskProcessor, type BatchResult } from './task-processor.js';
import type { DeadLetter, LateRecord, Output } from './types.js';

export interface DriverInput {
  /** The key the event was published with (what the job reads when it has no `key` function). */
  key: string;
  value: unknown;
  /** Envelope time; the job's `time` function decides event time. Default 0. */
  time?: number;
  /** When the log stored it (the far-future guard's reference); default: the driver's clock. */
  logTimeMs?: number;
  /** Which of the job's `sources` it comes from (`ctx.source`), by name; default the first. */
  source?: string;
}

export interface TaskTestDriverOptions {
  partition?: number;
  /** The manual clock's start, ms. Default 0. */
  startMs?: number;
}

export class TaskTestDriver {
  private readonly outputs: Output[] = [];
  private readonly late: LateRecord[] = [];
  private readonly deadLetters: DeadLetter[] = [];
  private readonly view = new ServingView();
  private sequence = 0;

  private constructor(
    private readonly processor: TaskProcessor,
    /** Source names by their index in the job (what a RawMessage's `source` counts). */
    private readonly sourceIndexes: ReadonlyMap<string, number>,
    private readonly state: KeyedState,
    private readonly store: TaskStore,
    private readonly dir: string,
    /** The processing-time clock handlers and processing-time timers see. */
    readonly clock: ManualClock,
  ) {}

  static async open(job: JobDefinition | JobSpec, options: TaskTestDriverOptions = {}): Promise<TaskTestDriver> {
    const spec = 'kind' in job ? job : validateJob(job);
    const dir = mkdtempSync(join(tmpdir(), 'kappa-driver-'));
    const store = await TaskStore.open(dir);
    const clock = new ManualClock(options.startMs ?? 0);
    const state = new KeyedState(store);
    return new TaskTestDriver(
      new TaskProcessor(spec, options.partition ?? 0, state, clock),
      new Map(spec.sources.map((source, index) => [source.name, index])),
      state,
      store,
      dir,
      clock,
    );
  }

  /** Runs the events as one batch (results never depend on batch boundaries). */
  async pipeInput(events: readonly DriverInput[]): Promise<void> {
    const messages = events.map((event) => ({
      data: encodeEvent({ key: event.key, time: event.time ?? 0, value: event.value }),
      sequence: ++this.sequence,
      logTimeMs: event.logTimeMs ?? this.clock.now(),
      source: event.source === undefined ? 0 : this.sourceIndex(event.source),
    }));
    this.collect(await this.processor.processBatch(messages));
  }

  /** Moves the watermark to `watermarkMs` (never back), firing due windows and event-time timers. */
  async advanceWatermark(watermarkMs: number): Promise<void> {
    this.collect(await this.processor.advanceWatermark(watermarkMs));
  }

  /** Moves the manual clock on and lets the task idle: due processing-time timers fire (and the idle watermark moves, if configured). */
  async advanceProcessingTime(ms: number): Promise<void> {
    this.clock.advance(ms);
    this.collect(await this.processor.onIdle());
  }

  /** End of input: every window and pending timer fires, as at the end of `kappa run`. */
  async endOfInput(): Promise<void> {
    this.collect(await this.processor.endOfInput());
  }

  get watermarkMs(): number {
    return this.processor.watermark.current;
  }

  /** Every output so far, every revision, in emission order. */
  readOutputs(): Output[] {
    return [...this.outputs];
  }

  readLate(): LateRecord[] {
    return [...this.late];
  }

  readDeadLetters(): DeadLetter[] {
    return [...this.deadLetters];
  }

  /** The serving table as a reader would see it: the newest revision per row, retractions removed. */
  table(): Output[] {
    return [...this.view.values()];
  }

  /**
   * Every row the task's state holds (what a checkpoint would take), in key order: the actor's key,
   * the namespace (`v:<name>`, `m:<name>`, `t` for timers, `w` for windows) and the row within it.
   * For tests that state is purged.
   */
  async stateRows(): Promise<Array<{ key: string; namespace: string; subKey: KeyPart[] }>> {
    await this.processor.syncState();
    await this.state.flush();
    const rows: Array<{ key: string; namespace: string; subKey: KeyPart[] }> = [];
    for await (const batch of this.store.scanBatches()) {
      for (const [rowKey] of batch) {
        const [key, namespace, ...subKey] = decodeKey(rowKey);
        rows.push({ key: String(key), namespace: String(namespace), subKey });
      }
    }
    return rows;
  }

  async close(): Promise<void> {
    await this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private sourceIndex(name: string): number {
    const index = this.sourceIndexes.get(name);
    if (index === undefined)
      throw new RangeError(
        `the job has no source ${JSON.stringify(name)}; its sources are ${[...this.sourceIndexes.keys()].map((known) => `'${known}'`).join(', ')}`,
      );
    return index;
  }

  private collect(result: BatchResult): void {
    this.outputs.push(...result.outputs);
    this.late.push(...result.late);
    this.deadLetters.push(...result.deadLetters);
    this.view.apply(result.outputs);
  }
}
