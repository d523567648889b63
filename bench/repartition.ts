// The cost of the repartition hop (README "Keys and partitions"): the same tumbling count per user
// over the same events, once read directly (the job keys by the field the topic records, `user`)
// and once through the repartition stage (the job keys by a function returning the same user, so
// the runtime cannot trust it and repartitions), each as a fresh job version run by one
// `kappa worker` with 2 threads and a coordinator, against the raw AckNone consumer over the same
// streams in the same run. Both tables are checked against a count computed here.
//
// Run: npm run build && npx tsx bench/repartition.ts [events=300000] [partitions=8] [keys=10000]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Producer } from '../client/producer.js';
import { createTopic } from '../client/topics.js';
import { partitionOf, repartitionTopic, streams } from '../protocol/index.js';
import { KvTables } from '../tables/index.js';
import { CLI } from '../test/harness/cli.js';
import { startServer } from '../test/harness/nats-server.js';
import { cpuMeter } from './cpu-meter.js';
import { readRaw } from './raw-consumer.js';
import { clusterStatus, KappaProcesses } from './replay-processes.js';
import { checkTable } from './replay-expected.js';

const totalEvents = Number(process.argv[2] ?? 300_000);
const partitions = Number(process.argv[3] ?? 8);
const keyCount = Number(process.argv[4] ?? 10_000);
const TOPIC = 'clicks';
const WINDOW_MS = 60_000;
const OUT_OF_ORDERNESS_MS = 1_000;

const server = await startServer();
const nc = await connect({ servers: server.url });
const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-hop-'));
const kappa = new KappaProcesses(CLI);
try {
  await createTopic(nc, { name: TOPIC, partitions, key: 'user' });
  const producer = await Producer.forTopic(nc, TOPIC);
  const startMs = Date.UTC(2026, 0, 1);
  const counts = new Map<string, number>();
  const maxTime = new Array<number>(partitions).fill(-Infinity);
  for (let index = 0; index < totalEvents; index++) {
    const time = startMs + index - (index % 7);
    const user = `user-${(index * 7919) % keyCount}`;
    const partition = partitionOf(user, partitions);
    maxTime[partition] = Math.max(maxTime[partition]!, time);
    const row = `${user}.${time - (time % WINDOW_MS)}`;
    counts.set(row, (counts.get(row) ?? 0) + 1);
    if (!producer.publish({ key: user, time, value: { user, ts: time } })) await producer.ready();
  }
  await producer.flush();
  const partitionStreams = Array.from({ length: partitions }, (_, partition) => streams.partition(TOPIC, partition));

  let cpu = cpuMeter({ 'nats-server': server.pid, 'this process': process.pid });
  const rawSeconds = await readRaw(nc, partitionStreams, { expected: totalEvents });
  console.log(`raw AckNone consumer: ${rawSeconds.toFixed(2)} s, ${rate(rawSeconds)} events/s; ${cpu()}`);

  const coordinator = kappa.spawn(['coordinator', '--id', 'c1', '--nats', server.url, '--http-port', '0']);
  await kappa.waitFor(
    'a leader',
    async () => (await clusterStatus(nc)).leader.coordinatorId === 'c1' || undefined,
    30_000,
  );
  const jobs = { direct: jobFile('direct', "'user'"), repartitioned: jobFile('hop', '(click) => click.user') };
  const worker = kappa.spawn([
    'worker',
    '--job',
    jobs.direct,
    '--job',
    jobs.repartitioned,
    '--id',
    'w1',
    '--threads',
    '2',
    '--nats',
    server.url,
    '--state-dir',
    join(dir, 'w1'),
    '--http-port',
    '0',
    '--log-level',
    'warn',
  ]);
  await kappa.waitFor('the worker', async () => (await clusterStatus(nc)).workers.length === 1 || undefined, 30_000);

  const seconds: Record<string, number> = {};
  for (const [name, job] of [
    ['direct', 'direct'],
    ['repartitioned', 'hop'],
  ] as const) {
    cpu = cpuMeter({ 'nats-server': server.pid, worker: worker.pid, coordinator: coordinator.pid });
    const startedAt = performance.now();
    const started = await kappa.run(['start', job, '--version', 'v1', '--nats', server.url]);
    if (started.code !== 0) throw new Error(`kappa start ${job} failed: ${started.logs}`);
    await kappa.waitFor(`${job} caught up`, () => caughtUp(job), 1_800_000, 100);
    seconds[name] = (performance.now() - startedAt) / 1000;
    console.log(`Kappa ${name}: ${seconds[name]!.toFixed(2)} s, ${rate(seconds[name]!)} events/s; ${cpu()}`);
    // Fired windows: direct, by each key's partition watermark; through the hop, by the minimum over all.
    const minimum = Math.min(...maxTime) - OUT_OF_ORDERNESS_MS;
    const fired = new Map(
      [...counts].filter(([row]) => {
        const dot = row.lastIndexOf('.');
        const watermark =
          job === 'hop' ? minimum : maxTime[partitionOf(row.slice(0, dot), partitions)]! - OUT_OF_ORDERNESS_MS;
        return Number(row.slice(dot + 1)) + WINDOW_MS - 1 <= watermark;
      }),
    );
    const mismatches = await checkTable(new KvTables(nc), job, 'v1', fired);
    if (mismatches > 0) {
      console.log(`!!! ${mismatches} rows of ${job} differ from the count !!!`);
      process.exitCode = 1;
    }
  }
  console.log(
    `\nhop cost: repartitioned / direct = ${(seconds.direct! / seconds.repartitioned!).toFixed(2)} of the direct throughput; ` +
      `direct = ${(rawSeconds / seconds.direct!).toFixed(2)}, repartitioned = ${(rawSeconds / seconds.repartitioned!).toFixed(2)} of the raw consumer ` +
      `(${totalEvents.toLocaleString('en')} events, ${partitions} partitions, ${keyCount.toLocaleString('en')} keys, 1 worker × 2 threads, 2 cores shared with nats-server)`,
  );
} finally {
  await kappa.killAll();
  await nc.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}

function rate(seconds: number): string {
  return Math.round(totalEvents / seconds).toLocaleString('en');
}

function jobFile(name: string, key: string): string {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(
    file,
    `export default {
  name: '${name}', version: 'v1', source: { topic: '${TOPIC}' },
  key: ${key}, time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  window: { kind: 'tumbling', size: '${WINDOW_MS}ms' },
  aggregate: { init: () => 0, add: (count) => count + 1 },
};
`,
  );
  return file;
}

/** Every task of the job at the end of its input stream (route tasks first, so the repartition topic is complete). */
async function caughtUp(job: string): Promise<true | undefined> {
  const jsm = await jetstreamManager(nc);
  const tasks = (await clusterStatus(nc)).tasks.filter((task) => task.job === job);
  if (tasks.length === 0) return undefined;
  for (const task of [...tasks].sort((a, b) => (a.stage === undefined ? 1 : 0) - (b.stage === undefined ? 1 : 0))) {
    const topic = task.stage === undefined && job === 'hop' ? repartitionTopic(job, 'v1') : TOPIC;
    const last = (await jsm.streams.info(streams.partition(topic, task.partition))).state.last_seq;
    if (task.sequence !== last) return undefined;
  }
  return true;
}
