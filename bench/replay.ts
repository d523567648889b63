// Replay throughput with real processes: a job version started `--from earliest` over events
// already in a topic, run by a `kappa coordinator` and 1 or 2 `kappa worker` processes, against
// the raw NATS AckNone consumer reading the same streams in the same run and DuckDB computing the
// same aggregation over the same events from a file (the batch layer of a Lambda architecture).
// The aggregation: a tumbling 1-minute count per key. Every replayed table is checked against
// DuckDB's answer. Prints a table and saves bench/results/replay.svg and .png.
//
// Run: npm run build && npx tsx bench/replay.ts [events=2000000] [partitions=8] [keys=10000]
// Env: REPLAY_CONFIGS=1x1,1x2,2x1 (workers x threads per worker, one fresh job version each);
//      REPLAY_CPU_PROF=DIR writes a V8 CPU profile of every worker process and thread into DIR;
//      REPLAY_CLI=FILE runs the coordinator and workers from another build of dist/cli/main.js.
//      REPLAY_SINK=none runs the job without a serving table (to see what the table writes cost;
//      nothing to check then).
// CPU seconds per process (Linux /proc) are printed with each figure: on a small machine the
// nats-server and the workers share the cores.
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { createTopic } from '../client/topics.js';
import { Producer } from '../client/producer.js';
import {
  buckets,
  decodeMessage,
  decodeRow,
  encodeMessage,
  parseAdminReply,
  partitionOf,
  streams,
  subjects,
  type ClusterStatus,
  type TaskStatus,
} from '../protocol/index.js';
import { CLI as BUILT_CLI } from '../test/harness/cli.js';
import { startServer } from '../test/harness/nats-server.js';
import { readRaw } from './raw-consumer.js';

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
const sink = process.env.REPLAY_SINK ?? 'kv';
// Another build of the CLI (say, a patched copy of dist/) to compare before and after a change.
const CLI = process.env.REPLAY_CLI ?? BUILT_CLI;

const TOPIC = 'clicks';
const JOB = 'replaybench';
const WINDOW_MS = 60_000;
const OUT_OF_ORDERNESS_MS = 1_000;
const RESULTS_DIR = join(import.meta.dirname, 'results');

if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);

interface Measurement {
  name: string;
  seconds: number;
  note: string;
}

const server = await startServer();
const nc = await connect({ servers: server.url });
const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-replay-'));
const processes: Child[] = [];
const measurements: Measurement[] = [];
let mismatches = 0;
try {
  // Produce the events into the topic and, with the same values, into a CSV file for DuckDB.
  await createTopic(nc, { name: TOPIC, partitions });
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
  const expected = await runDuckDb(csvFile);

  // Only windows the watermark has passed are in a replayed table: end - 1 <= max time - out-of-orderness.
  const fired = new Map<string, number>();
  for (const [row, count] of expected) {
    const [user, start] = splitRowId(row);
    if (start + WINDOW_MS - 1 <= maxTimePerPartition[partitionOf(user, partitions)]! - OUT_OF_ORDERNESS_MS)
      fired.set(row, count);
  }

  // 3. Kappa: a coordinator, then for each configuration fresh worker processes and a fresh job version.
  const coordinator = spawnKappa([
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
  await waitFor(
    'a leading coordinator',
    async () => (await status()).leader.coordinatorId === 'c1' || undefined,
    30_000,
  );
  for (const [index, config] of configs.entries()) {
    const version = `v${index + 1}`;
    const jobFile = join(dir, `${JOB}-${version}.mjs`);
    writeFileSync(jobFile, jobModule(version));
    const workerIds = Array.from({ length: config.workers }, (_, worker) => `${version}-w${worker + 1}`);
    const workers = workerIds.map((id) =>
      spawnKappa(
        [
          'worker',
          '--job',
          jobFile,
          '--id',
          id,
          '--threads',
          String(config.threads),
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
    const urls = await waitFor(
      `${config.workers} worker(s) registered`,
      async () => {
        const view = await status();
        const registered = view.workers.filter((worker) => workerIds.includes(worker.workerId) && worker.httpUrl);
        return registered.length === config.workers ? registered.map((worker) => worker.httpUrl!) : undefined;
      },
      30_000,
    );

    cpu = cpuMeter({
      'nats-server': server.pid,
      ...Object.fromEntries(workers.map((worker, index) => [workerIds[index]!, worker.pid])),
      coordinator: coordinator.pid,
      'this process': process.pid,
    });
    t = performance.now();
    const started = await runKappa(['start', JOB, '--version', version, '--from', 'earliest', '--nats', server.url]);
    if (started.code !== 0) throw new Error(`kappa start failed: ${started.logs}`);
    const startCommandSeconds = (performance.now() - t) / 1000;
    let firstProgressSeconds: number | undefined;
    await waitFor(
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
        return done.size === partitions || undefined;
      },
      1_800_000,
      50,
    );
    const seconds = (performance.now() - t) / 1000;
    const name = `Kappa ${config.workers} worker${config.workers > 1 ? 's' : ''} × ${config.threads} thread${config.threads > 1 ? 's' : ''}${sink === 'kv' ? '' : `, sink ${sink}`}`;
    measurements.push({
      name,
      seconds,
      note: `from \`kappa start\` (${startCommandSeconds.toFixed(1)} s) to every task at its partition's last sequence; first progress after ${firstProgressSeconds?.toFixed(1) ?? '?'} s; ${cpu()}`,
    });
    console.error(`${name}: ${seconds.toFixed(2)} s`);

    if (sink === 'kv') mismatches += await checkTable(version, fired);
    const stopped = await runKappa(['stop', JOB, '--version', version, '--nats', server.url]);
    if (stopped.code !== 0) console.error(`kappa stop ${version} failed: ${stopped.logs}`);
    await Promise.all(workers.map((worker) => worker.stop()));
  }
  await coordinator.stop();

  // Raw consumer, then Kappa's runs, then DuckDB's.
  const rank = (row: Measurement) => (row.name.startsWith('raw') ? 0 : row.name.startsWith('Kappa') ? 1 : 2);
  const ordered = measurements
    .map((row, index) => ({ row, index }))
    .sort((a, b) => rank(a.row) - rank(b.row) || a.index - b.index)
    .map(({ row }) => row);
  printTable(ordered);
  await savePlot(ordered);
  if (mismatches > 0) {
    console.error(`\n!!! ${mismatches} MISMATCHES between the replayed tables and DuckDB's answer !!!`);
    process.exitCode = 1;
  }
} finally {
  await Promise.all(processes.map((child) => child.kill()));
  await nc.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}

/** Count per key per window, DuckDB over Parquet and over CSV; returns the Parquet answer by `<key>.<start>`. */
async function runDuckDb(csvFile: string): Promise<Map<string, number>> {
  const instance = await DuckDBInstance.create(':memory:');
  const db = await instance.connect();
  try {
    const columns = `columns = {'user': 'VARCHAR', 'ts': 'BIGINT', 'page': 'INTEGER'}, header = true`;
    const parquetFile = csvFile.replace(/\.csv$/, '.parquet');
    // Not timed: the file a batch layer would keep (written once, read by every batch job).
    await db.run(`COPY (SELECT * FROM read_csv('${csvFile}', ${columns})) TO '${parquetFile}' (FORMAT parquet)`);
    const aggregation = (source: string) =>
      `CREATE OR REPLACE TABLE windows AS SELECT user, ts - ts % ${WINDOW_MS} AS start, count(*)::INTEGER AS clicks FROM ${source} GROUP BY ALL`;
    const time = async (name: string, source: string, note: string) => {
      const cpu = cpuMeter({ 'this process (DuckDB)': process.pid });
      const startedAt = performance.now();
      await db.run(aggregation(source));
      const seconds = (performance.now() - startedAt) / 1000;
      measurements.push({ name, seconds, note: `${note}; ${cpu()}` });
      console.error(`${name}: ${seconds.toFixed(2)} s`);
    };
    await time(
      'DuckDB, CSV file',
      `read_csv('${csvFile}', ${columns})`,
      'reads and parses the CSV, aggregates into an in-memory table',
    );
    await time(
      'DuckDB, Parquet file',
      `read_parquet('${parquetFile}')`,
      'reads the Parquet file, aggregates into an in-memory table',
    );
    return await windowCounts(db);
  } finally {
    db.closeSync();
    instance.closeSync();
  }
}

async function windowCounts(db: DuckDBConnection): Promise<Map<string, number>> {
  const result = await db.runAndReadAll('SELECT user, start, clicks FROM windows');
  const counts = new Map<string, number>();
  for (const [user, start, clicks] of result.getRows()) counts.set(`${String(user)}.${String(start)}`, Number(clicks));
  return counts;
}

function splitRowId(row: string): [string, number] {
  const dot = row.lastIndexOf('.');
  return [row.slice(0, dot), Number(row.slice(dot + 1))];
}

/** Reads the version's whole KV table (its stream) and compares every row with DuckDB's; returns the mismatches. */
async function checkTable(version: string, fired: Map<string, number>): Promise<number> {
  const bucket = buckets.servingTable(JOB, version);
  const stream = `KV_${bucket}`;
  const rowCount = (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
  const table = new Map<string, number>();
  let tombstones = 0;
  await readRaw(nc, [stream], {
    expected: rowCount,
    onMessage: (message) => {
      const row = decodeRow(message.data);
      if (row.retracted) tombstones++;
      else table.set(`${row.key}.${row.start}`, row.value as number);
    },
  });
  const problems: string[] = [];
  if (tombstones > 0) problems.push(`${tombstones} retracted rows`);
  for (const [row, count] of fired) {
    const got = table.get(row);
    if (got !== count) problems.push(`${row}: table ${got ?? 'missing'}, DuckDB ${count}`);
  }
  for (const row of table.keys())
    if (!fired.has(row)) problems.push(`${row}: in the table, not a fired window in DuckDB's answer`);
  const sum = (values: Iterable<number>) => [...values].reduce((total, value) => total + value, 0);
  const summary = `${version} table: ${table.size.toLocaleString('en')} rows, ${sum(table.values()).toLocaleString('en')} clicks; DuckDB (fired windows): ${fired.size.toLocaleString('en')} rows, ${sum(fired.values()).toLocaleString('en')} clicks`;
  if (problems.length === 0) {
    console.error(`${summary}: every row equal`);
  } else {
    console.error(
      `\n!!! MISMATCH ${summary}: ${problems.length} differences, first ones:\n  ${problems.slice(0, 10).join('\n  ')}\n`,
    );
  }
  return problems.length;
}

function jobModule(version: string): string {
  return `// Written by bench/replay.ts: a tumbling 1-minute count per user.
export default {
  name: '${JOB}',
  version: '${version}',
  source: { topic: '${TOPIC}' },
  key: (click) => click.user,
  time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  window: { kind: 'tumbling', size: '${WINDOW_MS}ms' },
  aggregate: { init: () => 0, add: (count) => count + 1 },
  sink: { kind: '${sink}' },
};
`;
}

/** A `kappa` child process with its output kept. */
interface Child {
  readonly pid: number;
  readonly logs: string;
  readonly exited: Promise<number | null>;
  stop(): Promise<number | null>;
  kill(): Promise<number | null>;
}

/** Spawns `kappa …`; with a profile dir under `node --cpu-prof` (one profile per thread, written at exit). */
function spawnKappa(args: string[], profileDir?: string): Child {
  const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  const node = spawn(process.execPath, [...nodeFlags, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => node.once('exit', (code) => resolve(code)));
  const signal = (name: NodeJS.Signals) => () => {
    if (node.exitCode === null && node.signalCode === null) node.kill(name);
    return exited;
  };
  const child = { pid: node.pid!, logs: '', exited, stop: signal('SIGTERM'), kill: signal('SIGKILL') };
  node.stdout.on('data', (chunk) => (child.logs += chunk));
  node.stderr.on('data', (chunk) => (child.logs += chunk));
  processes.push(child);
  return child;
}

/** Runs a `kappa` command to completion. */
async function runKappa(args: string[]): Promise<{ code: number | null; logs: string }> {
  const child = spawnKappa(args);
  return { code: await child.exited, logs: child.logs };
}

/** User + system CPU seconds a process has used so far, all its threads (Linux; 0 elsewhere). */
function cpuSeconds(pid: number | undefined): number {
  try {
    // Fields after the command name: state is 3rd, utime 14th, stime 15th (in clock ticks, 100/s).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds used by each named process between two calls. */
function cpuMeter(pids: Record<string, number | undefined>): () => string {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
  return () =>
    'CPU s: ' +
    Object.entries(pids)
      .map(([name, pid]) => `${name} ${(cpuSeconds(pid) - before[name]!).toFixed(1)}`)
      .join(', ');
}

async function status(): Promise<ClusterStatus> {
  const reply = decodeMessage(
    (await nc.request(subjects.adminRequest('status'), encodeMessage({ type: 'status.request' }), { timeout: 3_000 }))
      .data,
  );
  if (reply.type !== 'reply.ok') throw new Error(`status failed: ${JSON.stringify(reply)}`);
  return parseAdminReply('status', reply.detail);
}

/** The tasks a worker process reports on its /status (refreshed by its threads every 250 ms). */
async function workerTasks(url: string): Promise<TaskStatus[]> {
  const response = await fetch(`${url}/status`);
  const body = (await response.json()) as { tasks?: TaskStatus[] } | null;
  return body?.tasks ?? [];
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(
    `timed out waiting for ${what} (${String(last ?? '')})\n${processes.map((child) => child.logs.slice(-1500)).join('\n---\n')}`,
  );
}

function printTable(rows: readonly Measurement[]): void {
  const raw = rows.find((row) => row.name.startsWith('raw'))!;
  const duck = rows.find((row) => row.name === 'DuckDB, Parquet file')!;
  const rate = (row: Measurement) => totalEvents / row.seconds;
  const header = ['', 'seconds', 'events/s', '/ raw consumer', '/ DuckDB (Parquet)'];
  const body = rows.map((row) => [
    row.name,
    row.seconds.toFixed(2),
    Math.round(rate(row)).toLocaleString('en'),
    (rate(row) / rate(raw)).toFixed(3),
    (rate(row) / rate(duck)).toFixed(3),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((cells) => cells[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ');
  const text = [
    `Replay of a tumbling 1-minute count per key: ${totalEvents.toLocaleString('en')} events, ${partitions} partitions, ${keyCount.toLocaleString('en')} keys`,
    line(header),
    ...body.map(line),
    '',
    ...rows.map((row) => `  ${row.name}: ${row.note}`),
  ].join('\n');
  console.log(`\n${text}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'replay.txt'), `${text}\n`);
}

async function savePlot(rows: readonly Measurement[]): Promise<void> {
  const PLOT_BASE = 10_000;
  const kind = (name: string) =>
    name.startsWith('Kappa') ? 'Kappa replay' : name.startsWith('DuckDB') ? 'DuckDB (batch)' : 'raw NATS consumer';
  const values = rows.map((row) => ({
    run: row.name,
    kind: kind(row.name),
    rate: Math.round(totalEvents / row.seconds),
    label: `${Math.round(totalEvents / row.seconds).toLocaleString('en')}/s`,
  }));
  const maxRate = Math.max(...values.map((value) => value.rate));
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: `Replay: tumbling 1-minute count per key over ${totalEvents.toLocaleString('en')} events`,
      subtitle: `${partitions} partitions, ${keyCount.toLocaleString('en')} keys; 2-core machine; log scale`,
    },
    width: 560,
    background: 'white',
    data: { values },
    encoding: {
      y: { field: 'run', type: 'nominal', sort: null, title: null, axis: { labelLimit: 260 } },
      x: {
        field: 'rate',
        type: 'quantitative',
        scale: { type: 'log', domainMin: PLOT_BASE, domainMax: maxRate * 6 },
        title: 'events per second',
      },
    },
    layer: [
      // A log scale has no zero: bars start at PLOT_BASE.
      {
        mark: 'bar',
        encoding: {
          x2: { datum: PLOT_BASE },
          color: {
            field: 'kind',
            type: 'nominal',
            title: null,
            scale: {
              domain: ['raw NATS consumer', 'Kappa replay', 'DuckDB (batch)'],
              range: ['#9e9e9e', '#4c78a8', '#f58518'],
            },
            legend: { orient: 'bottom' },
          },
        },
      },
      { mark: { type: 'text', align: 'left', dx: 4 }, encoding: { text: { field: 'label' } } },
    ],
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  writeFileSync(join(RESULTS_DIR, 'replay.svg'), svg);
  writeFileSync(
    join(RESULTS_DIR, 'replay.png'),
    new Resvg(svg, { font: { loadSystemFonts: true }, background: 'white', fitTo: { mode: 'zoom', value: 2 } })
      .render()
      .asPng(),
  );
  console.log(`\nplot: ${join(RESULTS_DIR, 'replay.png')} (and replay.svg)`);
}
