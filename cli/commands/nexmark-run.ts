// `kappa nexmark run`: the Nexmark queries of examples/nexmark/ streaming through a local cluster
// (its own nats-server, a coordinator and workers, as `kappa dev` builds it), each checked against
// DuckDB running the query's SQL over the same events, with its throughput and worker CPU time.
//
// The topics are finite, so a window stays open after the last event until something moves the
// watermark past it. As a bounded source's final watermark does in Flink, one end-of-input event
// per partition of each topic (an hour after the last event, with ids no real event uses) fires
// every window of the real events; rows of the sentinels themselves are dropped before comparing.
// A query with a `stream` sink (q0–q2) is compared through its outputs in KAPPA_OUT.
//
// bench/nexmark.ts runs the same code (`measureNexmark`) with the raw consumer beside it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { decode } from '@msgpack/msgpack';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ConfigError,
  encodeMessage,
  partitionOf,
  streams,
  subjects,
  type ClusterStatus,
} from '../../protocol/index.js';
import { connectNats, internalReplicas, tableSettingsFromEnv } from '../../runtime/index.js';
import { createTopic, Producer } from '../../client/index.js';
import { NEXMARK_TOPICS, type NexmarkEvent } from '../../client/nexmark/generator.js';
import { bagDifferences, nexmarkSql, sortedValues } from '../../client/nexmark/sql.js';
import { AliasRegistry, MAX_PAGE_ROWS, openServingTables } from '../../tables/index.js';
import { replyOf } from '../admin-request.js';
import { ExitCode } from '../exit-codes.js';
import { positiveInt } from '../setting-values.js';
import { defineSettings, type SettingsOf } from '../settings.js';
import { toViewRow, type ViewRow } from '../view-row.js';
import type { KappaChild } from '../kappa-child.js';
import { startLocalCluster, startLocalNatsServer } from './dev.js';

const EXAMPLES = resolve(import.meta.dirname, '../../../examples/nexmark');
const STATEFUL_QUERIES = ['q3', 'q4', 'q5', 'q7', 'q8', 'q11'];
/** Partitions of each Nexmark topic (and of the chained queries' topics). */
const PARTITIONS = 8;
/** The sentinels come this long after the last real event: past every window and session gap. */
const SENTINEL_AFTER_MS = 60 * 60_000;
/** Sentinel ids start here; the generator's ids stay far below (they start at 1000, one per event at most). */
const SENTINEL_ID_BASE = 1_000_000_000_000;
/**
 * The queries that are two chained jobs: stage 1 writes the topic stage 2 reads (its sink in the
 * module), created here before the jobs start. Any other query is the one job `<query>.mjs`.
 */
const CHAINS: Record<string, { stages: [string, string]; topic: string }> = {
  q4: { stages: ['q4-winners.mjs', 'q4.mjs'], topic: 'nexmark-q4-winners' },
  q5: { stages: ['q5-counts.mjs', 'q5.mjs'], topic: 'nexmark-q5-counts' },
};

export const runSettings = defineSettings({
  events: { flag: '--events <n>', schema: positiveInt.default(50_000), help: 'how many events to generate' },
  queries: {
    flag: '--queries <list>',
    schema: z
      .string()
      .default(STATEFUL_QUERIES.join(','))
      .transform((list) => list.split(',').map((query) => query.trim())),
    help: 'the queries to run, comma-separated (examples/nexmark/<query>.mjs, each with its .sql)',
  },
  workers: { flag: '--workers <n>', schema: positiveInt.default(1), help: 'worker processes' },
  threads: { flag: '--threads <n>', schema: positiveInt.default(2), help: 'threads per worker' },
  seed: { flag: '--seed <n>', schema: z.coerce.number().int().default(1), help: 'same seed, same events' },
  timeout: {
    flag: '--timeout <seconds>',
    schema: positiveInt.default(600),
    help: 'give up on a query that has not caught up after this many seconds',
  },
});

export type RunSettings = SettingsOf<typeof runSettings>;

/** What `kappa nexmark generate` does: publishes the events to the cluster's topics (`partitions` each) and writes them to `file`. */
export type GenerateInto = (url: string, file: string, partitions: number) => Promise<void>;

/** One job version of a query (a chain has two), as its module declares it. */
interface QueryJob {
  name: string;
  version: string;
  sink?: { kind?: string };
}

/** One query run: its time from start to caught up, the workers' and the server's CPU meanwhile, and its check. */
export interface QueryResult {
  query: string;
  seconds: number;
  /** CPU seconds of the worker processes (all threads) while the query ran. */
  cpuSeconds: number;
  /** CPU seconds of the nats-server meanwhile. */
  natsCpuSeconds: number;
  /** Rows (or stream outputs) compared, sentinels' excluded. */
  rows: number;
  equal: boolean;
}

/** What a caller may run at a point of the run (bench/nexmark.ts reads the topics raw there). */
export interface NexmarkHooks {
  /**
   * Once the events and the sentinels are in the topics, before the cluster starts: `topicStreams`
   * are the partition streams of the three topics, holding `messages` in all.
   */
  afterGenerate?: (nc: NatsConnection, topicStreams: string[], messages: number) => Promise<void>;
}

/** `kappa nexmark run`: the queries' results as a table on stdout; exit 0 when every one equals its SQL. */
export async function runNexmark(settings: RunSettings, generateInto: GenerateInto): Promise<number> {
  const results = await measureNexmark(settings, generateInto);
  process.stdout.write(formatTable(results, settings.events));
  return results.every((result) => result.equal) ? ExitCode.ok : 1;
}

/**
 * Starts the local cluster, generates the events, runs each query from earliest to caught up and
 * checks it against its SQL; stops everything before it returns.
 */
export async function measureNexmark(
  settings: RunSettings,
  generateInto: GenerateInto,
  hooks: NexmarkHooks = {},
): Promise<QueryResult[]> {
  for (const query of settings.queries) {
    if (!/^q\d+$/.test(query)) throw new ConfigError(`--queries: '${query}' is not a query name such as q5`);
    for (const file of [`${query}.mjs`, `${query}.sql`]) readFileSync(join(EXAMPLES, file)); // missing: fails before starting anything
  }
  const say = (line: string) => process.stderr.write(`kappa nexmark run: ${line}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'kappa-nexmark-'));
  const modules = settings.queries.flatMap((query) => jobModules(query));
  let server: Awaited<ReturnType<typeof startLocalNatsServer>> | undefined;
  let processes: KappaChild[] = [];
  let nc: NatsConnection | undefined;
  try {
    server = await startLocalNatsServer(join(dir, 'nats'), 0);
    nc = await connectNats({ url: server.url, name: 'kappa nexmark run' });
    for (const query of settings.queries) {
      const chain = CHAINS[query];
      if (chain !== undefined) await createTopic(nc, { name: chain.topic, partitions: PARTITIONS });
    }
    const eventsFile = join(dir, 'events.jsonl');
    await generateInto(server.url, eventsFile, PARTITIONS);
    const lastTime = await appendSentinels(nc, eventsFile);
    const topicStreams = Object.values(NEXMARK_TOPICS).flatMap((topic) =>
      Array.from({ length: PARTITIONS }, (_, partition) => streams.partition(topic, partition)),
    );
    await hooks.afterGenerate?.(nc, topicStreams, settings.events + topicStreams.length);
    processes = startLocalCluster({
      url: server.url,
      jobs: modules,
      workers: settings.workers,
      threads: settings.threads,
      httpPort: 0,
      stateDir: join(dir, 'state'),
      logLevel: 'warn',
      idPrefix: 'nexmark',
      // q0–q2's outputs are compared whole: the output stream keeps them all (its default 1 GiB
      // bound discards the oldest of a 1M-event q0, whose 920k outputs pass it).
      workerFlags: ['--output-max-bytes', '0'],
    });
    say(`coordinator and ${settings.workers} worker(s) with ${settings.threads} thread(s) each`);
    // Registered and settled before the first query is timed, so its seconds and CPU are not the workers' start-up.
    await untilWorkersRegistered(nc, settings.workers);
    const workerPids = processes.slice(1).map((child) => child.pid);
    const jsm = await jetstreamManager(nc);
    const results: QueryResult[] = [];
    for (const query of settings.queries) {
      const jobs = await Promise.all(jobModules(query).map(jobOf));
      const cpuBefore = sumCpuSeconds(workerPids);
      const natsCpuBefore = sumCpuSeconds([server.pid]);
      const startedAt = Date.now();
      for (const job of jobs) await startJob(nc, job);
      await untilCaughtUp(nc, jsm, jobs, settings.timeout * 1000);
      const seconds = (Date.now() - startedAt) / 1000;
      const cpuSeconds = sumCpuSeconds(workerPids) - cpuBefore;
      const natsCpuSeconds = sumCpuSeconds([server.pid]) - natsCpuBefore;
      const check = await equalsSql(nc, query, jobs.at(-1)!, eventsFile, lastTime, say);
      results.push({ query, seconds, cpuSeconds, natsCpuSeconds, ...check });
      say(`${query}: ${seconds.toFixed(1)} s, ${check.equal ? 'equal to SQL' : 'NOT equal to SQL'}`);
    }
    return results;
  } finally {
    // Workers first (they hand their tasks back), then the coordinator, then the server.
    await Promise.all(processes.slice(1).map((child) => child.stop()));
    await processes[0]?.stop();
    await nc?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The job modules a query runs, in order: a chain's two stages, or the query's own. */
function jobModules(query: string): string[] {
  const modules = CHAINS[query]?.stages ?? [`${query}.mjs`];
  return modules.map((module) => join(EXAMPLES, module));
}

async function jobOf(module: string): Promise<QueryJob> {
  const job = ((await import(pathToFileURL(module).href)) as { default: QueryJob }).default;
  return { name: job.name, version: job.version, ...(job.sink === undefined ? {} : { sink: job.sink }) };
}

/**
 * One end-of-input event per partition of each topic, at the last event's time + an hour, with ids
 * no real event has (each chosen so that its key lands in that partition). Returns the last real
 * event's time.
 */
async function appendSentinels(nc: NatsConnection, eventsFile: string): Promise<number> {
  let lastTime = -Infinity;
  for (const line of readFileSync(eventsFile, 'utf8').split('\n'))
    if (line !== '') lastTime = Math.max(lastTime, (JSON.parse(line) as NexmarkEvent).dateTime);
  const time = lastTime + SENTINEL_AFTER_MS;
  const ids = sentinelIds(PARTITIONS);
  const events: Record<keyof typeof NEXMARK_TOPICS, NexmarkEvent[]> = {
    person: ids.map((id) => ({
      type: 'person',
      id,
      name: 'end of input',
      emailAddress: '',
      creditCard: '',
      city: '',
      state: '',
      dateTime: time,
      extra: '',
    })),
    auction: ids.map((id) => ({
      type: 'auction',
      id,
      itemName: '',
      description: '',
      initialBid: 0,
      reserve: 0,
      dateTime: time,
      expires: time,
      seller: id,
      category: 0,
      extra: '',
    })),
    bid: ids.map((id) => ({
      type: 'bid',
      auction: id,
      bidder: id,
      price: 0,
      channel: '',
      url: '',
      dateTime: time,
      extra: '',
    })),
  };
  for (const [type, topic] of Object.entries(NEXMARK_TOPICS)) {
    const producer = await Producer.forTopic(nc, topic);
    for (const event of events[type as keyof typeof NEXMARK_TOPICS]) {
      const key = String(event.type === 'bid' ? event.auction : event.id);
      if (!producer.publish({ key, time, value: event })) await producer.ready();
    }
    await producer.close();
  }
  return lastTime;
}

/** For each partition, the first id from SENTINEL_ID_BASE whose key lands in it. */
function sentinelIds(partitions: number): number[] {
  const ids: number[] = [];
  for (let id = SENTINEL_ID_BASE; ids.filter((found) => found !== undefined).length < partitions; id++) {
    const partition = partitionOf(String(id), partitions);
    ids[partition] ??= id;
  }
  return ids;
}

async function startJob(nc: NatsConnection, job: QueryJob): Promise<void> {
  await adminAsk(nc, 'start', {
    type: 'job.start',
    job: job.name,
    version: job.version,
    from: { kind: 'earliest' },
  });
}

async function clusterStatus(nc: NatsConnection): Promise<ClusterStatus> {
  return adminAsk(nc, 'status', { type: 'status.request' });
}

/** One admin request to the leader, asked again while none leads yet (the coordinator just started). */
async function adminAsk<V extends 'start' | 'status'>(
  nc: NatsConnection,
  verb: V,
  request: V extends 'start' ? Parameters<typeof encodeMessage>[0] : { type: 'status.request' },
): Promise<ReturnType<typeof replyOf<V>>> {
  const giveUpAt = Date.now() + 30_000;
  for (;;) {
    try {
      const response = await nc.request(subjects.adminRequest(verb), encodeMessage(request), { timeout: 3_000 });
      return replyOf(verb, response.data);
    } catch (error) {
      if (Date.now() > giveUpAt) throw error;
      await sleep(250);
    }
  }
}

/** Until the leader lists `count` live workers, then a second for their threads to finish loading. */
async function untilWorkersRegistered(nc: NatsConnection, count: number): Promise<void> {
  const giveUpAt = Date.now() + 60_000;
  while ((await clusterStatus(nc)).workers.length < count) {
    if (Date.now() > giveUpAt) throw new Error(`${count} worker(s) did not register with the coordinator in 60 s`);
    await sleep(250);
  }
  await sleep(1_000);
}

/**
 * Until every task of every stage of the jobs is running at the end of its own input stream (a
 * route task at its source partition's last sequence, a keyed task at its repartition
 * partition's), seen so on two polls in a row: one poll reads the tasks one after another, and a
 * route task may publish to a keyed task's stream after that was checked.
 */
async function untilCaughtUp(
  nc: NatsConnection,
  jsm: JetStreamManager,
  jobs: readonly QueryJob[],
  timeoutMs: number,
): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  let inARow = 0;
  while (inARow < 2) {
    if (Date.now() > giveUpAt)
      throw new Error(`${jobs.map((job) => job.name).join(', ')} did not catch up in ${timeoutMs / 1000} s`);
    await sleep(250);
    inARow = (await allAtEnd(nc, jsm, jobs)) ? inARow + 1 : 0;
  }
}

async function allAtEnd(nc: NatsConnection, jsm: JetStreamManager, jobs: readonly QueryJob[]): Promise<boolean> {
  const status = await clusterStatus(nc);
  for (const job of jobs) {
    const version = status.versions.find((view) => view.job === job.name && view.version === job.version);
    const tasks = status.tasks.filter((task) => task.job === job.name && task.version === job.version);
    if (version === undefined || tasks.length === 0) return false;
    for (const task of tasks) {
      if (task.state !== 'running' || task.sequence === null) return false;
      // The stage's own topic (a keyed stage after routes reads the repartition topic); no plan: the job's topic.
      const read = version.stages?.find((stage) => stage.stage === task.stage)?.topic ?? version.topic;
      if (read === null) return false;
      const last = (await jsm.streams.info(streams.partition(read, task.partition))).state.last_seq;
      if (task.sequence !== last) return false;
    }
  }
  return true;
}

/** User + system CPU seconds the processes have used so far, all their threads (Linux /proc; 0 elsewhere). */
function sumCpuSeconds(pids: readonly (number | undefined)[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name: utime is the 14th, stime the 15th (clock ticks, 100/s).
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      sum += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // not Linux, or the process is gone
    }
  }
  return sum;
}

/**
 * Whether the job's table (or, for a `stream` sink, its outputs), without the sentinels' rows,
 * equals the query's SQL over the events as a bag of row values. Read again for a few seconds
 * while it differs: the last rows may be written just after the tasks report their sequence.
 */
async function equalsSql(
  nc: NatsConnection,
  query: string,
  job: QueryJob,
  eventsFile: string,
  lastTime: number,
  say: (line: string) => void,
): Promise<{ equal: boolean; rows: number }> {
  const expected = sortedValues(await nexmarkSql(join(EXAMPLES, `${query}.sql`), eventsFile));
  const what = job.sink?.kind === 'stream' ? 'stream outputs' : 'rows';
  const giveUpAt = Date.now() + 5_000;
  let differences: string[] = [];
  let rows: ComparedRow[] = [];
  for (;;) {
    const read = job.sink?.kind === 'stream' ? await readStreamOutputs(nc, job) : await readTable(nc, job);
    rows = read.filter((row) => !isSentinelRow(row, lastTime));
    differences = bagDifferences(sortedValues(rows.map((row) => row.value)), expected);
    if (differences.length === 0) {
      say(`${query}: ${rows.length} ${what}, equal to SQL's`);
      return { equal: true, rows: rows.length };
    }
    if (Date.now() > giveUpAt) break;
    await sleep(500);
  }
  say(`${query}: ${rows.length} ${what} differ from its SQL's ${expected.length} rows; first differences:`);
  for (const line of differences.slice(0, 10)) say(`  ${line}`);
  return { equal: false, rows: rows.length };
}

/** A table row or a stream output: its window's start, if any, and its value. */
type ComparedRow = Pick<ViewRow, 'start' | 'value'>;

/** A row of a sentinel: its window (or session) starts after the last real event, or it names a sentinel id. */
function isSentinelRow(row: ComparedRow, lastTime: number): boolean {
  const value = (row.value ?? {}) as Record<string, unknown>;
  const start = row.start ?? value.start;
  if (typeof start === 'number' && start > lastTime) return true;
  return ['id', 'auction', 'bidder'].some((field) => Number(value[field]) >= SENTINEL_ID_BASE);
}

/** Every output a `stream` sink wrote for the job version (subject `kappa.out.<job>.<version>`), in order. */
async function readStreamOutputs(nc: NatsConnection, job: QueryJob): Promise<ComparedRow[]> {
  const subject = subjects.output(job.name, job.version);
  const info = await (await jetstreamManager(nc)).streams.info(streams.output, { subjects_filter: subject });
  const total = info.state.subjects?.[subject] ?? 0;
  const rows: ComparedRow[] = [];
  if (total === 0) return rows;
  const consumer = await jetstream(nc).consumers.get(streams.output, { filter_subjects: subject });
  const messages = await consumer.consume({ max_messages: 10_000 });
  for await (const message of messages) {
    const output = decode(message.data) as { window?: { start: number }; value: unknown };
    rows.push({ ...(output.window === undefined ? {} : { start: output.window.start }), value: output.value });
    if (message.info.pending === 0) break;
  }
  return rows;
}

/** Every row of the job version's serving table, page by page (what `kappa view --json` prints). */
async function readTable(nc: NatsConnection, job: QueryJob): Promise<ViewRow[]> {
  const alias = await (await AliasRegistry.open(nc, internalReplicas())).get(job.name);
  const backend = await openServingTables(alias?.table ?? 'kv', nc, tableSettingsFromEnv());
  try {
    const rows: ViewRow[] = [];
    let after: string | undefined;
    do {
      const page = await backend.page(job.name, job.version, { limit: MAX_PAGE_ROWS, after });
      rows.push(...page.rows.map(toViewRow));
      after = page.next;
    } while (after !== undefined);
    return rows;
  } finally {
    await backend.close();
  }
}

function formatTable(results: readonly QueryResult[], events: number): string {
  const header = ['query', 'events', 'seconds', 'events/s', 'worker CPU s', 'events/CPU-s', 'equal to SQL'];
  const rows = results.map((result) => [
    result.query,
    String(events),
    result.seconds.toFixed(1),
    String(Math.round(events / Math.max(0.001, result.seconds))),
    result.cpuSeconds.toFixed(1),
    result.cpuSeconds > 0 ? String(Math.round(events / result.cpuSeconds)) : '-',
    result.equal ? 'yes' : 'no',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows]
    .map(
      (cells) =>
        cells
          .map((cell, column) => cell.padEnd(widths[column]!))
          .join('  ')
          .trimEnd() + '\n',
    )
    .join('');
}
