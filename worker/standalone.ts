// `kappa worker --standalone`: one process consumes every partition of its job's topic, one task
// per partition, without a coordinator.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { JobSpec } from './job.js';
import type { WorkerMetrics } from './metrics.js';
import { isTableSink, JobSinks } from './sinks.js';
import { openServingTables, tableSettingsFromEnv } from '../tables/index.js';
import { TaskRunner, type TaskProgress } from './task-runner.js';
import { internalReplicas, topicPartitions } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';

export interface StandaloneWorkerOptions {
  nc: NatsConnection;
  job: JobSpec;
  stateDir: string;
  clock: Clock;
  logger: Logger;
  metrics: WorkerMetrics;
  batchMessages?: number;
  checkpointIntervalMs?: number;
  checkpointEvents?: number;
}

/** A standalone worker owns its tasks without a coordinator: epoch 0, under this worker id. */
const STANDALONE_EPOCH = 0;

export class StandaloneWorker {
  private constructor(private readonly tasks: TaskRunner[]) {}

  static async start(options: StandaloneWorkerOptions): Promise<StandaloneWorker> {
    const partitions = await topicPartitions(options.nc, options.job.topic);
    const sink = options.job.sink;
    const sinks = await JobSinks.open(options.nc, options.job, isTableSink(sink) ? await openServingTables(sink, options.nc, tableSettingsFromEnv()) : undefined);
    const checkpointStore = await CheckpointStore.open(options.nc, { replicas: internalReplicas() });
    const { name: job, version } = options.job;
    const tasks: TaskRunner[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      tasks.push(
        new TaskRunner({
          ...options,
          partition,
          sinks,
          logger: options.logger.child({ partition }),
          checkpoints: checkpointStore.forTask({ job, version, partition }, 'standalone'),
          epoch: () => STANDALONE_EPOCH,
        }),
      );
    }
    options.logger.info({ job: options.job.name, version: options.job.version, partitions }, 'standalone worker started');
    return new StandaloneWorker(tasks);
  }

  progress(): TaskProgress[] {
    return this.tasks.map((task) => task.progress());
  }

  /** Stops every task after its current batch. */
  async stop(): Promise<void> {
    await Promise.all(this.tasks.map((task) => task.stop()));
  }
}
