// `kappa worker --job FILE --standalone`: runs a job's tasks in this process.
import type { Command } from 'commander';
import { z } from 'zod';
import { ConfigError, connectNats } from '../../protocol/index.js';
import { systemClock } from '../../worker/clock.js';
import { serveHttp } from '../../worker/http.js';
import { loadJob } from '../../worker/job.js';
import { createLogger } from '../../worker/logger.js';
import { WorkerMetrics } from '../../worker/metrics.js';
import { StandaloneWorker } from '../../worker/standalone.js';
import { loadConfig, logLevel, port, positiveInt } from '../config.js';
import { addNatsOptions, natsSettingsFrom, type NatsFlags } from '../nats-options.js';

const workerConfig = z.object({
  job: z.string({ error: 'a job module is required (--job FILE)' }),
  standalone: z.boolean().default(false),
  stateDir: z.string().default('.kappa/state'),
  httpPort: port.default(9464),
  httpHost: z.string().default('0.0.0.0'),
  batch: positiveInt.default(10_000),
  logLevel: logLevel.default('info'),
});

interface WorkerFlags extends NatsFlags {
  job?: string;
  standalone?: boolean;
  stateDir?: string;
  httpPort?: string;
  httpHost?: string;
  batch?: string;
  logLevel?: string;
  config?: string;
}

export function registerWorker(program: Command): void {
  addNatsOptions(
    program
      .command('worker')
      .description('run the tasks of a job (with --standalone: every partition of its topic, no coordinator)')
      .option('--job <file>', 'job module (.mjs/.js) whose default export is the job definition (env KAPPA_JOB)')
      .option('--standalone', 'consume every partition without a coordinator')
      .option('--state-dir <dir>', 'where task state (RocksDB) lives (env KAPPA_STATE_DIR)', undefined)
      .option('--http-port <port>', 'port for /metrics, /healthz, /readyz; 0 picks one (env KAPPA_HTTP_PORT, default 9464)')
      .option('--http-host <host>', 'address to serve HTTP on (env KAPPA_HTTP_HOST, default 0.0.0.0)')
      .option('--batch <n>', 'largest batch of messages a task handles at once (default 10000)')
      .option('--log-level <level>', 'fatal|error|warn|info|debug|trace (env KAPPA_LOG_LEVEL)')
      .option('--config <file>', 'JSON file with any of the settings above (env KAPPA_CONFIG)'),
  ).action(async (flags: WorkerFlags) => {
    const config = loadConfig(workerConfig, {
      file: flags.config ?? process.env.KAPPA_CONFIG,
      env: { job: 'KAPPA_JOB', stateDir: 'KAPPA_STATE_DIR', httpPort: 'KAPPA_HTTP_PORT', httpHost: 'KAPPA_HTTP_HOST', logLevel: 'KAPPA_LOG_LEVEL' },
      flags: { job: flags.job, standalone: flags.standalone, stateDir: flags.stateDir, httpPort: flags.httpPort, httpHost: flags.httpHost, batch: flags.batch, logLevel: flags.logLevel },
    });
    if (!config.standalone) {
      throw new ConfigError('only --standalone is available in this version: the coordinator-driven worker pool is not built yet');
    }
    const job = await loadJob(config.job);
    const logger = createLogger({ job: job.name, version: job.version }, config.logLevel);
    const nc = await connectNats({ ...natsSettingsFrom(flags), name: `kappa-worker-${job.name}-${job.version}` });
    const metrics = new WorkerMetrics();
    const worker = await StandaloneWorker.start({ nc, job, stateDir: config.stateDir, clock: systemClock, logger, metrics, batchMessages: config.batch });
    const http = await serveHttp(config.httpPort, config.httpHost, {
      registry: metrics.registry,
      isReady: () => true,
      status: () => worker.progress(),
    });
    const address = http.address();
    logger.info({ httpPort: typeof address === 'object' && address ? address.port : config.httpPort }, 'serving /metrics, /healthz, /readyz');
    await new Promise<void>((resolve) => {
      const shutdown = (signal: string) => {
        logger.info({ signal }, 'stopping: finishing current batches');
        resolve();
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    });
    await worker.stop();
    http.close();
    await nc.drain();
    logger.info('stopped');
  });
}
