// `kappa worker --job FILE [--job FILE2 …]`: a worker pool of T threads that runs the tasks a
// coordinator assigns. With --standalone: one job's every partition in this process, no coordinator.
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { z } from 'zod';
import { assertName, ConfigError, connectNats, createLogger, listeningPort, serveProcessEndpoints, startBehindEndpoints, watchConnection } from '../../protocol/index.js';
import { systemClock } from '../../protocol/clock.js';
import { loadJob } from '../../worker/job.js';
import { WorkerMetrics } from '../../worker/metrics.js';
import { WorkerPool } from '../../worker/pool.js';
import { StandaloneWorker } from '../../worker/standalone.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { byteSize, duration, loadConfig, logLevel, port, positiveInt } from '../config.js';
import { DEFAULT_CHECKPOINT_INTERVAL_MS } from '../../worker/task-runner.js';
import { DEFAULT_JOB_STREAM_LIMITS, ensureJobStreams, type JobStreamLimits } from '../../worker/job-streams.js';
import { addNatsOptions, natsSettingsFrom, type NatsFlags } from '../nats-options.js';

// Exported for the deployment tests (test/deploy-*.test.ts), which check manifests against these defaults.
export const workerConfig = z.object({
  // Several --job flags, a JSON array, or a comma-separated KAPPA_JOB.
  job: z
    .union([z.string(), z.array(z.string())], { error: 'a job module is required (--job FILE)' })
    .transform((value) => (Array.isArray(value) ? value : value.split(',')).map((file) => file.trim()).filter(Boolean))
    .refine((files) => files.length > 0, 'a job module is required (--job FILE)'),
  standalone: z.boolean().default(false),
  threads: positiveInt.default(availableParallelism()),
  id: z.string().optional(),
  stateDir: z.string().default('.kappa/state'),
  httpPort: port.default(9464),
  httpHost: z.string().default('0.0.0.0'),
  batch: positiveInt.default(10_000),
  checkpointInterval: duration.default(DEFAULT_CHECKPOINT_INTERVAL_MS),
  checkpointEvents: positiveInt.optional(),
  // Limits of the shared dead-letter, late-data and output streams (worker/job-streams.ts); 0 is none.
  dlqMaxAge: duration.default(DEFAULT_JOB_STREAM_LIMITS.deadLetter.maxAgeMs),
  dlqMaxBytes: byteSize.default(DEFAULT_JOB_STREAM_LIMITS.deadLetter.maxBytes),
  lateMaxAge: duration.default(DEFAULT_JOB_STREAM_LIMITS.lateData.maxAgeMs),
  lateMaxBytes: byteSize.default(DEFAULT_JOB_STREAM_LIMITS.lateData.maxBytes),
  outputMaxAge: duration.default(DEFAULT_JOB_STREAM_LIMITS.output.maxAgeMs),
  outputMaxBytes: byteSize.default(DEFAULT_JOB_STREAM_LIMITS.output.maxBytes),
  logLevel: logLevel.default('info'),
});

interface WorkerFlags extends NatsFlags {
  job?: string[];
  standalone?: boolean;
  threads?: string;
  id?: string;
  stateDir?: string;
  httpPort?: string;
  httpHost?: string;
  batch?: string;
  checkpointInterval?: string;
  checkpointEvents?: string;
  dlqMaxAge?: string;
  dlqMaxBytes?: string;
  lateMaxAge?: string;
  lateMaxBytes?: string;
  outputMaxAge?: string;
  outputMaxBytes?: string;
  logLevel?: string;
  config?: string;
}

export function registerWorker(program: Command): void {
  addNatsOptions(
    program
      .command('worker')
      .description('run the tasks of a job (with --standalone: every partition of its topic, no coordinator)')
      .option('--job <file>', 'job module (.mjs/.js) whose default export is the job definition; repeat for several (env KAPPA_JOB, comma-separated)', collect)
      .option('--standalone', 'consume every partition of one job without a coordinator')
      .option('--threads <n>', 'task threads, i.e. the capacity reported to the coordinator (env KAPPA_THREADS, default: cores)')
      .option('--id <id>', 'worker id, stable across restarts for sticky assignment; with --standalone, a restart under the same id takes its lease over at once (env KAPPA_WORKER_ID, default <host>-<pid>)')
      .option('--state-dir <dir>', 'where task state (RocksDB) lives (env KAPPA_STATE_DIR)', undefined)
      .option('--http-port <port>', 'port for /metrics, /healthz, /readyz; 0 picks one (env KAPPA_HTTP_PORT, default 9464)')
      .option('--http-host <host>', 'address to serve HTTP on (env KAPPA_HTTP_HOST, default 0.0.0.0)')
      .option('--batch <n>', 'largest batch of messages a task handles at once (default 10000)')
      .option('--checkpoint-interval <duration>', "checkpoint every task at least this often, e.g. '10s' (env KAPPA_CHECKPOINT_INTERVAL, default 10s)")
      .option('--checkpoint-events <n>', 'also checkpoint a task after this many events (env KAPPA_CHECKPOINT_EVENTS)')
      .option('--dlq-max-age <duration>', "keep dead letters this long, 0 for ever (env KAPPA_DLQ_MAX_AGE, default 7d)")
      .option('--dlq-max-bytes <size>', "keep at most this much of dead letters, oldest dropped first, 0 for no bound (env KAPPA_DLQ_MAX_BYTES, default 1GiB)")
      .option('--late-max-age <duration>', 'keep late records this long (env KAPPA_LATE_MAX_AGE, default 7d)')
      .option('--late-max-bytes <size>', 'keep at most this much of late records (env KAPPA_LATE_MAX_BYTES, default 1GiB)')
      .option('--output-max-age <duration>', "keep the 'stream' sink's outputs this long (env KAPPA_OUTPUT_MAX_AGE, default 1d)")
      .option('--output-max-bytes <size>', "keep at most this much of the 'stream' sink's outputs (env KAPPA_OUTPUT_MAX_BYTES, default 1GiB)")
      .option('--log-level <level>', 'fatal|error|warn|info|debug|trace (env KAPPA_LOG_LEVEL)')
      .option('--config <file>', 'JSON file with any of the settings above (env KAPPA_CONFIG)'),
  ).action(async (flags: WorkerFlags) => {
    const config = loadConfig(workerConfig, {
      file: flags.config ?? process.env.KAPPA_CONFIG,
      env: {
        job: 'KAPPA_JOB', threads: 'KAPPA_THREADS', id: 'KAPPA_WORKER_ID', stateDir: 'KAPPA_STATE_DIR', httpPort: 'KAPPA_HTTP_PORT', httpHost: 'KAPPA_HTTP_HOST', logLevel: 'KAPPA_LOG_LEVEL', checkpointInterval: 'KAPPA_CHECKPOINT_INTERVAL', checkpointEvents: 'KAPPA_CHECKPOINT_EVENTS',
        dlqMaxAge: 'KAPPA_DLQ_MAX_AGE', dlqMaxBytes: 'KAPPA_DLQ_MAX_BYTES', lateMaxAge: 'KAPPA_LATE_MAX_AGE', lateMaxBytes: 'KAPPA_LATE_MAX_BYTES', outputMaxAge: 'KAPPA_OUTPUT_MAX_AGE', outputMaxBytes: 'KAPPA_OUTPUT_MAX_BYTES',
      },
      flags: {
        job: flags.job, standalone: flags.standalone, threads: flags.threads, id: flags.id, stateDir: flags.stateDir, httpPort: flags.httpPort, httpHost: flags.httpHost, batch: flags.batch, logLevel: flags.logLevel, checkpointInterval: flags.checkpointInterval, checkpointEvents: flags.checkpointEvents,
        dlqMaxAge: flags.dlqMaxAge, dlqMaxBytes: flags.dlqMaxBytes, lateMaxAge: flags.lateMaxAge, lateMaxBytes: flags.lateMaxBytes, outputMaxAge: flags.outputMaxAge, outputMaxBytes: flags.outputMaxBytes,
      },
    });
    if (!config.standalone) {
      await runPool(config, flags);
      return;
    }
    if (config.job.length !== 1) throw new ConfigError(`--standalone runs one job, found ${config.job.length} (--job given more than once)`);
    const job = await loadJob(config.job[0]!);
    const logger = createLogger({ job: job.name, version: job.version }, config.logLevel);
    const metrics = new WorkerMetrics();
    // HTTP first: a port already in use ends the command at once with a one-line ConfigError
    // (exit 2), before it holds a NATS connection or task threads.
    const started: { worker?: StandaloneWorker } = {};
    const http = await serveProcessEndpoints(config.httpPort, config.httpHost, {
      registry: metrics.registry,
      logger,
      isReady: () => started.worker !== undefined,
      notReadyReason: () => started.worker?.notReadyReason(),
      json: { '/status': () => started.worker?.progress() },
    });
    const { nc, worker } = await startBehindEndpoints(http, async () => {
      const nc = await connectNats({ ...natsSettingsFrom(flags), name: `kappa-worker-${job.name}-${job.version}` });
      await applyJobStreamLimits(nc, config, logger);
      const worker = await StandaloneWorker.start({
        nc,
        job,
        workerId: workerIdOf(config),
        stateDir: config.stateDir,
        clock: systemClock,
        logger,
        metrics,
        batchMessages: config.batch,
        checkpointIntervalMs: config.checkpointInterval,
        checkpointEvents: config.checkpointEvents,
      }).catch(async (error: unknown) => {
        // Refused (another replica holds the job version) or failed: nothing may keep the process up.
        await nc.close();
        throw error;
      });
      return { nc, worker };
    });
    started.worker = worker;
    logger.info({ httpPort: listeningPort(http, config.httpPort) }, 'serving /metrics, /healthz, /readyz');
    // A replica that lost its lease or was fenced by a newer one stops too, and exits non-zero.
    const stopping = await Promise.race([shutdownSignal().then((signal) => ({ signal })), worker.lost.then((error) => ({ error }))]);
    if ('error' in stopping) logger.error({ err: stopping.error }, 'stopping: this replica may no longer run the job version');
    else logger.info({ signal: stopping.signal }, 'stopping: finishing current batches');
    await worker.stop();
    http.close();
    await nc.drain();
    logger.info('stopped');
    if ('error' in stopping) throw stopping.error;
  });
}

/** `--id`, or `<host>-<pid>`: a pool worker's id in the cluster, a standalone worker's lease holder. */
function workerIdOf(config: WorkerConfig): string {
  const workerId = config.id ?? `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(-64);
  assertName('worker id', workerId);
  return workerId;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

type WorkerConfig = z.infer<typeof workerConfig>;

/**
 * Creates the shared job streams or brings their limits to this worker's settings, before any task
 * starts (a task only makes sure they exist). Workers with different settings move the limits each
 * time one starts: give every worker the same ones.
 */
async function applyJobStreamLimits(nc: NatsConnection, config: WorkerConfig, logger: Logger): Promise<void> {
  const limits: JobStreamLimits = {
    deadLetter: { maxAgeMs: config.dlqMaxAge, maxBytes: config.dlqMaxBytes },
    lateData: { maxAgeMs: config.lateMaxAge, maxBytes: config.lateMaxBytes },
    output: { maxAgeMs: config.outputMaxAge, maxBytes: config.outputMaxBytes },
  };
  for (const change of await ensureJobStreams(nc, limits)) {
    logger.info(change, change.change === 'created' ? 'job stream created' : 'job stream limits changed');
  }
}

/** The coordinator-driven worker: a pool of task threads, until SIGTERM/SIGINT releases every task. */
async function runPool(config: WorkerConfig, flags: WorkerFlags): Promise<void> {
  const workerId = workerIdOf(config);
  const jobFiles = config.job.map((file) => resolve(file));
  const jobs = [];
  for (const file of jobFiles) jobs.push(await loadJob(file));
  const versions = new Set<string>();
  for (const job of jobs) {
    const key = `${job.name}/${job.version}`;
    if (versions.has(key)) throw new ConfigError(`job ${job.name} version ${job.version} is defined by more than one --job module`);
    versions.add(key);
  }
  const logger = createLogger({ workerId }, config.logLevel);
  // HTTP first, so the first registration can carry its URL, and a port already in use ends the
  // command at once (one-line ConfigError, exit 2) before it holds a NATS connection; until the
  // pool exists it is not ready.
  const started: { pool?: WorkerPool; connection?: ReturnType<typeof watchConnection> } = {};
  const http = await serveProcessEndpoints(config.httpPort, config.httpHost, {
    registry: { metrics: () => started.pool?.metrics.metrics() ?? Promise.resolve(''), contentType: Registry.PROMETHEUS_CONTENT_TYPE },
    logger,
    // Ready: connected, and every assigned task restored and consuming.
    isReady: () => (started.connection?.connected ?? false) && (started.pool?.isReady() ?? false),
    notReadyReason: () => started.pool?.notReadyReason(),
    notLiveReason: () => started.pool?.notLiveReason(),
    json: { '/status': () => started.pool?.status() },
  });
  const nats = natsSettingsFrom(flags);
  const nc = await startBehindEndpoints(http, async () => {
    const nc = await connectNats({ ...nats, name: `kappa-worker-${workerId}` });
    await applyJobStreamLimits(nc, config, logger);
    return nc;
  });
  started.connection = watchConnection(nc);
  const httpPort = listeningPort(http, config.httpPort);
  const httpHost = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? hostname() : config.httpHost;
  const pool = new WorkerPool({
    nc,
    nats,
    workerId,
    threads: config.threads,
    jobFiles,
    carries: jobs.map((job) => ({ job: job.name, version: job.version, topic: job.topic, sink: job.sink })),
    stateDir: resolve(config.stateDir),
    batchMessages: config.batch,
    checkpointIntervalMs: config.checkpointInterval,
    checkpointEvents: config.checkpointEvents,
    logLevel: config.logLevel,
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
