// The entry of a piscina thread: one long-lived piscina task per thread, a *task host*. It has
// its own NATS connection, loads the job modules by path, and runs any number of TaskRunners
// (async, many per thread), each with its own RocksDB instance. The main thread sends start /
// stop commands over the MessagePort in the task's argument; the host posts progress, failures
// and metric snapshots back. A piscina task per event would cost 17–40 µs each (FACTS.md).
import type { MessagePort } from 'node:worker_threads';
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  directPlan,
  jobVersionKey,
  stageOf,
  streams,
  taskKey,
  topicPartitions,
  type JobPlan,
  type StartPosition,
  type TaskId,
} from '../protocol/index.js';
import { connectNats, createLogger, internalReplicas, tableSettingsFromEnv } from '../runtime/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import { systemClock } from '../protocol/clock.js';
import { loadJob, type JobSpec } from './job.js';
import { WorkerMetrics } from './metrics.js';
import { Backoff } from './backoff.js';
import { isTableSink, JobSinks } from './sinks.js';
import { openServingTables, type ServingTables, type TableKind } from '../tables/index.js';
import { partitionLabel } from './metrics.js';
import { RouteSink } from './route-sink.js';
import { taskInputOf } from './task-input.js';
import { TaskRunner } from './task-runner.js';
import { firstArchivedSequenceAtOrAfter, lazyArchiveParts, type ArchiveParts } from './archive-source.js';
import {
  type FromTaskHost,
  type HostedTaskProgress,
  type TaskHostOptions,
  type ToTaskHost,
} from './thread-messages.js';

interface HostedTask {
  task: TaskId;
  epoch: number;
  runner: TaskRunner | undefined;
  /** Resolves once the runner exists, or the task was stopped before it did. */
  starting: Promise<void>;
  stopping: boolean;
  /** A failure before the runner started (sinks or stream unreachable). */
  startError: string | undefined;
  /** Ends a start back-off early when the task is stopped. */
  backoff: Backoff;
  /** A route task's writer to the repartition topic, closed with the task. */
  routeSink: RouteSink | undefined;
}

/** The piscina task: resolves when the main thread says `shutdown`. */
export default async function hostTasks(
  options: TaskHostOptions & { port: MessagePort },
): Promise<{ threadIndex: number }> {
  const logger = createLogger({ workerId: options.workerId, thread: options.threadIndex }, options.logLevel);
  const jobs = new Map<string, JobSpec>();
  for (const file of options.jobFiles) {
    const job = await loadJob(file);
    jobs.set(jobVersionKey({ job: job.name, version: job.version }), job);
  }
  const nc = await connectNats({ ...options.nats, name: `kappa-worker-${options.workerId}-t${options.threadIndex}` });
  const host = new TaskHost(options, nc, jobs, logger);
  await host.run();
  return { threadIndex: options.threadIndex };
}

class TaskHost {
  private readonly tasks = new Map<string, HostedTask>();
  private readonly sinks = new Map<string, Promise<JobSinks>>();
  private checkpoints: Promise<CheckpointStore> | undefined;
  /** The cold tier, opened once per thread when a task first reads it. */
  private readonly archiveParts: () => Promise<ArchiveParts>;
  private readonly tables = new Map<TableKind, Promise<ServingTables>>();
  private readonly metrics = new WorkerMetrics();
  private readonly port: MessagePort;

  constructor(
    private readonly options: TaskHostOptions & { port: MessagePort },
    private readonly nc: NatsConnection,
    private readonly jobs: Map<string, JobSpec>,
    private readonly logger: Logger,
  ) {
    this.port = options.port;
    this.archiveParts = lazyArchiveParts(nc, internalReplicas());
  }

  async run(): Promise<void> {
    const progressTimer = setInterval(() => this.postProgress(), this.options.progressIntervalMs);
    const metricsTimer = setInterval(() => void this.postMetrics(), this.options.metricsIntervalMs);
    await new Promise<void>((resolve) => {
      this.port.on('message', (message: ToTaskHost) => {
        if (message.type === 'shutdown') resolve();
        else this.handle(message);
      });
    });
    clearInterval(progressTimer);
    clearInterval(metricsTimer);
    // Normally every task was stopped before shutdown; stop any left so RocksDB closes cleanly.
    await Promise.all([...this.tasks.values()].map((hosted) => this.stop(hosted.task)));
    this.postProgress();
    await this.postMetrics();
    for (const sinks of this.sinks.values()) await (await sinks.catch(() => undefined))?.close();
    for (const tables of this.tables.values()) await (await tables.catch(() => undefined))?.close();
    await this.nc.drain();
    this.port.close();
  }

  private handle(message: Exclude<ToTaskHost, { type: 'shutdown' }>): void {
    const key = taskKey(message.task);
    if (message.type === 'start') {
      if (this.tasks.has(key)) return; // the main thread already placed it here
      this.start(message.task, message.epoch, message.from, message.plan);
    } else if (message.type === 'epoch') {
      const hosted = this.tasks.get(key);
      if (hosted) {
        hosted.epoch = message.epoch;
        hosted.runner?.epochRaised();
      } else {
        this.logger.warn(
          { task: message.task, epoch: message.epoch },
          'epoch raised for a task this thread does not host',
        );
      }
    } else {
      void this.stop(message.task);
    }
  }

  private start(task: TaskId, epoch: number, from: StartPosition, plan: JobPlan | undefined): void {
    const hosted: HostedTask = {
      task,
      epoch,
      runner: undefined,
      starting: Promise.resolve(),
      stopping: false,
      startError: undefined,
      backoff: new Backoff(),
      routeSink: undefined,
    };
    this.tasks.set(taskKey(task), hosted);
    hosted.starting = this.startRunner(hosted, from, plan);
  }

  /** Opens the sinks and starts the runner; a failure here is reported and retried with back-off, like a runner's. */
  private async startRunner(hosted: HostedTask, from: StartPosition, assignedPlan: JobPlan | undefined): Promise<void> {
    const { task } = hosted;
    const job = this.jobs.get(jobVersionKey(task));
    const logger = this.logger.child({
      job: task.job,
      version: task.version,
      partition: task.partition,
      ...(task.stage === undefined ? {} : { stage: task.stage }),
    });
    while (!hosted.stopping) {
      try {
        if (!job) throw new Error(`job ${task.job} version ${task.version} is not carried by this worker`);
        // An assign without a plan (a coordinator from before plans) means the job's one topic, read directly.
        const plan =
          assignedPlan ?? directPlan(job.sources[0]!.name, job.topic, await topicPartitions(this.nc, job.topic));
        const input = taskInputOf(job, plan, task.stage);
        const inputTopic = stageOf(plan, task.stage)!.topic;
        const sinks = await this.sinksFor(job);
        if (input.kind === 'route' && !hosted.routeSink)
          hosted.routeSink = await RouteSink.open(this.nc, input.targetTopic, {
            index: input.sourceIndex,
            partition: task.partition,
          });
        // A start position names places in the source topics; the repartition topic is the version's
        // own, written from that position on, so a keyed task over it reads it from the start.
        const startSequence =
          input.kind === 'merged' ? 1 : await this.startSequence(inputTopic, task.partition, from, logger);
        if (hosted.stopping) return;
        hosted.startError = undefined;
        hosted.runner = new TaskRunner({
          ...this.options.tasks,
          nc: this.nc,
          job,
          partition: task.partition,
          ...(task.stage === undefined ? {} : { stage: task.stage }),
          input,
          inputTopic,
          routeSink: hosted.routeSink,
          sinks,
          clock: systemClock,
          logger,
          metrics: this.metrics,
          checkpoints: (await this.checkpointStore()).forTask(task, this.options.workerId),
          epoch: () => hosted.epoch,
          startSequence,
          archive: this.archiveParts,
          onFailure: (error) => this.post({ type: 'failed', task, error: messageOf(error) }),
        });
        logger.info({ epoch: hosted.epoch, startSequence }, 'task started');
        return;
      } catch (error) {
        hosted.startError = messageOf(error);
        this.metrics.taskFailures
          .labels({
            job: task.job,
            version: task.version,
            partition: partitionLabel(task.partition, task.stage),
            reason: 'start',
          })
          .inc();
        this.post({ type: 'failed', task, error: hosted.startError });
        logger.error({ err: error, backoffMs: hosted.backoff.nextDelayMs }, 'task could not start; retrying');
        await hosted.backoff.wait();
      }
    }
  }

  /**
   * Where a task with no checkpoint yet starts (a checkpoint, once claimed, overrides it):
   * `earliest` at the start of the log, `latest` after the stream's last message, `sequence`
   * where it says.
   */
  private async startSequence(topic: string, partition: number, from: StartPosition, logger: Logger): Promise<number> {
    if (from.kind === 'sequence') return from.sequence;
    if (from.kind === 'latest') {
      const info = await (await jetstreamManager(this.nc)).streams.info(streams.partition(topic, partition));
      return info.state.last_seq + 1;
    }
    if (from.kind === 'time') {
      // The stream may no longer hold that time (hot retention): the archive then says where it is.
      const inStream = await firstSequenceAtOrAfter(this.nc, streams.partition(topic, partition), from.timeMs, logger);
      const archived = await firstArchivedSequenceAtOrAfter(
        { ...(await this.archiveParts()), topic, partition },
        from.timeMs,
      );
      return archived === undefined ? inStream : Math.min(archived, inStream);
    }
    return 1;
  }

  /** One serving-table backend of each kind per thread; a failed open is retried by the next start. */
  private tablesFor(kind: TableKind): Promise<ServingTables> {
    let tables = this.tables.get(kind);
    if (!tables) {
      tables = openServingTables(kind, this.nc, tableSettingsFromEnv());
      tables.catch(() => this.tables.delete(kind));
      this.tables.set(kind, tables);
    }
    return tables;
  }

  /** One checkpoint store per thread; a failed open is retried by the next start. */
  private checkpointStore(): Promise<CheckpointStore> {
    if (!this.checkpoints) {
      const opening = CheckpointStore.open(this.nc, { replicas: internalReplicas() });
      opening.catch(() => (this.checkpoints = undefined));
      this.checkpoints = opening;
    }
    return this.checkpoints;
  }

  private sinksFor(job: JobSpec): Promise<JobSinks> {
    const key = jobVersionKey({ job: job.name, version: job.version });
    let sinks = this.sinks.get(key);
    if (!sinks) {
      sinks = (async () =>
        JobSinks.open(this.nc, job, isTableSink(job.sink) ? await this.tablesFor(job.sink) : undefined))();
      // A failed open is not cached: the next start tries again.
      sinks.catch(() => this.sinks.delete(key));
      this.sinks.set(key, sinks);
    }
    return sinks;
  }

  private async stop(task: TaskId): Promise<void> {
    const key = taskKey(task);
    const hosted = this.tasks.get(key);
    if (!hosted) {
      this.post({ type: 'stopped', task, sequence: 0 });
      return;
    }
    if (hosted.stopping) return; // the first stop reports
    hosted.stopping = true;
    hosted.backoff.wake();
    await hosted.starting;
    let sequence = 0;
    try {
      sequence = hosted.runner ? await hosted.runner.stop() : 0;
    } catch (error) {
      this.logger.error({ err: error, task }, 'task did not stop cleanly');
    }
    await hosted.routeSink?.close();
    this.metrics.removeTask(task);
    this.tasks.delete(key);
    this.logger.info({ task, sequence }, 'task stopped');
    this.post({ type: 'stopped', task, sequence });
  }

  private postProgress(): void {
    const tasks: HostedTaskProgress[] = [];
    for (const hosted of this.tasks.values()) {
      const runner = hosted.runner;
      if (!runner) {
        tasks.push({
          task: hosted.task,
          state: hosted.startError ? 'failed' : 'restoring',
          sequence: 0,
          lagMessages: 0,
          watermark: null,
          ...(hosted.startError ? { error: hosted.startError } : {}),
        });
        continue;
      }
      const progress = runner.progress();
      const error = runner.error;
      const fencedBy = runner.fencedBy;
      tasks.push({
        task: hosted.task,
        state: runner.state,
        sequence: progress.sequence,
        lagMessages: progress.lagMessages,
        watermark: Number.isFinite(progress.watermarkMs) ? progress.watermarkMs : null,
        ...(error ? { error } : {}),
        ...(fencedBy !== undefined ? { fencedBy } : {}),
        phase: progress.phase,
      });
    }
    this.post({ type: 'progress', tasks });
  }

  private async postMetrics(): Promise<void> {
    // Only our own metrics: process-wide ones (CPU, memory) come from the main thread once.
    const metrics = (await this.metrics.registry.getMetricsAsJSON()).filter((metric) =>
      metric.name.startsWith('kappa_'),
    );
    this.post({ type: 'metrics', metrics });
  }

  private post(message: FromTaskHost): void {
    this.port.postMessage(message);
  }
}

/**
 * The first stream sequence stored at or after `timeMs` (the time JetStream stored the message,
 * as Kafka's offsetsForTimes uses the log time): a cursor created at that time counts what is
 * pending from there, and the stream's last sequence gives the start.
 */
async function firstSequenceAtOrAfter(
  nc: NatsConnection,
  stream: string,
  timeMs: number,
  logger: Logger,
): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const last = (await jsm.streams.info(stream)).state.last_seq;
  const info = await jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(timeMs).toISOString(),
    mem_storage: true,
    inactive_threshold: 5_000_000_000,
  });
  await jsm.consumers.delete(stream, info.name).catch(() => undefined);
  const start = last + 1 - info.num_pending;
  logger.info({ timeMs, startSequence: start }, 'starting at the first message stored at or after the given time');
  return start;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
