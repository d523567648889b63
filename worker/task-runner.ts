// Runs one task (job, version, partition) against NATS: consume → process → sinks, batch by
// batch, until stopped. Failures restart the task with back-off; they are logged and counted.
import { rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { streams } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import type { Clock } from './clock.js';
import type { JobSpec } from './job.js';
import type { WorkerMetrics } from './metrics.js';
import type { JobSinks } from './sinks.js';
import { Backoff } from './backoff.js';
import { PartitionSource } from './source.js';
import { TaskProcessor } from './task-processor.js';

export interface TaskRunnerOptions {
  nc: NatsConnection;
  job: JobSpec;
  partition: number;
  sinks: JobSinks;
  stateDir: string;
  clock: Clock;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Largest batch handed to the processor. */
  batchMessages?: number;
  /** How long to wait for messages before idle processing (timers, idle watermark). */
  idleIntervalMs?: number;
  /** First stream sequence to read (default 1, the start of the log). */
  startSequence?: number;
  /** Told of every failure before the restart back-off, so a pool can report it. */
  onFailure?: (error: unknown) => void;
}

/** restoring: opening state and the consumer; running: consuming; failed: waiting to restart. */
export type TaskRunnerState = 'restoring' | 'running' | 'failed';

export interface TaskProgress {
  partition: number;
  /** Last stream sequence processed. */
  sequence: number;
  lagMessages: number;
  watermarkMs: number;
  processed: number;
}

export class TaskRunner {
  private stopped = false;
  /** Ends a restart back-off early, so a revoke or shutdown does not wait up to 30 s. */
  private readonly backoff = new Backoff();
  private source: PartitionSource | undefined;
  private processor: TaskProcessor | undefined;
  private store: TaskStore | undefined;
  private processed = 0;
  /** Last stream sequence processed (its results written to the sinks). */
  private sequence = 0;
  private lastStreamSequence = 0;
  private runnerState: TaskRunnerState = 'restoring';
  private lastError: string | undefined;
  private readonly done: Promise<void>;
  private readonly children;

  constructor(private readonly options: TaskRunnerOptions) {
    const { job, partition, metrics } = options;
    const labels = { job: job.name, version: job.version, partition: String(partition) };
    this.children = {
      processed: metrics.eventsProcessed.labels(labels),
      lag: metrics.lagMessages.labels(labels),
      watermarkLag: metrics.watermarkLagSeconds.labels(labels),
      lateDropped: metrics.lateEvents.labels({ job: job.name, version: job.version, outcome: 'dropped' }),
      lateUpdated: metrics.lateEvents.labels({ job: job.name, version: job.version, outcome: 'updated' }),
      outputs: metrics.outputs.labels({ job: job.name, version: job.version }),
      restarts: metrics.taskRestarts.labels(labels),
      handlerDuration: metrics.handlerBatchDuration.labels({ job: job.name, version: job.version }),
      actorsActive: metrics.actorsActive.labels(labels),
      stateBytes: metrics.stateBytes.labels(labels),
    };
    this.done = this.runWithRestarts();
  }

  progress(): TaskProgress {
    return {
      partition: this.options.partition,
      sequence: this.sequence,
      lagMessages: Math.max(0, this.lastStreamSequence - this.sequence),
      watermarkMs: this.processor?.watermark.current ?? -Infinity,
      processed: this.processed,
    };
  }

  get state(): TaskRunnerState {
    return this.runnerState;
  }

  /** The message of the failure that put the task in state `failed`. */
  get error(): string | undefined {
    return this.runnerState === 'failed' ? this.lastError : undefined;
  }

  private async runWithRestarts(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.runOnce();
        return;
      } catch (error) {
        if (this.stopped) return;
        this.children.restarts.inc();
        this.runnerState = 'failed';
        this.lastError = error instanceof Error ? error.message : String(error);
        this.options.onFailure?.(error);
        this.options.logger.error({ err: error, partition: this.options.partition, backoffMs: this.backoff.nextDelayMs }, 'task failed; restarting');
        await this.closeResources();
        await this.backoff.wait();
      }
    }
  }

  private async runOnce(): Promise<void> {
    const { nc, job, partition, clock } = this.options;
    const stream = streams.partition(job.topic, partition);
    // Until checkpoints exist, a task starts from an empty state at the start of the log: the
    // log is the write-ahead log, and deterministic output ids make the replay overwrite.
    const dir = join(this.options.stateDir, job.name, job.version, String(partition));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    this.store = await TaskStore.open(dir);
    const state = new KeyedState(this.store);
    const processor = new TaskProcessor(job, partition, state, clock);
    this.processor = processor;
    this.processed = 0;
    this.sequence = 0;
    const source = new PartitionSource(nc, {
      stream,
      startSequence: this.options.startSequence ?? 1,
      batchMessages: this.options.batchMessages ?? 10_000,
      onRestart: (error) => this.options.logger.warn({ err: error, partition }, 'consumer restarted'),
    });
    this.source = source;
    await source.start();
    this.runnerState = 'running';
    const jsm = await jetstreamManager(nc);
    let lagCheckedAt = 0;
    const maxBatch = this.options.batchMessages ?? 10_000;
    while (!this.stopped) {
      await source.waitForMessages(this.options.idleIntervalMs ?? 200);
      if (this.stopped) break;
      const batch = source.take(maxBatch);
      const batchStartedAt = performance.now();
      const result = batch.length > 0 ? await processor.processBatch(batch) : processor.onIdle();
      if (batch.length > 0) this.children.handlerDuration.observe((performance.now() - batchStartedAt) / 1000);
      await this.options.sinks.write(result);
      this.processed += result.processed;
      this.children.processed.inc(result.processed);
      if (result.late.length > 0) this.children.lateDropped.inc(result.late.length);
      if (result.lateUpdates > 0) this.children.lateUpdated.inc(result.lateUpdates);
      if (batch.length > 0) this.sequence = batch[batch.length - 1]!.sequence;
      if (result.outputs.length > 0) this.children.outputs.inc(result.outputs.length);
      for (const letter of result.deadLetters) {
        this.options.metrics.deadLetters.labels({ job: job.name, version: job.version, reason: letter.reason }).inc();
      }
      // Keep memory bounded: write dirty rows in one batch, then drop idle keys.
      if (state.dirtyRows > 50_000 || batch.length === 0) {
        await state.flush();
        state.evict(processor.isPinned);
      }
      const now = clock.now();
      if (now - lagCheckedAt > 1000) {
        lagCheckedAt = now;
        this.lastStreamSequence = (await jsm.streams.info(stream)).state.last_seq;
        const progress = this.progress();
        this.children.lag.set(progress.lagMessages);
        this.children.actorsActive.set(state.activeKeys);
        if (this.store) this.children.stateBytes.set(await this.store.approximateSizeBytes());
        if (Number.isFinite(progress.watermarkMs)) this.children.watermarkLag.set((now - progress.watermarkMs) / 1000);
      }
    }
  }

  private async closeResources(): Promise<void> {
    await this.source?.stop();
    this.source = undefined;
    await this.store?.close().catch(() => undefined);
    this.store = undefined;
  }

  /** Stops after the current batch (its outputs written); resolves with the last sequence processed. */
  async stop(): Promise<number> {
    this.stopped = true;
    this.backoff.wake();
    await this.source?.stop();
    await this.done;
    const sequence = this.progress().sequence;
    await this.closeResources();
    return sequence;
  }
}
