// `kappa worker --standalone`: one process consumes every partition of its job's topic, one task
// per partition, without a coordinator. A repartitioned job (README "Keys and partitions") runs
// both of its stages here: a route task per source partition and a keyed task per partition of the
// version's repartition topic, which this process plans and creates as the leader would.
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
import {
  FencedError,
  plannedStages,
  planJob,
  readTopicConfig,
  type JobPlan,
  type KappaError,
  type TopicConfig,
} from '../protocol/index.js';
import { createTopic, TopicNotFoundError } from '../client/topics.js';
import { declarationOf } from './job.js';
import { RouteSink } from './route-sink.js';
import { taskInputOf } from './task-input.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import type { TaskStore } from '../state/task-store.js';
import { notReadyReason } from './readiness.js';
import { StandaloneLease } from './standalone-lease.js';
import { lazyArchiveParts } from './archive-source.js';

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
    const plan = await planStandalone(nc, job);
    const sink = job.sink;
    const sinks = await JobSinks.open(
      nc,
      job,
      isTableSink(sink) ? await openServingTables(sink, nc, tableSettingsFromEnv()) : undefined,
    );
    const checkpointStore = await CheckpointStore.open(nc, { replicas: internalReplicas() });
    const archive = lazyArchiveParts(nc, internalReplicas());
    // Every checkpoint is read before any task starts: a read that times out leaves nothing running,
    // so kappa worker can retry the whole start.
    const planned = plannedStages(plan).flatMap((stage) =>
      Array.from({ length: stage.partitions }, (_, partition) => ({ stage, partition })),
    );
    const epochs: number[] = [];
    for (const { stage, partition } of planned) {
      const task = { job: job.name, version: job.version, partition, ...(stage.stage ? { stage: stage.stage } : {}) };
      // One above the checkpoint's epoch: this claim fences whoever committed it before.
      epochs.push(((await checkpointStore.read(task))?.epoch ?? 0) + 1);
    }
    const tasks: TaskRunner[] = [];
    for (const [index, { stage, partition }] of planned.entries()) {
      const task = { job: job.name, version: job.version, partition, ...(stage.stage ? { stage: stage.stage } : {}) };
      const epoch = epochs[index]!;
      const input = taskInputOf(job, plan, stage.stage);
      tasks.push(
        new TaskRunner({
          ...options,
          partition,
          ...(stage.stage ? { stage: stage.stage } : {}),
          input,
          inputTopic: stage.topic,
          routeSink:
            input.kind === 'route'
              ? await RouteSink.open(nc, input.targetTopic, { index: input.sourceIndex, partition })
              : undefined,
          sinks,
          logger: logger.child({ partition, ...(stage.stage ? { stage: stage.stage } : {}) }),
          checkpoints: checkpointStore.forTask(task, workerId),
          epoch: () => epoch,
          archive,
          onFailure: (error) => {
            if (error instanceof FencedError) onLost(error);
          },
        }),
      );
    }
    logger.info(
      { job: job.name, version: job.version, tasks: tasks.length, repartitioned: plan.repartition !== null, workerId },
      'standalone worker started',
    );
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

/** The job's plan, as the leader would make it, with its repartition topic created. */
async function planStandalone(nc: NatsConnection, job: JobSpec): Promise<JobPlan> {
  const configs = new Map<string, TopicConfig | undefined>();
  for (const source of job.sources) configs.set(source.topic, await readTopicConfig(nc, source.topic));
  const outcome = planJob(job.name, job.version, declarationOf(job), (topic) => configs.get(topic));
  if ('missingTopic' in outcome) throw new TopicNotFoundError(outcome.missingTopic);
  const { plan } = outcome;
  if (plan.repartition)
    await createTopic(nc, {
      name: plan.repartition.topic,
      partitions: plan.repartition.partitions,
      replicas: internalReplicas(),
      internal: true,
    });
  return plan;
}
