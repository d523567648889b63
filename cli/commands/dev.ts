// `kappa dev`: the whole thing on one machine — a nats-server of its own (data under .kappa/),
// a demo topic, the demo job's workers, and a generated stream of clicks — until Ctrl-C.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { createTopic } from '../../client/topics.js';
import { Producer } from '../../client/producer.js';
import { connectNats } from '../../runtime/index.js';
import { adminRequest } from '../admin-request.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { logLevel, port, positiveInt } from '../setting-values.js';
import { defineSettings } from '../settings.js';
import { demoClick } from '../demo-clicks.js';
import { KappaChild } from '../kappa-child.js';
import { NatsServer } from '../local-nats-server.js';

const DEMO_JOB = resolve(import.meta.dirname, '../../../examples/clicks-per-window.mjs');

const devSettings = defineSettings({
  nats: { flag: '--nats <url>', schema: z.string().optional(), help: 'use this NATS server instead of starting one' },
  dataDir: {
    flag: '--data-dir <dir>',
    schema: z.string().default('.kappa'),
    help: 'where the local nats-server and task state keep their data',
  },
  natsPort: {
    flag: '--nats-port <port>',
    schema: port.default(0),
    shownDefault: 'any free port',
    help: 'client port of the local nats-server',
  },
  rate: { flag: '--rate <events/s>', schema: positiveInt.default(500), help: 'demo events per second' },
  partitions: { flag: '--partitions <n>', schema: positiveInt.default(8), help: 'partitions of the demo topic' },
  workers: { flag: '--workers <n>', schema: positiveInt.default(2), help: 'worker processes' },
  threads: { flag: '--threads <n>', schema: positiveInt.default(1), help: 'threads per worker' },
  httpPort: {
    flag: '--http-port <port>',
    schema: port.default(9464),
    help: "first HTTP port: the coordinator's, then one per worker",
  },
  // Quiet by default (the dev console is for the summary lines); info shows the processes' JSON logs.
  logLevel: {
    flag: '--log-level <level>',
    env: 'KAPPA_LOG_LEVEL',
    schema: logLevel.default('warn'),
    help: "the coordinator's and workers' log level",
  },
});

export function registerDev(program: Command): void {
  const command = program
    .command('dev')
    .description(
      'run Kappa locally: its own nats-server, the demo topic and job, and a stream of demo events (Ctrl-C stops)',
    );
  devSettings.addOptions(command).action(async (flags: Record<string, unknown>) => {
    const settings = devSettings.load(flags);
    const dataDir = resolve(settings.dataDir);
    mkdirSync(dataDir, { recursive: true });
    const say = (line: string) => process.stdout.write(`kappa dev: ${line}\n`);

    let server: NatsServer | undefined;
    let url = settings.nats;
    if (!url) {
      const natsDir = resolve(dataDir, 'nats');
      server = await startLocalNatsServer(natsDir, settings.natsPort);
      url = server.url;
      say(`nats-server ${url} (data in ${natsDir})`);
    }

    const nc = await connectNats({ url, name: 'kappa-dev' });
    // The demo producer keys clicks by user, and so does the demo job: recorded, it reads the topic directly.
    await createTopic(nc, { name: 'clicks', partitions: settings.partitions, key: 'user' });
    say(`topic 'clicks' with ${settings.partitions} partitions`);

    const coordinatorPort = settings.httpPort;
    const processes = startLocalCluster({
      url,
      jobs: [DEMO_JOB],
      workers: settings.workers,
      threads: settings.threads,
      httpPort: coordinatorPort,
      stateDir: resolve(dataDir, 'state'),
      logLevel: settings.logLevel,
      idPrefix: 'dev',
    });
    say(
      `coordinator (http://127.0.0.1:${coordinatorPort}/v1/status) and ${settings.workers} worker(s) with ${settings.threads} thread(s) each`,
    );
    await startDemoJob(url);
    say(`job clicks v1 (examples/clicks-per-window.mjs) started on the workers`);

    const producer = await Producer.forTopic(nc, 'clicks', { producerId: `kappa-dev-${Date.now()}` });
    let sequence = 0;
    const tickMs = 100;
    const generator = setInterval(() => {
      const perTick = Math.max(1, Math.round((settings.rate * tickMs) / 1000));
      const now = Date.now();
      for (let index = 0; index < perTick; index++) producer.publish(demoClick(sequence++, now));
    }, tickMs);

    say(`producing ~${settings.rate} clicks/s. Try, in another terminal:`);
    say(`  node dist/cli/main.js view clicks --nats ${url}          # the serving table`);
    say(`  node dist/cli/main.js status --nats ${url}                # leader, workers, tasks, lag`);
    say(`  node dist/cli/main.js topic describe clicks --nats ${url}`);
    say(`  curl -s http://127.0.0.1:${coordinatorPort + 1}/metrics | grep kappa_   # worker 1's metrics`);
    say('Ctrl-C stops everything.');

    await shutdownSignal();
    say('stopping');
    clearInterval(generator);
    await producer.flush().catch(() => undefined);
    // Workers first (they hand their tasks back), then the coordinator.
    await Promise.all(processes.slice(1).map((child) => child.stop()));
    await processes[0]!.stop();
    await nc.drain();
    await server?.stop();
    say(`stopped after ${sequence} events`);
  });
}

/** Starts a nats-server with JetStream, its store and logs under `natsDir`, on `clientPort` (0: any free port). */
export async function startLocalNatsServer(natsDir: string, clientPort: number): Promise<NatsServer> {
  mkdirSync(natsDir, { recursive: true });
  const server = new NatsServer(
    natsDir,
    (self) =>
      [
        `listen: 127.0.0.1:${self.clientPort > 0 ? self.clientPort : clientPort || -1}`,
        `http: 127.0.0.1:-1`,
        `jetstream { store_dir: "${resolve(natsDir, 'store')}" }`,
      ].join('\n'),
    // A server left behind by a killed parent would hold its ports and store.
    { dieWithParent: true },
  );
  await server.start();
  return server;
}

export interface LocalCluster {
  url: string;
  /** The job modules every worker carries. */
  jobs: readonly string[];
  workers: number;
  threads: number;
  /** The coordinator's HTTP port, then one per worker (0: each any free port). */
  httpPort: number;
  /** Each worker's task state goes under `<stateDir>/worker-<n>`. */
  stateDir: string;
  logLevel: string;
  /** Process ids are `<idPrefix>-coordinator` and `<idPrefix>-worker-<n>`. */
  idPrefix: string;
  /** More flags for every worker. */
  workerFlags?: readonly string[];
}

/** A coordinator and `workers` workers as child processes: the coordinator first, then the workers. */
export function startLocalCluster(cluster: LocalCluster): KappaChild[] {
  const portOf = (index: number) => String(cluster.httpPort === 0 ? 0 : cluster.httpPort + index);
  const common = ['--nats', cluster.url, '--log-level', cluster.logLevel];
  const processes = [
    new KappaChild('coordinator', [
      'coordinator',
      '--id',
      `${cluster.idPrefix}-coordinator`,
      '--http-port',
      portOf(0),
      ...common,
    ]),
  ];
  for (let index = 1; index <= cluster.workers; index++) {
    processes.push(
      new KappaChild(`worker-${index}`, [
        'worker',
        ...cluster.jobs.flatMap((job) => ['--job', job]),
        '--id',
        `${cluster.idPrefix}-worker-${index}`,
        '--threads',
        String(cluster.threads),
        '--state-dir',
        resolve(cluster.stateDir, `worker-${index}`),
        '--http-port',
        portOf(index),
        ...(cluster.workerFlags ?? []),
        ...common,
      ]),
    );
  }
  return processes;
}

/** Starts the demo job version once a coordinator leads (adminRequest waits up to 30 s for one to be elected). */
async function startDemoJob(url: string): Promise<void> {
  await adminRequest({ nats: url, leaderTimeout: 30_000 }, 'start', {
    type: 'job.start',
    job: 'clicks',
    version: 'v1',
    topic: 'clicks',
    from: { kind: 'earliest' },
  });
}
