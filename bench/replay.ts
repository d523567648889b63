// Replay throughput with real processes: a job version started `--from earliest` over events
// already in a topic, run by a `kappa coordinator` and 1 or 2 `kappa worker` processes, against
// the raw NATS AckNone consumer reading the same streams in the same run and DuckDB computing the
// same aggregation over the same events from a file (the batch layer of a Lambda architecture).
// The aggregation: a tumbling 1-minute count per key, into a KV, PostgreSQL or Redis serving
// table. Every replayed table is read back through the backend-neutral `ServingTables` and checked
// against DuckDB's answer. Prints a table (with each backend's time over the KV table's) and saves
// bench/results/replay.svg and .png.
//
// Run: npm run build && npx tsx bench/replay.ts [events=2000000] [partitions=8] [keys=10000]
// Env: REPLAY_CONFIGS=1x1,1x2,2x1 (workers x threads per worker, one fresh job version each);
//      REPLAY_CPU_PROF=DIR writes a V8 CPU profile of every worker process and thread into DIR;
//      REPLAY_CLI=FILE runs the coordinator and workers from another build of dist/cli/main.js.
//      REPLAY_ARCHIVE=1 then seals the whole topic into the archive (segments of 100k events),
//      removes it from the streams, and replays a fresh version per configuration and table from
//      the archive (hybrid replay, issue 17), and DuckDB runs the same GROUP BY over the archive's
//      Parquet segment files (their key and event_time columns).
//      REPLAY_SINKS=kv,postgres,redis (default kv; REPLAY_SINK=… is the one-backend spelling): the
//      serving tables, one fresh job version per configuration and table, all over the same
//      streams; PostgreSQL (a database created for the run) and Redis (keys under the run's own
//      job name) at KAPPA_POSTGRES_URL / KAPPA_REDIS_URL, by default the tests' local servers
//      (replay-backends.ts). `none` runs the job without a table (to see what the table writes
//      cost; nothing to check then).
// CPU seconds per process (Linux /proc, cpu-meter.ts) are printed with each figure: on a small
// machine the nats-server and the workers share the cores.
// This file produces the events and runs each configuration; the `kappa` processes are in
// replay-processes.ts, the PostgreSQL database and Redis keys of the run in replay-backends.ts,
// DuckDB's answer and the table check in replay-expected.ts, the table and the plot in replay-report.ts.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createTopic } from '../client/topics.js';
import { Producer } from '../client/producer.js';
import { partitionOf, streams } from '../protocol/index.js';
import { MAX_PAGE_ROWS } from '../tables/index.js';
import { CLI as BUILT_CLI } from '../test/harness/cli.js';
import { startServer } from '../test/harness/nats-server.js';
import { cpuMeter, type MeasuredProcess } from './cpu-meter.js';
import { readRaw } from './raw-consumer.js';
import { REPLAY_SINKS, ReplayBackends, type ReplaySink } from './replay-backends.js';
import { checkTable, runDuckDb, runDuckDbOnArchive, splitRowId } from './replay-expected.js';
import { archiveWholeTopic } from './replay-archive.js';
import { clusterStatus, KappaProcesses, PartitionProgress, workerTasks } from './replay-processes.js';
import { inReportOrder, printTable, savePlot, SINK_NAMES, type Measurement } from './replay-report.js';

const totalEvents = Number(process.argv[2] ?? 2_000_000);
const partitions = Number(process.argv[3] ?? 8);
const keyCount = Number(process.argv[4] ?? 10_000);
const configs = (process.env.REPLAY_CONFIGS ?? '1x1,1x2,2x1').split(',').map((text) => {
  const [workers, threads] = text.split('x').map(Number);
  if (!workers || !threads)
    throw new Error(`REPLAY_CONFIGS: expected <workers>x<threads>, found ${JSON.stringify(text)}`);
  return { workers, threads };
});
const cpuProfileDir = process.env.REPLAY_CPU_PROF;
const replayArchive = process.env.REPLAY_ARCHIVE === '1';
const sinks = (process.env.REPLAY_SINKS ?? process.env.REPLAY_SINK ?? 'kv').split(',').map((text) => {
  if (!(REPLAY_SINKS as readonly string[]).includes(text))
    throw new Error(`REPLAY_SINKS: expected some of ${REPLAY_SINKS.join(',')}, found ${JSON.stringify(text)}`);
  return text as ReplaySink;
});
// Another build of the CLI (say, a patched copy of dist/) to compare before and after a change.
const CLI = process.env.REPLAY_CLI ?? BUILT_CLI;

const TOPIC = 'clicks';
// Unique to the run: PostgreSQL and Redis are shared, and the job name is the Redis keys' prefix.
const JOB = `replaybench_${process.pid}_${randomBytes(3).toString('hex')}`;
const WINDOW_MS = 60_000;
const OUT_OF_ORDERNESS_MS = 1_000;
/** Rows per page when the bench reads back a KV table (beyond a reader's MAX_PAGE_ROWS, see below). */
const KV_CHECK_PAGE_ROWS = 1_000_000;

if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);

const server = await startServer();
const nc = await connect({ servers: server.url });
const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-replay-'));
const measurements: Measurement[] = [];
let mismatches = 0;
let backends: ReplayBackends | undefined;
let processes: KappaProcesses | undefined;
try {
  const runBackends = (backends = await ReplayBackends.prepare(nc, JOB, sinks));
  const kappa = (processes = new KappaProcesses(CLI, backends.env));
  // Produce the events into the topic and, with the same values, into a CSV file for DuckDB.
  await createTopic(nc, { name: TOPIC, partitions, key: 'user' });
  const producer = await Producer.forTopic(nc, TOPIC);
  const csvFile = join(dir, 'clicks.csv');
  const csv = openSync(csvFile, 'w');
  writeSync(csv, 'user,ts,page\n');
  const startMs = Date.UTC(2026, 0, 1);
  const maxTimePerPartition = new Array<number>(partitions).fill(-Infinity);
  let lines: string[] = [];
  let t = performance.now();
  for (let index = 0; index < totalEvents; index++) {
    // One event per ms of event time, slightly out of order (as bench/engine.ts).
    const time = startMs + index - (index % 7);
    const user = `user-${(index * 7919) % keyCount}`;
    const page = index % 13;
    const partition = partitionOf(user, partitions);
    if (time > maxTimePerPartition[partition]!) maxTimePerPartition[partition] = time;
    lines.push(`${user},${time},${page}\n`);
    if (lines.length === 100_000) {
      writeSync(csv, lines.join(''));
      lines = [];
    }
    if (!producer.publish({ key: user, time, value: { user, ts: time, page } })) await producer.ready();
  }
  writeSync(csv, lines.join(''));
  closeSync(csv);
  await producer.flush();
  console.error(
    `produced ${totalEvents.toLocaleString('en')} events over ${partitions} partitions, ${keyCount.toLocaleString('en')} keys, in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );

  const jsm = await jetstreamManager(nc);
  const partitionStreams = Array.from({ length: partitions }, (_, partition) => streams.partition(TOPIC, partition));
  const lastSequence: number[] = [];
  let stored = 0;
  for (const stream of partitionStreams) {
    const state = (await jsm.streams.info(stream)).state;
    lastSequence.push(state.last_seq);
    stored += state.messages;
  }
  if (stored !== totalEvents) throw new Error(`the topic holds ${stored} events, expected ${totalEvents}`);

  // 1. The raw consumer over the same streams.
  let cpu = cpuMeter({ 'nats-server': server.pid, 'this process (the consumer)': process.pid });
  const rawSeconds = await readRaw(nc, partitionStreams, { expected: totalEvents });
  measurements.push({
    name: 'raw AckNone consumer',
    seconds: rawSeconds,
    note: `${partitions} consumers in one process, batches of 10k, no processing; ${cpu()}`,
  });
  console.error(`raw consumer: ${rawSeconds.toFixed(2)} s`);

  // 2. DuckDB over the same events from a file; the timed query reads and parses the file.
  const expected = await runDuckDb(csvFile, WINDOW_MS, measurements);

  // Only windows the watermark has passed are in a replayed table: end - 1 <= max time - out-of-orderness.
  const fired = new Map<string, number>();
  for (const [row, count] of expected) {
    const [user, start] = splitRowId(row);
    if (start + WINDOW_MS - 1 <= maxTimePerPartition[partitionOf(user, partitions)]! - OUT_OF_ORDERNESS_MS)
      fired.set(row, count);
  }

  // 3. Kappa: a coordinator, then for each configuration fresh worker processes and a fresh job version.
  const coordinator = kappa.spawn([
    'coordinator',
    '--id',
    'c1',
    '--nats',
    server.url,
    '--http-port',
    '0',
    '--http-host',
    '127.0.0.1',
    '--log-level',
    'warn',
  ]);
  await kappa.waitFor(
    'a leading coordinator',
    async () => (await clusterStatus(nc)).leader.coordinatorId === 'c1' || undefined,
    30_000,
  );
  const runs = configs.flatMap((config) => sinks.map((sink) => ({ ...config, sink })));
  for (const [index, run] of runs.entries()) await replayOnce(run, `v${index + 1}`, '');
  if (replayArchive) {
    const files = await archiveWholeTopic(nc, TOPIC, partitions, dir);
    // The same configurations and tables as the live runs, so each has its live counterpart.
    for (const [index, run] of runs.entries()) await replayOnce(run, `v${runs.length + 1 + index}`, ' archive');
    const fromSegments = await runDuckDbOnArchive(files, WINDOW_MS, measurements);
    const differing = [...expected].filter(([row, count]) => fromSegments.get(row) !== count).length;
    if (differing > 0 || fromSegments.size !== expected.size) {
      console.error(`DuckDB over the archive's segments differs from the CSV answer in ${differing} rows`);
      mismatches++;
    }
  }
  await coordinator.stop();

  /** One fresh job version run by fresh workers from earliest to caught up, its table checked. */
  async function replayOnce(
    { workers: workerCount, threads, sink }: { workers: number; threads: number; sink: ReplaySink },
    version: string,
    tier: '' | ' archive',
  ): Promise<void> {
    const jobFile = join(dir, `${JOB}-${version}.mjs`);
    writeFileSync(jobFile, jobModule(version, sink));
    const workerIds = Array.from({ length: workerCount }, (_, worker) => `${version}-w${worker + 1}`);
    const workers = workerIds.map((id) =>
      kappa.spawn(
        [
          'worker',
          '--job',
          jobFile,
          '--id',
          id,
          '--threads',
          String(threads),
          '--nats',
          server.url,
          '--state-dir',
          join(dir, id),
          '--http-port',
          '0',
          '--http-host',
          '127.0.0.1',
          '--log-level',
          'warn',
        ],
        cpuProfileDir ? join(cpuProfileDir, version) : undefined,
      ),
    );
    const urls = await kappa.waitFor(
      `${workerCount} worker(s) registered`,
      async () => {
        const view = await clusterStatus(nc);
        const registered = view.workers.filter((worker) => workerIds.includes(worker.workerId) && worker.httpUrl);
        return registered.length === workerCount ? registered.map((worker) => worker.httpUrl!) : undefined;
      },
      30_000,
    );

    // The table's server shares the cores too (PostgreSQL: the server and its connection processes).
    const tableServer: Record<string, MeasuredProcess> =
      sink === 'postgres' && runBackends.serverPids.postgres !== undefined
        ? { postgres: { withChildren: runBackends.serverPids.postgres } }
        : sink === 'redis' && runBackends.serverPids.redis !== undefined
          ? { 'redis-server': runBackends.serverPids.redis }
          : {};
    cpu = cpuMeter({
      'nats-server': server.pid,
      ...Object.fromEntries(workers.map((worker, index) => [workerIds[index]!, worker.pid])),
      ...tableServer,
      coordinator: coordinator.pid,
      'this process': process.pid,
    });
    t = performance.now();
    const started = await kappa.run(['start', JOB, '--version', version, '--from', 'earliest', '--nats', server.url]);
    if (started.code !== 0) throw new Error(`kappa start failed: ${started.logs}`);
    const startCommandSeconds = (performance.now() - t) / 1000;
    let firstProgressSeconds: number | undefined;
    const progress = new PartitionProgress();
    await kappa.waitFor(
      `${version} caught up`,
      async () => {
        const tasks = (await Promise.all(urls.map(workerTasks)))
          .flat()
          .filter((task) => task.job === JOB && task.version === version);
        if (firstProgressSeconds === undefined && tasks.some((task) => task.sequence > 0))
          firstProgressSeconds = (performance.now() - t) / 1000;
        const done = new Set(
          tasks.filter((task) => task.sequence === lastSequence[task.partition]).map((task) => task.partition),
        );
        for (const task of tasks) progress.see(task.partition, task.sequence);
        return done.size === partitions || undefined;
      },
      1_800_000,
      50,
      () => progress.stalled(lastSequence),
    );
    const seconds = (performance.now() - t) / 1000;
    const name = `Kappa ${workerCount} worker${workerCount > 1 ? 's' : ''} × ${threads} thread${threads > 1 ? 's' : ''}, ${SINK_NAMES[sink]}${tier === '' ? '' : ', from the archive'}`;
    measurements.push({
      name,
      seconds,
      kappa: { config: `${workerCount}x${threads}${tier}`, sink },
      note: `from \`kappa start\` (${startCommandSeconds.toFixed(1)} s) to every task at its partition's last sequence; first progress after ${firstProgressSeconds?.toFixed(1) ?? '?'} s; ${cpu()}`,
    });
    console.error(`${name}: ${seconds.toFixed(2)} s`);

    if (sink !== 'none') {
      // A KV page lists every key name of the table whatever its size (tables/README.md), so pages
      // of MAX_PAGE_ROWS cost rows² / 1,000 names: listing 20k names took 1.1 s on this machine,
      // so ≈ 24 min for the 160k rows of 1M events; in one page, 60 s (mostly one get per row).
      const pageRows = sink === 'kv' ? KV_CHECK_PAGE_ROWS : MAX_PAGE_ROWS;
      mismatches += await checkTable(await runBackends.tables(sink), JOB, version, fired, pageRows);
    }
    const stopped = await kappa.run(['stop', JOB, '--version', version, '--nats', server.url]);
    if (stopped.code !== 0) console.error(`kappa stop ${version} failed: ${stopped.logs}`);
    await Promise.all(workers.map((worker) => worker.stop()));
  }

  const ordered = inReportOrder(measurements);
  const workload = { totalEvents, partitions, keyCount };
  printTable(ordered, workload);
  await savePlot(ordered, workload);
  if (mismatches > 0) {
    console.error(`\n!!! ${mismatches} MISMATCHES between the replayed tables and DuckDB's answer !!!`);
    process.exitCode = 1;
  }
} finally {
  await processes?.killAll();
  // After the processes: the run's PostgreSQL database is dropped, its Redis keys deleted.
  await backends?.close();
  await nc.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}

function jobModule(version: string, sink: ReplaySink): string {
  return `// Written by bench/replay.ts: a tumbling 1-minute count per user.
export default {
  name: '${JOB}',
  version: '${version}',
  source: { topic: '${TOPIC}' },
  key: 'user', // the field the topic is partitioned by: read directly, no repartition hop
  time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  window: { kind: 'tumbling', size: '${WINDOW_MS}ms' },
  aggregate: { init: () => 0, add: (count) => count + 1 },
  sink: { kind: '${sink}' },
};
`;
}
