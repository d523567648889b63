// `kappa worker --standalone`: one process consumes every partition of its job's topic, one task
// per partition, without a coordinator.
//
// Without a coordinator nobody hands out epochs, so the standalone worker takes them itself: it
// first takes the job version's lease (standalone-lease.ts: a second replica refuses), then claims
// each task one epoch above its checkpoint's. A replica that lost the lease, or whose claim or
// commit was fenced by a newer one, stops: `lost` resolves with the reason.
import { hostname } from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Clock } from '../protocol/clock.js';
import type { JobSpec } from './job.js';
import type { WorkerMetrics } from './metrics.js';
import { isTableSink, JobSinks } from './sinks.js';
import { openServingTables } from '../tables/index.js';
import { tableSettingsFromEnv, internalReplicas } from '../runtime/index.js';
import { TaskRunner, type TaskProgress } from './task-runner.js';
import type { TaskSettings } from './task-settings.js';
import { FencedError, topicPartitions, type KappaError } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import type { TaskStore } from '../state/task-store.js';
import { notReadyReason } from './readiness.js';
import { StandaloneLease } from './standalone-lease.js';

export interface StandaloneWorkerOptions extends TaskSettings {
  nc: NatsConnection;
  job: JobSpec;
  /** This replica's id: the lease holder and the checkpoints' worker (default `<host>-<pid>`). */
  workerId?: string;
  clock: Clock;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Opens a task's RocksDB store (default TaskStore.open); tests inject write faults here. */
  openStore?: (dir: string) => Promise<TaskStore>;
}

export class StandaloneWorker {
  /** Resolves once this replica may no longer run the job version (lease lost, or a task fenced). */
  readonly lost: Promise<KappaError>;

  private constructor(
    private readonly tasks: TaskRunner[],
    private readonly lease: StandaloneLease,
    lost: Promise<KappaError>,
  ) {
    this.lost = lost;
  }

  /** Takes the lease (TaskHeldError when another replica holds it), then starts every partition's task. */
  static async start(options: StandaloneWorkerOptions): Promise<StandaloneWorker> {
    const { nc, job, logger } = options;
    const workerId = options.workerId ?? `${hostname()}-${process.pid}`;
    let onLost!: (error: KappaError) => void;
    const lost = new Promise<KappaError>((resolve) => (onLost = resolve));
    const lease = await StandaloneLease.acquire({
      nc,
      job: job.name,
      version: job.version,
      workerId,
      onLost,
      onError: (error) => logger.warn({ err: error }, 'standalone lease: renewal failed; retrying'),
    });
    try {
      return new StandaloneWorker(await StandaloneWorker.startTasks(options, workerId, onLost), lease, lost);
    } catch (error) {
      await lease.release();
      throw error;
    }
  }

  private static async startTasks(
    options: StandaloneWorkerOptions,
    workerId: string,
    onLost: (error: KappaError) => void,
  ): Promise<TaskRunner[]> {
    const { nc, job, logger } = options;
    const partitions = await topicPartitions(nc, job.topic);
    const sink = job.sink;
    const sinks = await JobSinks.open(
      nc,
      job,
      isTableSink(sink) ? await openServingTables(sink, nc, tableSettingsFromEnv()) : undefined,
    );
    const checkpointStore = await CheckpointStore.open(nc, { replicas: internalReplicas() });
    // Every checkpoint is read before any task starts: a read that times out leaves nothing running,
    // so kappa worker can retry the whole start.
    const epochs: number[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      const task = { job: job.name, version: job.version, partition };
      // One above the checkpoint's epoch: this claim fences whoever committed it before.
      epochs.push(((await checkpointStore.read(task))?.epoch ?? 0) + 1);
    }
    const tasks: TaskRunner[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      const task = { job: job.name, version: job.version, partition };
      const epoch = epochs[partition]!;
      tasks.push(
        new TaskRunner({
          ...options,
          partition,
          sinks,
          logger: logger.child({ partition }),
          checkpoints: checkpointStore.forTask(task, workerId),
          epoch: () => epoch,
          onFailure: (error) => {
            if (error instanceof FencedError) onLost(error);
          },
        }),
      );
    }
    logger.info({ job: job.name, version: job.version, partitions, workerId }, 'standalone worker started');
    return tasks;
  }

  progress(): TaskProgress[] {
    return this.tasks.map((task) => task.progress());
  }

  /** Why /readyz says not ready (a task restoring, or failed with its error), or undefined. */
  notReadyReason(): string | undefined {
    return notReadyReason(this.tasks.map((task) => ({ task: task.name, state: task.state, error: task.error })));
  }

  /** Stops every task after its current batch, then gives the lease back. */
  async stop(): Promise<void> {
    await Promise.all(this.tasks.map((task) => task.stop()));
    await this.lease.release();
  }
}
