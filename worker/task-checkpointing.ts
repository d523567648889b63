// A task's state and its checkpoints: where a (re)started task's RocksDB store comes from
// (openTaskState), and when and how a running task checkpoints it (TaskCheckpointing).
//
// A failing write must not make things worse: the local state is wiped and downloaded again only
// when it is known not to equal the committed checkpoint (its mark is missing or names another),
// never because a write failed. A write RocksDB refused changed nothing (batches are atomic), so
// the mark is put back and the restart reopens the same store; a checkpoint JetStream refused (a
// full store) is retried in place, the local store kept ahead of the last commit by exactly its
// delta. Both back off exponentially (0.5 s to 30 s), and show as `failed` with the error (status,
// /readyz), in `kappa_task_failures_total{reason}` and in the log.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { FencedError } from '../protocol/index.js';
import type { Clock } from '../protocol/clock.js';
import { localMark, type CommitResult, type TaskCheckpoints } from '../state/checkpoint-store.js';
import type { CheckpointManifest } from '../state/checkpoint-manifest.js';
import type { KeyedState } from '../state/keyed-state.js';
import { TaskStore, type WriteCapture } from '../state/task-store.js';
import type { Backoff } from './backoff.js';
import type { JobSpec } from './job.js';
import { partitionLabel, type WorkerMetrics } from './metrics.js';
import { REPLAY_CHECKPOINT_FACTOR } from './replay-mode.js';
import type { TaskProcessor } from './task-processor.js';
import { DEFAULT_CHECKPOINT_INTERVAL_MS, type TaskSettings } from './task-settings.js';

const DEFAULT_CHECKPOINT_DIRTY_ROWS = 50_000;

/** What a task's restore and checkpoints read of its options (TaskRunnerOptions extends it). */
export interface TaskCheckpointingOptions extends Pick<TaskSettings, 'checkpointIntervalMs' | 'checkpointEvents'> {
  job: JobSpec;
  partition: number;
  /** Absent for the keyed stage; a route stage's name otherwise. */
  stage?: string;
  clock: Clock;
  logger: Logger;
  metrics: WorkerMetrics;
  /** The task's checkpoints (manifest in KV, objects in the Object Store). */
  checkpoints: TaskCheckpoints;
  /** The assignment epoch the task runs under now; commits carry it and a higher one fences them. */
  epoch: () => number;
  /** Also checkpoint when this many state rows are dirty, which bounds memory. */
  checkpointDirtyRows?: number;
  /** Opens the task's RocksDB store (default TaskStore.open); tests inject write faults here. */
  openStore?: (dir: string) => Promise<TaskStore>;
}

/** What checkpointing needs of the task runner around it. */
export interface CheckpointingRunner {
  /** The task is stopping: a refused commit is not retried. */
  stopped(): boolean;
  /** The runner's back-off, so a stop ends a retry's wait early. */
  readonly backoff: Backoff;
  /** The epoch a commit carries, taken now (the runner keeps it: a fence names it). */
  commitEpoch(): number;
  /** A refused commit: the task `failed` with it, counted, logged, told to the pool. */
  failed(error: unknown, fields: Record<string, unknown>, message: string): void;
  /** A commit went through: a task `failed` by refused commits runs again. */
  committed(): void;
}

/** Where a task's state came from, as `kappa_state_restores_total{source}` labels it. */
export type StateSource = 'local' | 'object-store' | 'empty';

/**
 * Opens the task's RocksDB holding the manifest's state: the local copy when its mark says it
 * is that checkpoint, otherwise (and only then) a wiped store filled from the Object Store. A
 * local copy that fails to open is kept (a full disk, an I/O error: the restart tries again)
 * unless RocksDB reports it corrupt. The store goes to `opened` as soon as it is open, so the
 * runner closes it even when filling it fails.
 */
export async function openTaskState(
  options: TaskCheckpointingOptions,
  dir: string,
  manifest: CheckpointManifest,
  opened: (store: TaskStore) => void,
): Promise<StateSource> {
  const open = options.openStore ?? ((path: string) => TaskStore.open(path));
  const restored = (source: StateSource) => {
    const { job, partition, stage } = options;
    options.metrics.stateRestores
      .labels({ job: job.name, version: job.version, partition: partitionLabel(partition, stage), source })
      .inc();
    return source;
  };
  if (existsSync(dir) && localMark.matches(dir, manifest)) {
    try {
      opened(await open(dir));
      return restored('local');
    } catch (error) {
      if (!/corrupt/i.test((error as Error).message)) throw error;
      options.logger.error(
        { err: error, partition: options.partition },
        'local state is corrupt: wiping it and downloading the checkpoint',
      );
    }
  }
  localMark.clear(dir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const store = await open(dir);
  opened(store);
  await options.checkpoints.restoreInto(store, manifest);
  localMark.write(dir, manifest);
  return restored(manifest.objects.length > 0 ? 'object-store' : 'empty');
}

/** The checkpoints of one run of a task: when the next is due, and taking it. */
export class TaskCheckpointing {
  private lastCheckpointAtMs: number;
  private eventsSinceCheckpoint = 0;
  private readonly children;

  constructor(
    private readonly options: TaskCheckpointingOptions,
    private readonly runner: CheckpointingRunner,
    private readonly dir: string,
    private readonly state: KeyedState,
    private readonly processor: TaskProcessor,
    private readonly store: TaskStore,
  ) {
    const { job, partition, stage, metrics } = options;
    const labels = { job: job.name, version: job.version, partition: partitionLabel(partition, stage) };
    this.children = {
      checkpointDuration: metrics.checkpointDuration.labels(labels),
      checkpointBytes: metrics.checkpointBytes.labels(labels),
      checkpointSize: metrics.checkpointSizeBytes.labels(labels),
      checkpointsCommitted: metrics.checkpoints.labels({ job: job.name, version: job.version, outcome: 'committed' }),
      checkpointsFailed: metrics.checkpoints.labels({ job: job.name, version: job.version, outcome: 'failed' }),
      checkpointsFenced: metrics.checkpoints.labels({ job: job.name, version: job.version, outcome: 'fenced' }),
    };
    this.lastCheckpointAtMs = options.clock.now();
  }

  /** Counts events read since the last checkpoint (`checkpointEvents`). */
  counted(events: number): void {
    this.eventsSinceCheckpoint += events;
  }

  due(nowMs: number, replaying: boolean): boolean {
    const { checkpointEvents } = this.options;
    const factor = replaying ? REPLAY_CHECKPOINT_FACTOR : 1;
    return (
      nowMs - this.lastCheckpointAtMs >=
        (this.options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS) * factor ||
      (checkpointEvents !== undefined && this.eventsSinceCheckpoint >= checkpointEvents * factor) ||
      this.state.dirtyRows >= (this.options.checkpointDirtyRows ?? DEFAULT_CHECKPOINT_DIRTY_ROWS) * factor
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
  async checkpoint(sequence: number): Promise<void> {
    const { checkpoints } = this.options;
    const { dir, state, processor } = this;
    this.lastCheckpointAtMs = this.options.clock.now();
    this.eventsSinceCheckpoint = 0;
    await processor.syncState();
    const engine = processor.snapshot();
    const last = checkpoints.manifest;
    if (
      state.dirtyRows === 0 &&
      last &&
      last.sequence === sequence &&
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
      const epoch = this.runner.commitEpoch();
      return checkpoints.commit({ epoch, sequence, engine, delta, store: this.store });
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
    const { backoff } = this.runner;
    for (;;) {
      try {
        const result = await commit();
        this.runner.committed();
        backoff.reset();
        return result;
      } catch (error) {
        if (error instanceof FencedError) {
          // A zombie's commit refused: counted here, apart from claims refused at start.
          this.children.checkpointsFenced.inc();
          throw error;
        }
        this.children.checkpointsFailed.inc();
        if (this.runner.stopped()) throw error;
        this.runner.failed(
          error,
          { backoffMs: backoff.nextDelayMs },
          'checkpoint failed; retrying it in place (local state kept)',
        );
        await backoff.wait();
        if (this.runner.stopped()) throw error;
      }
    }
  }
}
