// `kappa coordinator`: one coordinator replica. Run two or more; one leads (KV lease), the rest
// follow and take over within the lease. SIGTERM/SIGINT hands leadership over and exits 0.
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { z } from 'zod';
import { systemClock } from '../../protocol/index.js';
import {
  connectNats,
  createLogger,
  listeningPort,
  serveProcessEndpoints,
  startBehindEndpoints,
  watchConnection,
} from '../../runtime/index.js';
import { DEFAULT_REPARTITION_MAX_AGE_MS } from '../../client/topics.js';
import { DEFAULT_ARCHIVE_INTERVAL_MS } from '../../coordinator/archive-schedule.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { CoordinatorMetrics } from '../../coordinator/metrics.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { retryUntilNatsAnswers } from '../nats-start-up.js';
import { parseViewRequest, readView } from '../../coordinator/views.js';
import { parseDiffRequest, readDiff } from '../../coordinator/version-diff.js';
import { logLevelSetting, port, positiveDuration } from '../setting-values.js';
import { defineSettings } from '../settings.js';
import { natsConnection } from '../nats-options.js';
import { apiTokenOf, apiTokenSettings } from '../api-token.js';

const coordinatorSettings = defineSettings(
  {
    id: {
      flag: '--id <id>',
      env: 'KAPPA_COORDINATOR_ID',
      schema: z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected 1–64 letters, digits, _ or -')
        .default(
          `${hostname()
            .replace(/[^A-Za-z0-9_-]/g, '-')
            .slice(0, 50)}-${process.pid}`,
        ),
      shownDefault: '<host>-<pid>',
      help: 'replica id shown in status and logs',
    },
    httpPort: {
      flag: '--http-port <port>',
      env: 'KAPPA_HTTP_PORT',
      schema: port.default(9465),
      help: 'port for /metrics, /healthz, /readyz, /v1/status; 0 picks one',
    },
    httpHost: {
      flag: '--http-host <host>',
      env: 'KAPPA_HTTP_HOST',
      schema: z.string().default('0.0.0.0'),
      help: 'address to serve HTTP on',
    },
    sessionTimeout: {
      flag: '--session-timeout <duration>',
      env: 'KAPPA_SESSION_TIMEOUT',
      schema: positiveDuration.default(6_000),
      help: 'a worker silent this long is dead and its tasks move',
    },
    leaseTtl: {
      flag: '--lease-ttl <duration>',
      env: 'KAPPA_LEASE_TTL',
      schema: positiveDuration.default(5_000),
      help: 'leader lease; a dead leader is replaced within it',
    },
    repartitionMaxAge: {
      flag: '--repartition-max-age <duration>',
      env: 'KAPPA_REPARTITION_MAX_AGE',
      schema: positiveDuration.default(DEFAULT_REPARTITION_MAX_AGE_MS),
      help: 'age limit of the repartition topics it creates: a routed event no keyed task has purged by then is dropped',
    },
    archiveInterval: {
      flag: '--archive-interval <duration>',
      env: 'KAPPA_ARCHIVE_INTERVAL',
      schema: positiveDuration.default(DEFAULT_ARCHIVE_INTERVAL_MS),
      help: "how often the leader archives the topics with an archive policy ('kappa topic create --archive-after') and applies their hot retention",
    },
    ...apiTokenSettings,
    logLevel: logLevelSetting,
    nats: natsConnection,
  },
  { configFile: true },
);

// Exported for the deployment tests (test/deploy-*.test.ts), which check manifests against these defaults.
export const coordinatorConfig = coordinatorSettings.schema;

export function registerCoordinator(program: Command): void {
  const command = program
    .command('coordinator')
    .description('run a coordinator replica: leader election, worker membership, task assignment, admin API');
  coordinatorSettings.addOptions(command).action(async (flags: Record<string, unknown>) => {
    const settings = coordinatorSettings.load(flags);
    const logger = createLogger({ coordinatorId: settings.id }, settings.logLevel);
    const metrics = new CoordinatorMetrics();
    // HTTP first: a port already in use (a second replica on this host) ends the command at once
    // with a one-line ConfigError (exit 2), before it holds a NATS connection or a leader lease.
    const started: { coordinator?: Coordinator; connection?: ReturnType<typeof watchConnection> } = {};
    const http = await serveProcessEndpoints(settings.httpPort, settings.httpHost, {
      registry: metrics.registry,
      logger,
      apiToken: apiTokenOf(settings),
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
        // GET /v1/diff/<job>?from=V1&to=V2[&key=K][&limit=N]: what V2 changes against V1 (the served version by default).
        '/v1/diff/': async (job, query) => {
          const request = parseDiffRequest(job, query);
          if (!started.coordinator) return { status: 503, body: { error: 'the coordinator is still starting' } };
          const { coordinator } = started;
          const diff = await readDiff(
            {
              status: (name) => coordinator.leaderStatus(name),
              tables: (kind) => coordinator.reprocessing.tables(kind),
              alias: async (name) => (await coordinator.reprocessing.aliases()).get(name),
            },
            request,
          );
          return { status: 200, body: diff };
        },
      },
    });
    // Start-up outlasts a NATS that is down, stalled or electing its JetStream leaders: each step is
    // retried until NATS answers, /readyz not ready meanwhile (nats-start-up.ts).
    const { nc, coordinator } = await startBehindEndpoints(http, async () => {
      const nc = await retryUntilNatsAnswers(logger, 'connecting', () =>
        connectNats({ ...settings.nats, name: `kappa-coordinator-${settings.id}` }),
      );
      const coordinator = await retryUntilNatsAnswers(logger, 'opening the cluster state and leader buckets', () =>
        Coordinator.start({
          nc,
          coordinatorId: settings.id,
          sessionTimeoutMs: settings.sessionTimeout,
          leaseTtlMs: settings.leaseTtl,
          repartitionMaxAgeMs: settings.repartitionMaxAge,
          archiveIntervalMs: settings.archiveInterval,
          clock: systemClock,
          logger,
          metrics,
        }),
      ).catch(async (error: unknown) => {
        await nc.close();
        throw error;
      });
      return { nc, coordinator };
    });
    started.connection = watchConnection(nc);
    started.coordinator = coordinator;
    logger.info(
      {
        httpPort: listeningPort(http, settings.httpPort),
        sessionTimeoutMs: settings.sessionTimeout,
        leaseTtlMs: settings.leaseTtl,
      },
      'coordinator started: serving /metrics, /healthz, /readyz, /v1/status, /v1/views/<job>, /v1/diff/<job>',
    );
    logger.info({ signal: await shutdownSignal() }, 'stopping: resigning leadership');
    await coordinator.stop();
    http.close();
    await nc.drain();
    logger.info('stopped');
  });
}
