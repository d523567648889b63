// Runs one task (job, version, partition) against NATS: consume → process → sinks, batch by
// batch, until stopped. Failures restart the task with back-off; they are logged and counted.
// Its state and checkpoints (restore, commit, retrying a refused commit in place, and why a
// failing write never costs the local state) are in task-checkpointing.ts.
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { CheckpointError, FencedError, streams } from '../protocol/index.js';
import { StateError } from '../state/errors.js';
import { KeyedState } from '../state/keyed-state.js';
import type { TaskStore } from '../state/task-store.js';
import { isTableSink, type JobSinks } from './sinks.js';
import { TaskOutputs } from './task-outputs.js';
import { Backoff } from './backoff.js';
import { partitionLabel } from './metrics.js';
import { REPLAY_BATCH_FACTOR, replayingAt } from './replay-mode.js';
import { withRecordLimit, type RouteSink } from './route-sink.js';
import type { TaskInput } from './task-input.js';
import { PartitionSource, type PartitionSourceOptions, type TaskSource } from './source.js';
import { ArchiveThenLiveSource, type ArchiveParts } from './archive-source.js';
import {
  openTaskState,
  TaskCheckpointing,
  type CheckpointingRunner,
  type TaskCheckpointingOptions,
} from './task-checkpointing.js';
import { TaskProcessor, type EngineSnapshot } from './task-processor.js';
import type { TaskSettings } from './task-settings.js';

/**
 * How far a keyed task's checkpoint must move past its last purge of the repartition topic before
 * the next, in messages: bundles, each a route task's batch of events for the partition (up to
 * 256 KiB), so a few thousand of them hold a few hundred thousand events or more.
 */
const PURGE_EVERY_MESSAGES = 4_096;

export interface TaskRunnerOptions extends TaskSettings, TaskCheckpointingOptions {
  nc: NatsConnection;
  sinks: JobSinks;
  /** What the task reads (task-input.ts); default: the job's topic, its key unchecked. */
  input?: TaskInput;
  /** The topic whose partition the task reads: a source topic, or the version's repartition topic. */
  inputTopic?: string;
  /** A route task's writer to the repartition topic. */
  routeSink?: RouteSink;
  /** How long to wait for messages before idle processing (timers, idle watermark). */
  idleIntervalMs?: number;
  /** First stream sequence to read when the task has no checkpoint yet (default 1, the start of the log). */
  startSequence?: number;
  /** Told of every failure before the restart back-off, so a pool can report it. */
  onFailure?: (error: unknown) => void;
  /**
   * The cold tier: a task over a source topic reads its partition's archived segments first, then
   * the live stream from where the archive ends (hybrid replay, archive-source.ts). Without it
   * the task reads the live stream only.
   */
  archive?: () => Promise<ArchiveParts>;
}

/** Why a task failed, as `kappa_task_failures_total` labels it. */
export type TaskFailureReason = 'state-write' | 'checkpoint' | 'fenced' | 'start' | 'other';

export function taskFailureReason(error: unknown): TaskFailureReason {
  if (error instanceof FencedError) return 'fenced';
  if (error instanceof StateError && error.code === 'STATE_WRITE_FAILED') return 'state-write';
  if (error instanceof CheckpointError) return 'checkpoint';
  return 'other';
}

/** restoring: opening state and the consumer; running: consuming; failed: waiting to restart, or fenced until assigned above the owning epoch. */
export type TaskRunnerState = 'restoring' | 'running' | 'failed';

export interface TaskProgress {
  partition: number;
  /** Last stream sequence processed and its results written. */
  sequence: number;
  /** Sequence of the last committed checkpoint: a restart resumes after it. */
  checkpointSequence: number;
  lagMessages: number;
  watermarkMs: number;
  processed: number;
  /** Where the task reads: its partition's archive (hybrid replay) or the live stream. */
  phase: 'archive' | 'live';
}

/** A cursor that delivers nothing for this long while the partition holds more is replaced (source.ts). */
const SOURCE_STALL_MS = 15_000;

export class TaskRunner {
  private stopped = false;
  /** Ends a restart back-off early, so a revoke or shutdown does not wait up to 30 s. */
  private readonly backoff = new Backoff();
  private source: TaskSource | undefined;
  private processor: TaskProcessor | undefined;
  private store: TaskStore | undefined;
  private processed = 0;
  /** Last stream sequence processed (its results may still be waiting in `outputs`). */
  private sequence = 0;
  /** The results of this run not yet written (task-outputs.ts). */
  private outputs: TaskOutputs | undefined;
  private lastStreamSequence = 0;
  /** The epoch of the last claim or commit: the one a fence refused. */
  private epochInUse = 0;
  /** While fenced: the epoch that owns the task's checkpoint. The task waits to be assigned above it. */
  private ownerEpoch: number | undefined;
  /** Ends the wait of a fenced task (a higher epoch came, or a stop). */
  private wakeFenced: (() => void) | undefined;
  /** A keyed task over a repartition topic: the sequence below which it last purged the topic. */
  private purgedBelow = 1;
  /** Far behind the end of the partition: large batches, rare checkpoints (replay-mode.ts). */
  private replaying = false;
  private runnerState: TaskRunnerState = 'restoring';
  private lastError: string | undefined;
  /** This runner as its checkpoints see it. */
  private readonly checkpointingRunner: CheckpointingRunner = {
    stopped: () => this.stopped,
    backoff: this.backoff,
    commitEpoch: () => (this.epochInUse = this.options.epoch()),
    failed: (error, fields, message) => this.recordFailure(error, fields, message),
    committed: () => {
      if (this.runnerState !== 'failed') return;
      this.runnerState = 'running';
      this.options.logger.info(
        { partition: this.options.partition },
        'checkpoint committed after failures: task running again',
      );
    },
  };
  private readonly done: Promise<void>;
  private readonly children;

  constructor(private readonly options: TaskRunnerOptions) {
    const { job, partition, stage, metrics } = options;
    const labels = { job: job.name, version: job.version, partition: partitionLabel(partition, stage) };
    this.children = {
      processed: metrics.eventsProcessed.labels(labels),
      lag: metrics.lagMessages.labels(labels),
      watermarkLag: metrics.watermarkLagSeconds.labels(labels),
      lateDropped: metrics.lateEvents.labels({ job: job.name, version: job.version, outcome: 'dropped' }),
      lateUpdated: metrics.lateEvents.labels({ job: job.name, version: job.version, outcome: 'updated' }),
      outputs: metrics.outputs.labels({ job: job.name, version: job.version }),
      restarts: metrics.taskRestarts.labels(labels),
      skipped: metrics.skippedMessages.labels(labels),
      handlerDuration: metrics.handlerBatchDuration.labels({ job: job.name, version: job.version }),
      actorsActive: metrics.actorsActive.labels(labels),
      openWindows: metrics.openWindows.labels(labels),
      spilledWindows: metrics.spilledWindows.labels(labels),
      stateBytes: metrics.stateBytes.labels(labels),
    };
    this.done = this.runWithRestarts();
  }

  progress(): TaskProgress {
    // The position whose results are written: while replaying, results are written behind the reads.
    const sequence = this.outputs ? Math.min(this.sequence, this.outputs.writtenSequence) : this.sequence;
    return {
      partition: this.options.partition,
      sequence,
      checkpointSequence: this.options.checkpoints.manifest?.sequence ?? 0,
      lagMessages: Math.max(0, this.lastStreamSequence - sequence),
      watermarkMs: this.processor?.watermark.current ?? -Infinity,
      processed: this.processed,
      phase: this.source?.phase ?? 'live',
    };
  }

  get state(): TaskRunnerState {
    return this.runnerState;
  }

  /** `<job>/<version>[/<stage>]/<partition>`, for status and readiness. */
  get name(): string {
    const { job, stage, partition } = this.options;
    return `${job.name}/${job.version}/${partitionLabel(partition, stage)}`;
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
    const { job, partition, stage, metrics, logger } = this.options;
    const reason = taskFailureReason(error);
    this.runnerState = 'failed';
    this.lastError = error instanceof Error ? error.message : String(error);
    const label = partitionLabel(partition, stage);
    metrics.taskFailures.labels({ job: job.name, version: job.version, partition: label, reason }).inc();
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
    const { nc, job, partition, stage, clock, checkpoints, logger } = this.options;
    const input = this.options.input && withRecordLimit(this.options.input, nc);
    const inputTopic = this.options.inputTopic ?? job.topic;
    const stream = streams.partition(inputTopic, partition);
    const dir =
      stage === undefined
        ? join(this.options.stateDir, job.name, job.version, String(partition))
        : join(this.options.stateDir, job.name, job.version, stage, String(partition));
    // Claim first: it fences older owners, and a higher epoch refuses us before we do anything.
    this.epochInUse = this.options.epoch();
    const manifest = await checkpoints.claim(this.epochInUse, (this.options.startSequence ?? 1) - 1);
    const collected = await checkpoints.collectGarbage().catch(() => 0);
    const restoreStarted = clock.now();
    const restoredFrom = await openTaskState(this.options, dir, manifest, (store) => (this.store = store));
    const state = new KeyedState(this.store!);
    const engine = manifest.engine as EngineSnapshot;
    const processor =
      'watermark' in engine
        ? await TaskProcessor.restore(job, partition, state, clock, engine, input, stage, this.options.windowMemoryRows)
        : new TaskProcessor(job, partition, state, clock, undefined, input, stage, this.options.windowMemoryRows);
    this.processor = processor;
    this.processed = 0;
    this.sequence = manifest.sequence;
    this.outputs = undefined;
    const checkpointing = new TaskCheckpointing(
      this.options,
      this.checkpointingRunner,
      dir,
      state,
      processor,
      this.store!,
    );
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
    const source = await this.openSource(inputTopic, {
      stream,
      startSequence: manifest.sequence + 1,
      batchMessages: this.options.batchMessages ?? 10_000,
      maxBufferedBytes: this.options.maxBufferedBytes,
      onRestart: (error) => logger.warn({ err: error, partition }, 'consumer restarted'),
      onSkip: (from, to) => {
        this.children.skipped.inc(to - from + 1);
        logger.warn(
          { partition, from, to },
          'sequences skipped: neither the stream nor the archive holds them (deleted or purged before this task read them)',
        );
      },
    });
    this.source = source;
    const outputs = new TaskOutputs(this.options.sinks, { coalesce: isTableSink(job.sink) }, manifest.sequence);
    this.outputs = outputs;
    await source.start();
    this.runnerState = 'running';
    const jsm = await jetstreamManager(nc);
    let lagCheckedAt = 0;
    const maxBatch = this.options.batchMessages ?? 10_000;
    while (!this.stopped) {
      // First before the first batch: a task far behind starts in replay mode, not a batch later.
      if (clock.now() - lagCheckedAt > 1000) {
        lagCheckedAt = clock.now();
        await this.observeLag(jsm, stream, source, state);
      }
      await source.waitForMessages(this.options.idleIntervalMs ?? 200);
      if (this.stopped) break;
      const batch = source.take(this.replaying ? maxBatch * REPLAY_BATCH_FACTOR : maxBatch);
      const batchStartedAt = performance.now();
      const result = batch.length > 0 ? await processor.processBatch(batch) : await processor.onIdle();
      if (batch.length > 0) this.children.handlerDuration.observe((performance.now() - batchStartedAt) / 1000);
      const batchEnd = batch.length > 0 ? batch[batch.length - 1]!.sequence : this.sequence;
      outputs.add(result, batchEnd, clock.now());
      // Near the head (or idle) every batch's results are written before the next is read; while
      // replaying they are coalesced and written behind (task-outputs.ts).
      if (!this.replaying || batch.length === 0) await outputs.flush();
      else if (outputs.due(clock.now())) await outputs.writeBehind();
      if (this.options.routeSink) await this.options.routeSink.write(result);
      this.processed += result.processed;
      checkpointing.counted(batch.length);
      this.children.processed.inc(result.processed);
      if (result.late.length > 0) this.children.lateDropped.inc(result.late.length);
      if (result.lateUpdates > 0) this.children.lateUpdated.inc(result.lateUpdates);
      if (batch.length > 0) this.sequence = batch[batch.length - 1]!.sequence;
      if (result.outputs.length > 0) this.children.outputs.inc(result.outputs.length);
      for (const letter of result.deadLetters) {
        this.options.metrics.deadLetters.labels({ job: job.name, version: job.version, reason: letter.reason }).inc();
      }
      const now = clock.now();
      if (checkpointing.due(now, this.replaying)) {
        await outputs.flush(); // a checkpoint covers only events whose results are durable
        await checkpointing.checkpoint(this.sequence);
        if (input?.kind === 'merged') this.purgeRepartitionStream(jsm, stream);
      }
    }
    // Revoke or shutdown: hand the task over at a checkpoint, so the next owner re-reads little.
    try {
      await outputs.flush();
      await checkpointing.checkpoint(this.sequence);
    } catch (error) {
      if (error instanceof FencedError) throw error;
      logger.error({ err: error, partition }, 'final checkpoint failed; the next owner resumes from the previous one');
    }
  }

  /**
   * Once a second: the partition's end (for lag and the replay mode; a slow answer from a busy or
   * failing-over server keeps the last known end instead of failing a task that reads fine), a
   * stalled cursor replaced, and the task's gauges.
   */
  private async observeLag(
    jsm: Awaited<ReturnType<typeof jetstreamManager>>,
    stream: string,
    source: TaskSource,
    state: KeyedState,
  ): Promise<void> {
    const { partition, logger, clock } = this.options;
    try {
      this.lastStreamSequence = (await jsm.streams.info(stream)).state.last_seq;
    } catch (error) {
      logger.debug({ err: error, partition }, 'end of partition not known this time; lag from the last answer');
    }
    source.restartIfStalled(this.lastStreamSequence, SOURCE_STALL_MS);
    const progress = this.progress();
    this.children.lag.set(progress.lagMessages);
    if (this.replaying !== replayingAt(this.replaying, progress.lagMessages)) {
      this.replaying = !this.replaying;
      logger.info(
        { partition, lagMessages: progress.lagMessages },
        this.replaying
          ? 'far behind: replay mode (large batches, rare checkpoints)'
          : 'near the head: low-latency mode',
      );
    }
    this.children.actorsActive.set(state.activeKeys);
    if (this.processor) {
      this.children.openWindows.set(this.processor.openWindows);
      this.children.spilledWindows.set(this.processor.spilledWindows);
    }
    if (this.store) this.children.stateBytes.set(await this.store.approximateSizeBytes());
    if (Number.isFinite(progress.watermarkMs))
      this.children.watermarkLag.set((clock.now() - progress.watermarkMs) / 1000);
  }

  /**
   * The live stream, or for a task over a source topic with a cold tier, its archive first
   * (hybrid replay). A repartition topic is the version's own and never archived.
   */
  private async openSource(topic: string, live: PartitionSourceOptions): Promise<TaskSource> {
    const { nc, job, partition, logger, input, archive, metrics } = this.options;
    if (!archive || input?.kind === 'merged') return new PartitionSource(nc, live);
    const { store, catalog } = await archive();
    const labels = { job: job.name, version: job.version };
    const segments = metrics.archiveSegmentsRead.labels(labels);
    const bytes = metrics.archiveBytesRead.labels(labels);
    const onSegmentRead = (size: number) => {
      segments.inc();
      bytes.inc(size);
    };
    return new ArchiveThenLiveSource(nc, { store, catalog, topic, partition, onSegmentRead }, live, (sequence) => {
      if (sequence > live.startSequence)
        logger.info({ partition, sequence }, 'archive read: the live stream takes over at this sequence');
    });
  }

  /**
   * A keyed task over a repartition topic never reads below its committed checkpoint again, so the
   * partition is purged up to it (as Kafka Streams purges repartition topics after a commit): the
   * topic holds what is in flight between the stages, not the whole history. A purge compacts the
   * stream while route tasks write it, which costs nats-server 2.9 dearly (a 300k-event hop took
   * 4× the server CPU when every checkpoint purged, before events were bundled,
   * bench/repartition.ts), so it runs once
   * PURGE_EVERY_MESSAGES have been checkpointed past the last one. Best effort: a purge that fails
   * is retried after the next checkpoint, and the topic's max age bounds it anyway.
   */
  private purgeRepartitionStream(jsm: Awaited<ReturnType<typeof jetstreamManager>>, stream: string): void {
    const keepFrom = (this.options.checkpoints.manifest?.sequence ?? 0) + 1;
    if (keepFrom - this.purgedBelow < PURGE_EVERY_MESSAGES) return;
    this.purgedBelow = keepFrom;
    void jsm.streams
      .purge(stream, { seq: keepFrom })
      .catch((error: unknown) =>
        this.options.logger.warn({ err: error, stream, keepFrom }, 'could not purge the repartition stream'),
      );
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
