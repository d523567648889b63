// Runs one task (job, version, partition) against NATS: consume → process → sinks, batch by
// batch, until stopped. Failures restart the task with back-off; they are logged and counted.
//
// A failing write must not make things worse: the local state is wiped and downloaded again only
// when it is known not to equal the committed checkpoint (its mark is missing or names another),
// never because a write failed. A write RocksDB refused changed nothing (batches are atomic), so
// the mark is put back and the restart reopens the same store; a checkpoint JetStream refused (a
// full store) is retried in place, the local store kept ahead of the last commit by exactly its
// delta. Both back off exponentially (0.5 s to 30 s), and show as `failed` with the error (status,
// /readyz), in `kappa_task_failures_total{reason}` and in the log.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { CheckpointError, FencedError, streams } from '../protocol/index.js';
import { localMark, type CommitResult, type TaskCheckpoints } from '../state/checkpoint-store.js';
import type { CheckpointManifest } from '../state/checkpoint-manifest.js';
import { StateError } from '../state/errors.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore, type WriteCapture } from '../state/task-store.js';
import type { Clock } from '../protocol/clock.js';
import type { JobSpec } from './job.js';
import type { WorkerMetrics } from './metrics.js';
import type { JobSinks } from './sinks.js';
import { Backoff } from './backoff.js';
import { PartitionSource } from './source.js';
import { TaskProcessor, type EngineSnapshot } from './task-processor.js';

/** How every task of a worker runs: compiled once from the worker's settings (cli/commands/worker.ts). */
export interface TaskSettings {
  /** Each task's RocksDB store lives in <stateDir>/<job>/<version>/<partition>. */
  stateDir: string;
  /** Largest batch handed to the processor. */
  batchMessages?: number;
  /** Checkpoint at least this often (processing time). */
  checkpointIntervalMs?: number;
  /** Also checkpoint after this many events (undefined: by time only). */
  checkpointEvents?: number;
}

export interface TaskRunnerOptions extends TaskSettings {
  nc: NatsConnection;
  job: JobSpec;
  partition: number;
  sinks: JobSinks;
  clock: Clock;
  logger: Logger;
  metrics: WorkerMetrics;
  /** How long to wait for messages before idle processing (timers, idle watermark). */
  idleIntervalMs?: number;
  /** First stream sequence to read when the task has no checkpoint yet (default 1, the start of the log). */
  startSequence?: number;
  /** The task's checkpoints (manifest in KV, objects in the Object Store). */
  checkpoints: TaskCheckpoints;
  /** The assignment epoch the task runs under now; commits carry it and a higher one fences them. */
  epoch: () => number;
  /** Also checkpoint when this many state rows are dirty, which bounds memory. */
  checkpointDirtyRows?: number;
  /** Told of every failure before the restart back-off, so a pool can report it. */
  onFailure?: (error: unknown) => void;
  /** Opens the task's RocksDB store (default TaskStore.open); tests inject write faults here. */
  openStore?: (dir: string) => Promise<TaskStore>;
}

/** Why a task failed, as `kappa_task_failures_total` labels it. */
export type TaskFailureReason = 'state-write' | 'checkpoint' | 'fenced' | 'start' | 'other';

export function taskFailureReason(error: unknown): TaskFailureReason {
  if (error instanceof FencedError) return 'fenced';
  if (error instanceof StateError && error.code === 'STATE_WRITE_FAILED') return 'state-write';
  if (error instanceof CheckpointError) return 'checkpoint';
  return 'other';
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 10_000;
const DEFAULT_CHECKPOINT_DIRTY_ROWS = 50_000;

/**
 * Replay mode: a task this far behind the end of its partition reads batches REPLAY_BATCH_FACTOR
 * times larger (fewer table writes: re-emissions of a window within a batch collapse to one) and
 * checkpoints REPLAY_CHECKPOINT_FACTOR times less often; below REPLAY_EXIT_LAG it returns to
 * low-latency settings.
 */
const REPLAY_ENTER_LAG = 100_000;
const REPLAY_EXIT_LAG = 10_000;
const REPLAY_BATCH_FACTOR = 4;
const REPLAY_CHECKPOINT_FACTOR = 6;

/** restoring: opening state and the consumer; running: consuming; failed: waiting to restart, or fenced until assigned above the owning epoch. */
export type TaskRunnerState = 'restoring' | 'running' | 'failed';

export interface TaskProgress {
  partition: number;
  /** Last stream sequence processed. */
  sequence: number;
  /** Sequence of the last committed checkpoint: a restart resumes after it. */
  checkpointSequence: number;
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
  private eventsSinceCheckpoint = 0;
  private lastCheckpointAtMs = 0;
  /** The epoch of the last claim or commit: the one a fence refused. */
  private epochInUse = 0;
  /** While fenced: the epoch that owns the task's checkpoint. The task waits to be assigned above it. */
  private ownerEpoch: number | undefined;
  /** Ends the wait of a fenced task (a higher epoch came, or a stop). */
  private wakeFenced: (() => void) | undefined;
  /** Far behind the end of the partition: large batches, rare checkpoints (see REPLAY_ENTER_LAG). */
  private replaying = false;
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
      checkpointDuration: metrics.checkpointDuration.labels(labels),
      checkpointBytes: metrics.checkpointBytes.labels(labels),
      checkpointSize: metrics.checkpointSizeBytes.labels(labels),
      checkpointsCommitted: metrics.checkpoints.labels({ job: job.name, version: job.version, outcome: 'committed' }),
      checkpointsFailed: metrics.checkpoints.labels({ job: job.name, version: job.version, outcome: 'failed' }),
      checkpointsFenced: metrics.checkpoints.labels({ job: job.name, version: job.version, outcome: 'fenced' }),
    };
    this.done = this.runWithRestarts();
  }

  progress(): TaskProgress {
    return {
      partition: this.options.partition,
      sequence: this.sequence,
      checkpointSequence: this.options.checkpoints.manifest?.sequence ?? 0,
      lagMessages: Math.max(0, this.lastStreamSequence - this.sequence),
      watermarkMs: this.processor?.watermark.current ?? -Infinity,
      processed: this.processed,
    };
  }

  get state(): TaskRunnerState {
    return this.runnerState;
  }

  /** `<job>/<version>/<partition>`, for status and readiness. */
  get name(): string {
    return `${this.options.job.name}/${this.options.job.version}/${this.options.partition}`;
  }

  /** The message of the failure that put the task in state `failed`. */
  get error(): string | undefined {
    return this.runnerState === 'failed' ? this.lastError : undefined;
  }

  /**
   * While fenced: the epoch that owns the task's checkpoint (reported in heartbeats as `fencedBy`,
   * so the coordinator assigns the task again above it). Undefined otherwise.
   */
  get fencedBy(): number | undefined {
    return this.ownerEpoch;
  }

  /** The epoch the task runs under was raised: a fenced task claims again under it. */
  epochRaised(): void {
    this.wakeFenced?.();
  }

  private async runWithRestarts(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.runOnce();
        return;
      } catch (error) {
        if (error instanceof FencedError) {
          // Another owner claimed the task under a higher epoch (we are a zombie, or our epoch came
          // from a coordinator that lost its records). Never retry under this epoch: wait for a
          // higher one, which the coordinator sends when the heartbeat reports `fencedBy`.
          const fencedAt = this.epochInUse;
          this.ownerEpoch = error.ownerEpoch ?? fencedAt + 1;
          this.recordFailure(
            error,
            { epoch: fencedAt, ownerEpoch: this.ownerEpoch },
            'task fenced: its checkpoint is owned under a higher epoch; waiting to be assigned above it',
          );
          await this.closeResources();
          await this.waitForHigherEpoch(fencedAt);
          continue;
        }
        if (this.stopped) return;
        this.children.restarts.inc();
        this.recordFailure(error, { backoffMs: this.backoff.nextDelayMs }, 'task failed; restarting');
        await this.closeResources();
        await this.backoff.wait();
      }
    }
  }

  /** A failure: state `failed` with its message (status, /readyz), counted by reason, logged, told to the pool. */
  private recordFailure(error: unknown, fields: Record<string, unknown>, message: string): void {
    const { job, partition, metrics, logger } = this.options;
    const reason = taskFailureReason(error);
    this.runnerState = 'failed';
    this.lastError = error instanceof Error ? error.message : String(error);
    metrics.taskFailures.labels({ job: job.name, version: job.version, partition: String(partition), reason }).inc();
    this.options.onFailure?.(error);
    logger.error({ err: error, partition, reason, ...fields }, message);
  }

  private async waitForHigherEpoch(fencedAt: number): Promise<void> {
    while (!this.stopped && this.options.epoch() <= fencedAt) {
      await new Promise<void>((resolve) => (this.wakeFenced = resolve));
    }
    this.wakeFenced = undefined;
    this.ownerEpoch = undefined;
  }

  private async runOnce(): Promise<void> {
    const { nc, job, partition, clock, checkpoints, logger } = this.options;
    const stream = streams.partition(job.topic, partition);
    const dir = join(this.options.stateDir, job.name, job.version, String(partition));
    // Claim first: it fences older owners, and a higher epoch refuses us before we do anything.
    this.epochInUse = this.options.epoch();
    const manifest = await checkpoints.claim(this.epochInUse, (this.options.startSequence ?? 1) - 1);
    const collected = await checkpoints.collectGarbage().catch(() => 0);
    const restoreStarted = clock.now();
    const restoredFrom = await this.openState(dir, manifest);
    const state = new KeyedState(this.store!);
    const engine = manifest.engine as EngineSnapshot;
    const processor =
      'watermark' in engine
        ? await TaskProcessor.restore(job, partition, state, clock, engine)
        : new TaskProcessor(job, partition, state, clock);
    this.processor = processor;
    this.processed = 0;
    this.sequence = manifest.sequence;
    this.eventsSinceCheckpoint = 0;
    this.lastCheckpointAtMs = clock.now();
    logger.info(
      {
        partition,
        checkpoint: manifest.id,
        sequence: manifest.sequence,
        restoredFrom,
        activeKeys: state.activeKeys,
        restoreMs: clock.now() - restoreStarted,
        garbageObjects: collected,
      },
      'task restored',
    );
    const source = new PartitionSource(nc, {
      stream,
      startSequence: manifest.sequence + 1,
      batchMessages: this.options.batchMessages ?? 10_000,
      onRestart: (error) => logger.warn({ err: error, partition }, 'consumer restarted'),
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
      const batch = source.take(this.replaying ? maxBatch * REPLAY_BATCH_FACTOR : maxBatch);
      const batchStartedAt = performance.now();
      const result = batch.length > 0 ? await processor.processBatch(batch) : processor.onIdle();
      if (batch.length > 0) this.children.handlerDuration.observe((performance.now() - batchStartedAt) / 1000);
      await this.options.sinks.write(result);
      this.processed += result.processed;
      this.eventsSinceCheckpoint += batch.length;
      this.children.processed.inc(result.processed);
      if (result.late.length > 0) this.children.lateDropped.inc(result.late.length);
      if (result.lateUpdates > 0) this.children.lateUpdated.inc(result.lateUpdates);
      if (batch.length > 0) this.sequence = batch[batch.length - 1]!.sequence;
      if (result.outputs.length > 0) this.children.outputs.inc(result.outputs.length);
      for (const letter of result.deadLetters) {
        this.options.metrics.deadLetters.labels({ job: job.name, version: job.version, reason: letter.reason }).inc();
      }
      const now = clock.now();
      if (this.checkpointDue(state, now)) await this.checkpoint(dir, state, processor);
      if (now - lagCheckedAt > 1000) {
        lagCheckedAt = now;
        this.lastStreamSequence = (await jsm.streams.info(stream)).state.last_seq;
        const progress = this.progress();
        this.children.lag.set(progress.lagMessages);
        if (
          this.replaying !==
          (this.replaying ? progress.lagMessages > REPLAY_EXIT_LAG : progress.lagMessages > REPLAY_ENTER_LAG)
        ) {
          this.replaying = !this.replaying;
          logger.info(
            { partition, lagMessages: progress.lagMessages },
            this.replaying
              ? 'far behind: replay mode (large batches, rare checkpoints)'
              : 'near the head: low-latency mode',
          );
        }
        this.children.actorsActive.set(state.activeKeys);
        if (this.store) this.children.stateBytes.set(await this.store.approximateSizeBytes());
        if (Number.isFinite(progress.watermarkMs)) this.children.watermarkLag.set((now - progress.watermarkMs) / 1000);
      }
    }
    // Revoke or shutdown: hand the task over at a checkpoint, so the next owner re-reads little.
    try {
      await this.checkpoint(dir, state, processor);
    } catch (error) {
      if (error instanceof FencedError) throw error;
      logger.error({ err: error, partition }, 'final checkpoint failed; the next owner resumes from the previous one');
    }
  }

  /**
   * Opens the task's RocksDB holding the manifest's state: the local copy when its mark says it
   * is that checkpoint, otherwise (and only then) a wiped store filled from the Object Store. A
   * local copy that fails to open is kept (a full disk, an I/O error: the restart tries again)
   * unless RocksDB reports it corrupt.
   */
  private async openState(dir: string, manifest: CheckpointManifest): Promise<'local' | 'object-store' | 'empty'> {
    const open = this.options.openStore ?? ((path: string) => TaskStore.open(path));
    const restored = (source: 'local' | 'object-store' | 'empty') => {
      const { job, partition } = this.options;
      this.options.metrics.stateRestores
        .labels({ job: job.name, version: job.version, partition: String(partition), source })
        .inc();
      return source;
    };
    if (existsSync(dir) && localMark.matches(dir, manifest)) {
      try {
        this.store = await open(dir);
        return restored('local');
      } catch (error) {
        if (!/corrupt/i.test((error as Error).message)) throw error;
        this.options.logger.error(
          { err: error, partition: this.options.partition },
          'local state is corrupt: wiping it and downloading the checkpoint',
        );
      }
    }
    localMark.clear(dir);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    this.store = await open(dir);
    await this.options.checkpoints.restoreInto(this.store, manifest);
    localMark.write(dir, manifest);
    return restored(manifest.objects.length > 0 ? 'object-store' : 'empty');
  }

  private checkpointDue(state: KeyedState, nowMs: number): boolean {
    const { checkpointEvents } = this.options;
    const factor = this.replaying ? REPLAY_CHECKPOINT_FACTOR : 1;
    return (
      nowMs - this.lastCheckpointAtMs >=
        (this.options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS) * factor ||
      (checkpointEvents !== undefined && this.eventsSinceCheckpoint >= checkpointEvents * factor) ||
      state.dirtyRows >= (this.options.checkpointDirtyRows ?? DEFAULT_CHECKPOINT_DIRTY_ROWS) * factor
    );
  }

  /**
   * Flushes the changed rows to RocksDB, uploads them and commits the manifest (sequence,
   * watermark, engine counters) under the current epoch. The local mark is set aside first, so a
   * crash in between makes the next start download the committed state instead of trusting a
   * local store that is ahead of it. A flush RocksDB refused puts the mark back (nothing was
   * written) and fails the task, which restarts on the same local store; a refused commit is
   * retried in place (commitRetrying).
   */
  private async checkpoint(dir: string, state: KeyedState, processor: TaskProcessor): Promise<void> {
    const { checkpoints } = this.options;
    this.lastCheckpointAtMs = this.options.clock.now();
    this.eventsSinceCheckpoint = 0;
    const engine = processor.snapshot();
    const last = checkpoints.manifest;
    if (
      state.dirtyRows === 0 &&
      last &&
      last.sequence === this.sequence &&
      last.epoch === this.options.epoch() &&
      JSON.stringify(last.engine) === JSON.stringify(engine)
    ) {
      return; // nothing changed since the last commit
    }
    const stopTimer = this.children.checkpointDuration.startTimer();
    localMark.setAside(dir);
    const delta: WriteCapture = { puts: [], deletes: [] };
    try {
      await state.flush(delta);
    } catch (error) {
      // Refused as a whole (write batches are atomic): the store still equals the last commit.
      localMark.putBack(dir);
      this.children.checkpointsFailed.inc();
      throw error;
    }
    const result = await this.commitRetrying(() => {
      this.epochInUse = this.options.epoch();
      return checkpoints.commit({ epoch: this.epochInUse, sequence: this.sequence, engine, delta, store: this.store! });
    });
    localMark.write(dir, result.manifest);
    stopTimer();
    this.children.checkpointsCommitted.inc();
    this.children.checkpointBytes.inc(result.bytesUploaded);
    this.children.checkpointSize.set(result.bytesUploaded);
    state.evict(processor.isPinned);
  }

  /**
   * Commits, and while JetStream refuses the upload or the manifest (a full store, a lost node)
   * retries the same commit in place with back-off: the local store is ahead of the last commit by
   * exactly this delta, so a retry keeps it where a restart would have to wipe it and download the
   * last checkpoint. A stop ends the retries (the next owner resumes from the last commit).
   */
  private async commitRetrying(commit: () => Promise<CommitResult>): Promise<CommitResult> {
    for (;;) {
      try {
        const result = await commit();
        if (this.runnerState === 'failed') {
          this.runnerState = 'running';
          this.options.logger.info(
            { partition: this.options.partition },
            'checkpoint committed after failures: task running again',
          );
        }
        this.backoff.reset();
        return result;
      } catch (error) {
        if (error instanceof FencedError) {
          // A zombie's commit refused: counted here, apart from claims refused at start.
          this.children.checkpointsFenced.inc();
          throw error;
        }
        this.children.checkpointsFailed.inc();
        if (this.stopped) throw error;
        this.recordFailure(
          error,
          { backoffMs: this.backoff.nextDelayMs },
          'checkpoint failed; retrying it in place (local state kept)',
        );
        await this.backoff.wait();
        if (this.stopped) throw error;
      }
    }
  }

  private async closeResources(): Promise<void> {
    await this.source?.stop();
    this.source = undefined;
    await this.store?.close().catch(() => undefined);
    this.store = undefined;
  }

  /**
   * Stops after the current batch (its outputs written) with a final checkpoint; resolves with
   * the sequence of the last committed checkpoint, where the next owner resumes.
   */
  async stop(): Promise<number> {
    this.stopped = true;
    this.backoff.wake();
    this.wakeFenced?.();
    await this.source?.stop();
    await this.done;
    await this.closeResources();
    return this.options.checkpoints.manifest?.sequence ?? 0;
  }
}
