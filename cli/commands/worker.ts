// `kappa worker --job FILE [--job FILE2 …]`: a worker pool of T threads that runs the tasks a
// coordinator assigns. With --standalone: one job's every partition in this process, no coordinator.
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { z } from 'zod';
import { assertName, ConfigError } from '../../protocol/index.js';
import {
  connectNats,
  createLogger,
  listeningPort,
  serveProcessEndpoints,
  startBehindEndpoints,
  watchConnection,
} from '../../runtime/index.js';
import { systemClock } from '../../protocol/clock.js';
import { declarationOf, loadJob } from '../../worker/job.js';
import { WorkerMetrics } from '../../worker/metrics.js';
import { WorkerPool } from '../../worker/pool.js';
import { StandaloneWorker } from '../../worker/standalone.js';
import { DEFAULT_CHECKPOINT_INTERVAL_MS, type TaskSettings } from '../../worker/task-settings.js';
import { DEFAULT_MAX_BUFFERED_BYTES } from '../../worker/source.js';
import { DEFAULT_WINDOW_MEMORY_ROWS } from '../../worker/window/operator.js';
import { DEFAULT_JOB_STREAM_LIMITS, ensureJobStreams, type JobStreamLimits } from '../../worker/job-streams.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { byteSize, duration, logLevelSetting, port, positiveInt } from '../setting-values.js';
import { defineSettings, type SettingsOf } from '../settings.js';
import { natsConnection } from '../nats-options.js';
import { apiTokenOf, apiTokenSettings } from '../api-token.js';
import { retryUntilNatsAnswers } from '../nats-start-up.js';

const JOB_REQUIRED = 'a job module is required (--job FILE)';
const limits = DEFAULT_JOB_STREAM_LIMITS;

const workerSettings = defineSettings(
  {
    job: {
      flag: '--job <file>',
      env: 'KAPPA_JOB',
      repeatable: true,
      // Several --job flags, a JSON array, or a comma-separated KAPPA_JOB.
      schema: z
        .union([z.string(), z.array(z.string())], { error: JOB_REQUIRED })
        .transform((value) =>
          (Array.isArray(value) ? value : value.split(',')).map((file) => file.trim()).filter(Boolean),
        )
        .refine((files) => files.length > 0, JOB_REQUIRED),
      help: 'job module (.mjs/.js) whose default export is the job definition; repeat for several, or list them comma-separated in the env variable',
    },
    standalone: {
      flag: '--standalone',
      schema: z.boolean().default(false),
      help: 'consume every partition of one job without a coordinator',
    },
    threads: {
      flag: '--threads <n>',
      env: 'KAPPA_THREADS',
      schema: positiveInt.default(availableParallelism()),
      shownDefault: 'cores',
      help: 'task threads, i.e. the capacity reported to the coordinator',
    },
    threadYoungGeneration: {
      flag: '--thread-young-generation <mb>',
      env: 'KAPPA_THREAD_YOUNG_GENERATION_MB',
      schema: positiveInt.default(96),
      help: "MB of each task thread's young heap generation: a replay allocates fast, and a larger one halves the time spent collecting garbage (bench/README.md)",
    },
    threadHeap: {
      flag: '--thread-heap <mb>',
      env: 'KAPPA_THREAD_HEAP_MB',
      schema: positiveInt.optional(),
      shownDefault: "V8's, from the machine's memory",
      help: "MB of each task thread's old heap generation: set it so that threads × this fits the container's memory limit with room for RocksDB; open windows spill to RocksDB when half of it is live",
    },
    id: {
      flag: '--id <id>',
      env: 'KAPPA_WORKER_ID',
      schema: z.string().optional(),
      shownDefault: '<host>-<pid>',
      help: 'worker id, stable across restarts for sticky assignment; with --standalone, a restart under the same id takes its lease over at once',
    },
    stateDir: {
      flag: '--state-dir <dir>',
      env: 'KAPPA_STATE_DIR',
      schema: z.string().default('.kappa/state'),
      help: 'where task state (RocksDB) lives',
    },
    httpPort: {
      flag: '--http-port <port>',
      env: 'KAPPA_HTTP_PORT',
      schema: port.default(9464),
      help: 'port for /metrics, /healthz, /readyz; 0 picks one',
    },
    httpHost: {
      flag: '--http-host <host>',
      env: 'KAPPA_HTTP_HOST',
      schema: z.string().default('0.0.0.0'),
      help: 'address to serve HTTP on',
    },
    batch: {
      flag: '--batch <n>',
      schema: positiveInt.default(10_000),
      help: 'largest batch of messages a task handles at once',
    },
    maxBufferedBytes: {
      flag: '--max-buffered-bytes <size>',
      env: 'KAPPA_MAX_BUFFERED_BYTES',
      schema: byteSize.refine((bytes) => bytes > 0, 'must be more than 0 bytes').default(DEFAULT_MAX_BUFFERED_BYTES),
      shownDefault: '64MiB',
      help: "bytes of messages a task buffers at most before it stops pulling (a pull asks for a quarter), e.g. '64MiB'",
    },
    checkpointInterval: {
      flag: '--checkpoint-interval <duration>',
      env: 'KAPPA_CHECKPOINT_INTERVAL',
      schema: duration.default(DEFAULT_CHECKPOINT_INTERVAL_MS),
      help: "checkpoint every task at least this often, e.g. '10s'",
    },
    windowMemoryRows: {
      flag: '--window-memory-rows <n>',
      env: 'KAPPA_WINDOW_MEMORY_ROWS',
      schema: positiveInt.default(DEFAULT_WINDOW_MEMORY_ROWS),
      help: 'open window rows (one per key and window) a task keeps in memory; past it, whole windows spill to its scratch RocksDB',
    },
    checkpointEvents: {
      flag: '--checkpoint-events <n>',
      env: 'KAPPA_CHECKPOINT_EVENTS',
      schema: positiveInt.optional(),
      help: 'also checkpoint a task after this many events',
    },
    // Limits of the shared dead-letter, late-data and output streams (worker/job-streams.ts); 0 is none.
    dlqMaxAge: {
      flag: '--dlq-max-age <duration>',
      env: 'KAPPA_DLQ_MAX_AGE',
      schema: duration.default(limits.deadLetter.maxAgeMs),
      help: 'keep dead letters this long, 0 for ever',
    },
    dlqMaxBytes: {
      flag: '--dlq-max-bytes <size>',
      env: 'KAPPA_DLQ_MAX_BYTES',
      schema: byteSize.default(limits.deadLetter.maxBytes),
      help: 'keep at most this much of dead letters, oldest dropped first, 0 for no bound',
    },
    lateMaxAge: {
      flag: '--late-max-age <duration>',
      env: 'KAPPA_LATE_MAX_AGE',
      schema: duration.default(limits.lateData.maxAgeMs),
      help: 'keep late records this long',
    },
    lateMaxBytes: {
      flag: '--late-max-bytes <size>',
      env: 'KAPPA_LATE_MAX_BYTES',
      schema: byteSize.default(limits.lateData.maxBytes),
      help: 'keep at most this much of late records',
    },
    outputMaxAge: {
      flag: '--output-max-age <duration>',
      env: 'KAPPA_OUTPUT_MAX_AGE',
      schema: duration.default(limits.output.maxAgeMs),
      help: "keep the 'stream' sink's outputs this long",
    },
    outputMaxBytes: {
      flag: '--output-max-bytes <size>',
      env: 'KAPPA_OUTPUT_MAX_BYTES',
      schema: byteSize.default(limits.output.maxBytes),
      help: "keep at most this much of the 'stream' sink's outputs",
    },
    ...apiTokenSettings,
    logLevel: logLevelSetting,
    nats: natsConnection,
  },
  { configFile: true },
);

// Exported for the deployment tests (test/deploy-*.test.ts), which check manifests against these defaults.
export const workerConfig = workerSettings.schema;

type WorkerSettings = SettingsOf<typeof workerSettings>;

export function registerWorker(program: Command): void {
  workerSettings
    .addOptions(
      program
        .command('worker')
        .description('run the tasks of a job (with --standalone: every partition of its topic, no coordinator)'),
    )
    .action(async (flags: Record<string, unknown>) => {
      const settings = workerSettings.load(flags);
      await (settings.standalone ? runStandalone(settings) : runPool(settings));
    });
}

/** What every task of this worker runs with, from its settings. */
function taskSettingsOf(settings: WorkerSettings): TaskSettings {
  return {
    stateDir: resolve(settings.stateDir),
    batchMessages: settings.batch,
    maxBufferedBytes: settings.maxBufferedBytes,
    checkpointIntervalMs: settings.checkpointInterval,
    checkpointEvents: settings.checkpointEvents,
    windowMemoryRows: settings.windowMemoryRows,
  };
}

/** `--id`, or `<host>-<pid>`: a pool worker's id in the cluster, a standalone worker's lease holder. */
function workerIdOf(settings: WorkerSettings): string {
  const workerId = settings.id ?? `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(-64);
  assertName('worker id', workerId);
  return workerId;
}

/**
 * Creates the shared job streams or brings their limits to this worker's settings, before any task
 * starts (a task only makes sure they exist). Workers with different settings move the limits each
 * time one starts: give every worker the same ones.
 */
async function applyJobStreamLimits(nc: NatsConnection, settings: WorkerSettings, logger: Logger): Promise<void> {
  const limits: JobStreamLimits = {
    deadLetter: { maxAgeMs: settings.dlqMaxAge, maxBytes: settings.dlqMaxBytes },
    lateData: { maxAgeMs: settings.lateMaxAge, maxBytes: settings.lateMaxBytes },
    output: { maxAgeMs: settings.outputMaxAge, maxBytes: settings.outputMaxBytes },
  };
  for (const change of await ensureJobStreams(nc, limits)) {
    logger.info(change, change.change === 'created' ? 'job stream created' : 'job stream limits changed');
  }
}

/** `--standalone`: every partition of one job in this process, until SIGTERM/SIGINT or a lost lease. */
async function runStandalone(settings: WorkerSettings): Promise<void> {
  if (settings.job.length !== 1)
    throw new ConfigError(`--standalone runs one job, found ${settings.job.length} (--job given more than once)`);
  const job = await loadJob(settings.job[0]!);
  const logger = createLogger({ job: job.name, version: job.version }, settings.logLevel);
  const metrics = new WorkerMetrics();
  // HTTP first: a port already in use ends the command at once with a one-line ConfigError
  // (exit 2), before it holds a NATS connection or task threads.
  const started: { worker?: StandaloneWorker } = {};
  const http = await serveProcessEndpoints(settings.httpPort, settings.httpHost, {
    registry: metrics.registry,
    logger,
    apiToken: apiTokenOf(settings),
    isReady: () => started.worker !== undefined,
    notReadyReason: () => started.worker?.notReadyReason(),
    json: { '/status': () => started.worker?.progress() },
  });
  // Start-up outlasts a NATS that is down, stalled or electing its JetStream leaders: each step is
  // retried until NATS answers, /readyz not ready meanwhile (nats-start-up.ts).
  const { nc, worker } = await startBehindEndpoints(http, async () => {
    const nc = await retryUntilNatsAnswers(logger, 'connecting', () =>
      connectNats({ ...settings.nats, name: `kappa-worker-${job.name}-${job.version}` }),
    );
    const worker = await retryUntilNatsAnswers(logger, 'creating the job streams', () =>
      applyJobStreamLimits(nc, settings, logger),
    )
      .then(() =>
        retryUntilNatsAnswers(logger, 'taking the lease and starting the tasks', () =>
          StandaloneWorker.start({
            ...taskSettingsOf(settings),
            nc,
            job,
            workerId: workerIdOf(settings),
            clock: systemClock,
            logger,
            metrics,
          }),
        ),
      )
      .catch(async (error: unknown) => {
        // Refused (another replica holds the job version) or failed: nothing may keep the process up.
        await nc.close();
        throw error;
      });
    return { nc, worker };
  });
  started.worker = worker;
  logger.info({ httpPort: listeningPort(http, settings.httpPort) }, 'serving /metrics, /healthz, /readyz');
  // A replica that lost its lease or was fenced by a newer one stops too, and exits non-zero.
  const stopping = await Promise.race([
    shutdownSignal().then((signal) => ({ signal })),
    worker.lost.then((error) => ({ error })),
  ]);
  if ('error' in stopping)
    logger.error({ err: stopping.error }, 'stopping: this replica may no longer run the job version');
  else logger.info({ signal: stopping.signal }, 'stopping: finishing current batches');
  await worker.stop();
  http.close();
  await nc.drain();
  logger.info('stopped');
  if ('error' in stopping) throw stopping.error;
}

/** The coordinator-driven worker: a pool of task threads, until SIGTERM/SIGINT releases every task. */
async function runPool(settings: WorkerSettings): Promise<void> {
  const workerId = workerIdOf(settings);
  const jobFiles = settings.job.map((file) => resolve(file));
  const jobs = [];
  for (const file of jobFiles) jobs.push(await loadJob(file));
  const versions = new Set<string>();
  for (const job of jobs) {
    const key = `${job.name}/${job.version}`;
    if (versions.has(key))
      throw new ConfigError(`job ${job.name} version ${job.version} is defined by more than one --job module`);
    versions.add(key);
  }
  const logger = createLogger({ workerId }, settings.logLevel);
  // HTTP first, so the first registration can carry its URL, and a port already in use ends the
  // command at once (one-line ConfigError, exit 2) before it holds a NATS connection; until the
  // pool exists it is not ready.
  const started: { pool?: WorkerPool; connection?: ReturnType<typeof watchConnection> } = {};
  const http = await serveProcessEndpoints(settings.httpPort, settings.httpHost, {
    registry: {
      metrics: () => started.pool?.metrics.metrics() ?? Promise.resolve(''),
      contentType: Registry.PROMETHEUS_CONTENT_TYPE,
    },
    logger,
    apiToken: apiTokenOf(settings),
    // Ready: connected, and every assigned task restored and consuming.
    isReady: () => (started.connection?.connected ?? false) && (started.pool?.isReady() ?? false),
    notReadyReason: () => started.pool?.notReadyReason(),
    notLiveReason: () => started.pool?.notLiveReason(),
    json: { '/status': () => started.pool?.status() },
  });
  // Start-up outlasts a NATS that is down, stalled or electing its JetStream leaders: each step is
  // retried until NATS answers, /readyz not ready meanwhile (nats-start-up.ts).
  const nc = await startBehindEndpoints(http, async () => {
    const nc = await retryUntilNatsAnswers(logger, 'connecting', () =>
      connectNats({ ...settings.nats, name: `kappa-worker-${workerId}` }),
    );
    await retryUntilNatsAnswers(logger, 'creating the job streams', () =>
      applyJobStreamLimits(nc, settings, logger),
    ).catch(async (error: unknown) => {
      await nc.close();
      throw error;
    });
    return nc;
  });
  started.connection = watchConnection(nc);
  const httpPort = listeningPort(http, settings.httpPort);
  const httpHost = settings.httpHost === '0.0.0.0' || settings.httpHost === '::' ? hostname() : settings.httpHost;
  const pool = new WorkerPool({
    nc,
    nats: settings.nats,
    workerId,
    threads: settings.threads,
    threadYoungGenerationMb: settings.threadYoungGeneration,
    ...(settings.threadHeap === undefined ? {} : { threadHeapMb: settings.threadHeap }),
    jobFiles,
    carries: jobs.map((job) => ({
      job: job.name,
      version: job.version,
      topic: job.topic,
      sink: job.sink,
      declaration: declarationOf(job),
      ...(job.sinkTopic ? { sinkTopic: job.sinkTopic.topic } : {}),
    })),
    tasks: taskSettingsOf(settings),
    logLevel: settings.logLevel,
    logger,
    httpUrl: `http://${httpHost}:${httpPort}`,
  });
  started.pool = pool;
  logger.info({ httpPort }, 'serving /metrics, /healthz, /readyz, /status');
  logger.info({ signal: await shutdownSignal() }, 'stopping: releasing every task after its current batch');
  await pool.stop();
  http.close();
  await nc.drain();
  logger.info('stopped');
}
