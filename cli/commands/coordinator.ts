// `kappa coordinator`: one coordinator replica. Run two or more; one leads (KV lease), the rest
// follow and take over within the lease. SIGTERM/SIGINT hands leadership over and exits 0.
import { hostname } from 'node:os';
import type { Command } from 'commander';
import ms from 'ms';
import { z } from 'zod';
import { connectNats, createLogger, listeningPort, serveProcessEndpoints, startBehindEndpoints, systemClock, watchConnection } from '../../protocol/index.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { CoordinatorMetrics } from '../../coordinator/metrics.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { parseViewRequest, readView } from '../../coordinator/views.js';
import { loadConfig, logLevel, port } from '../config.js';
import { addNatsOptions, natsSettingsFrom, type NatsFlags } from '../nats-options.js';

/** A duration flag: milliseconds or '6s', '1m'. */
const durationMs = z.union([z.number(), z.string()]).transform((value, context) => {
  const parsed = typeof value === 'number' ? value : /^\d+$/.test(value) ? Number(value) : (ms(value as ms.StringValue) as number | undefined);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed <= 0) {
    context.addIssue({ code: 'custom', message: `expected a duration such as 6000 or '6s', found ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return parsed;
});

// Exported for the deployment tests (test/deploy-*.test.ts), which check manifests against these defaults.
export const coordinatorConfig = z.object({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected 1–64 letters, digits, _ or -').default(`${hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 50)}-${process.pid}`),
  httpPort: port.default(9465),
  httpHost: z.string().default('0.0.0.0'),
  sessionTimeout: durationMs.default(6_000),
  leaseTtl: durationMs.default(5_000),
  logLevel: logLevel.default('info'),
});

interface CoordinatorFlags extends NatsFlags {
  id?: string;
  httpPort?: string;
  httpHost?: string;
  sessionTimeout?: string;
  leaseTtl?: string;
  logLevel?: string;
  config?: string;
}

export function registerCoordinator(program: Command): void {
  addNatsOptions(
    program
      .command('coordinator')
      .description('run a coordinator replica: leader election, worker membership, task assignment, admin API')
      .option('--id <id>', 'replica id shown in status and logs (env KAPPA_COORDINATOR_ID, default <host>-<pid>)')
      .option('--http-port <port>', 'port for /metrics, /healthz, /readyz, /v1/status; 0 picks one (env KAPPA_HTTP_PORT, default 9465)')
      .option('--http-host <host>', 'address to serve HTTP on (env KAPPA_HTTP_HOST, default 0.0.0.0)')
      .option('--session-timeout <duration>', 'a worker silent this long is dead and its tasks move (env KAPPA_SESSION_TIMEOUT, default 6s)')
      .option('--lease-ttl <duration>', 'leader lease; a dead leader is replaced within it (env KAPPA_LEASE_TTL, default 5s)')
      .option('--log-level <level>', 'fatal|error|warn|info|debug|trace (env KAPPA_LOG_LEVEL)')
      .option('--config <file>', 'JSON file with any of the settings above (env KAPPA_CONFIG)'),
  ).action(async (flags: CoordinatorFlags) => {
    const config = loadConfig(coordinatorConfig, {
      file: flags.config ?? process.env.KAPPA_CONFIG,
      env: {
        id: 'KAPPA_COORDINATOR_ID',
        httpPort: 'KAPPA_HTTP_PORT',
        httpHost: 'KAPPA_HTTP_HOST',
        sessionTimeout: 'KAPPA_SESSION_TIMEOUT',
        leaseTtl: 'KAPPA_LEASE_TTL',
        logLevel: 'KAPPA_LOG_LEVEL',
      },
      flags: {
        id: flags.id,
        httpPort: flags.httpPort,
        httpHost: flags.httpHost,
        sessionTimeout: flags.sessionTimeout,
        leaseTtl: flags.leaseTtl,
        logLevel: flags.logLevel,
      },
    });
    const logger = createLogger({ coordinatorId: config.id }, config.logLevel);
    const metrics = new CoordinatorMetrics();
    // HTTP first: a port already in use (a second replica on this host) ends the command at once
    // with a one-line ConfigError (exit 2), before it holds a NATS connection or a leader lease.
    const started: { coordinator?: Coordinator; connection?: ReturnType<typeof watchConnection> } = {};
    const http = await serveProcessEndpoints(config.httpPort, config.httpHost, {
      registry: metrics.registry,
      logger,
      // Ready: connected, and leading (state loaded) or following a leader it knows.
      isReady: () => (started.connection?.connected ?? false) && (started.coordinator?.isReady() ?? false),
      json: { '/v1/status': () => started.coordinator?.status() },
      // GET /v1/views/<job>?key=K[&version=V] or ?limit=N&after=C: the rows apps read, through the job's alias.
      jsonPrefix: {
        '/v1/views/': async (job, query) => {
          const request = parseViewRequest(job, query);
          if (!started.coordinator) return { status: 503, body: { error: 'the coordinator is still starting' } };
          return readView(started.coordinator.reprocessing, request);
        },
      },
    });
    const { nc, coordinator } = await startBehindEndpoints(http, async () => {
      const nc = await connectNats({ ...natsSettingsFrom(flags), name: `kappa-coordinator-${config.id}` });
      const coordinator = await Coordinator.start({
        nc,
        coordinatorId: config.id,
        sessionTimeoutMs: config.sessionTimeout,
        leaseTtlMs: config.leaseTtl,
        clock: systemClock,
        logger,
        metrics,
      });
      return { nc, coordinator };
    });
    started.connection = watchConnection(nc);
    started.coordinator = coordinator;
    logger.info(
      { httpPort: listeningPort(http, config.httpPort), sessionTimeoutMs: config.sessionTimeout, leaseTtlMs: config.leaseTtl },
      'coordinator started: serving /metrics, /healthz, /readyz, /v1/status, /v1/views/<job>',
    );
    logger.info({ signal: await shutdownSignal() }, 'stopping: resigning leadership');
    await coordinator.stop();
    http.close();
    await nc.drain();
    logger.info('stopped');
  });
}
