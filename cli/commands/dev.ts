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
      mkdirSync(natsDir, { recursive: true });
      server = new NatsServer(natsDir, (self) =>
        [
          `listen: 127.0.0.1:${self.clientPort > 0 ? self.clientPort : settings.natsPort || -1}`,
          `http: 127.0.0.1:-1`,
          `jetstream { store_dir: "${resolve(natsDir, 'store')}" }`,
        ].join('\n'),
      );
      await server.start();
      url = server.url;
      say(`nats-server ${url} (data in ${natsDir})`);
    }

    const nc = await connectNats({ url, name: 'kappa-dev' });
    // The demo producer keys clicks by user, and so does the demo job: recorded, it reads the topic directly.
    await createTopic(nc, { name: 'clicks', partitions: settings.partitions, key: 'user' });
    say(`topic 'clicks' with ${settings.partitions} partitions`);

    const coordinatorPort = settings.httpPort;
    const processes = [
      new KappaChild('coordinator', [
        'coordinator',
        '--id',
        'dev-coordinator',
        '--nats',
        url,
        '--http-port',
        String(coordinatorPort),
        '--log-level',
        settings.logLevel,
      ]),
    ];
    for (let index = 1; index <= settings.workers; index++) {
      processes.push(
        new KappaChild(`worker-${index}`, [
          'worker',
          '--job',
          DEMO_JOB,
          '--id',
          `dev-worker-${index}`,
          '--threads',
          String(settings.threads),
          '--nats',
          url,
          '--state-dir',
          resolve(dataDir, 'state', `worker-${index}`),
          '--http-port',
          String(coordinatorPort + index),
          '--log-level',
          settings.logLevel,
        ]),
      );
    }
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
