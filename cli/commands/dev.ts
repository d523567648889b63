// `kappa dev`: the whole thing on one machine — a nats-server of its own (data under .kappa/),
// a demo topic, the demo job's workers, and a generated stream of clicks — until Ctrl-C.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { createTopic } from '../../client/topics.js';
import { Producer } from '../../client/producer.js';
import { connectNats, NoLeaderError } from '../../protocol/index.js';
import { adminRequest } from '../admin-request.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { loadConfig, port, positiveInt } from '../config.js';
import { demoClick } from '../demo-clicks.js';
import { KappaChild } from '../kappa-child.js';
import { NatsServer } from '../local-nats-server.js';

const DEMO_JOB = resolve(import.meta.dirname, '../../../examples/clicks-per-window.mjs');

const devConfig = z.object({
  nats: z.string().optional(),
  dataDir: z.string().default('.kappa'),
  natsPort: port.default(0),
  rate: positiveInt.default(500),
  partitions: positiveInt.default(8),
  workers: positiveInt.default(2),
  threads: positiveInt.default(1),
  httpPort: port.default(9464),
});

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('run Kappa locally: its own nats-server, the demo topic and job, and a stream of demo events (Ctrl-C stops)')
    .option('--nats <url>', 'use this NATS server instead of starting one')
    .option('--data-dir <dir>', 'where the local nats-server and task state keep their data (default .kappa)')
    .option('--nats-port <port>', 'client port of the local nats-server (default: any free port)')
    .option('--rate <events/s>', 'demo events per second (default 500)')
    .option('--partitions <n>', 'partitions of the demo topic (default 8)')
    .option('--workers <n>', 'worker processes (default 2)')
    .option('--threads <n>', 'threads per worker (default 1)')
    .option('--http-port <port>', "first HTTP port: the coordinator's, then one per worker (default 9464)")
    .action(async (flags: Record<string, string | undefined>) => {
      const config = loadConfig(devConfig, { env: {}, flags });
      const dataDir = resolve(config.dataDir);
      mkdirSync(dataDir, { recursive: true });
      const say = (line: string) => process.stdout.write(`kappa dev: ${line}\n`);

      let server: NatsServer | undefined;
      let url = config.nats;
      if (!url) {
        const natsDir = resolve(dataDir, 'nats');
        mkdirSync(natsDir, { recursive: true });
        server = new NatsServer(natsDir, (self) =>
          [`listen: 127.0.0.1:${self.clientPort > 0 ? self.clientPort : config.natsPort || -1}`, `http: 127.0.0.1:-1`, `jetstream { store_dir: "${resolve(natsDir, 'store')}" }`].join('\n'),
        );
        await server.start();
        url = server.url;
        say(`nats-server ${url} (data in ${natsDir})`);
      }

      const nc = await connectNats({ url, name: 'kappa-dev' });
      await createTopic(nc, { name: 'clicks', partitions: config.partitions });
      say(`topic 'clicks' with ${config.partitions} partitions`);

      const coordinatorPort = config.httpPort;
      // Quiet by default (the dev console is for the summary lines); KAPPA_LOG_LEVEL=info shows the processes' JSON logs.
      const logLevel = process.env.KAPPA_LOG_LEVEL ?? 'warn';
      const processes = [
        new KappaChild('coordinator', ['coordinator', '--id', 'dev-coordinator', '--nats', url, '--http-port', String(coordinatorPort), '--log-level', logLevel]),
      ];
      for (let index = 1; index <= config.workers; index++) {
        processes.push(
          new KappaChild(`worker-${index}`, [
            'worker', '--job', DEMO_JOB, '--id', `dev-worker-${index}`, '--threads', String(config.threads), '--nats', url,
            '--state-dir', resolve(dataDir, 'state', `worker-${index}`), '--http-port', String(coordinatorPort + index), '--log-level', logLevel,
          ]),
        );
      }
      say(`coordinator (http://127.0.0.1:${coordinatorPort}/v1/status) and ${config.workers} worker(s) with ${config.threads} thread(s) each`);
      await startDemoJob(url);
      say(`job clicks v1 (examples/clicks-per-window.mjs) started on the workers`);

      const producer = await Producer.forTopic(nc, 'clicks', { producerId: `kappa-dev-${Date.now()}` });
      let sequence = 0;
      const tickMs = 100;
      const generator = setInterval(() => {
        const perTick = Math.max(1, Math.round((config.rate * tickMs) / 1000));
        const now = Date.now();
        for (let index = 0; index < perTick; index++) producer.publish(demoClick(sequence++, now));
      }, tickMs);

      say(`producing ~${config.rate} clicks/s. Try, in another terminal:`);
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

/** Starts the demo job version once a coordinator leads and a worker carries it (retrying meanwhile). */
async function startDemoJob(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await adminRequest({ nats: url }, 'start', { type: 'job.start', job: 'clicks', version: 'v1', topic: 'clicks', from: { kind: 'earliest' } });
      return;
    } catch (error) {
      if (!(error instanceof NoLeaderError) || Date.now() > deadline) throw error;
    }
  }
}
