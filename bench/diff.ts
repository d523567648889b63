// The diff of two job versions' serving tables (tables/diff.ts), per backend: two tables of N rows
// (a windowed job's shape: N/10 keys with 10 windows each), the second with 1% of its keys' rows
// changed, compared in full; seconds and the peak memory the diff added (RSS and V8 heap, sampled
// every 20 ms, over what the process held before it). KV runs on the bench's own nats-server;
// PostgreSQL (KAPPA_POSTGRES_URL, default the tests' server) and Redis (KAPPA_REDIS_URL) are the
// machine's, shared, so the tables are under a job name of the run and dropped after it.
//
// Run: npx tsx bench/diff.ts [rows=1000000]   (DIFF_BACKENDS=kv,postgres,redis,kv-postgres)
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { startServer } from '../test/harness/nats-server.js';
import { diffVersions, KvTables, type ServingTables, type TableKind, type TableOutput } from '../tables/index.js';
import { PostgresTables } from '../tables/postgres-tables.js';
import { RedisTables } from '../tables/redis-tables.js';

const ROWS = Number(process.argv[2] ?? 1_000_000);
const BACKENDS = (process.env.DIFF_BACKENDS ?? 'kv,postgres,redis,kv-postgres').split(',');
const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.KAPPA_REDIS_URL ?? 'redis://127.0.0.1:6379';
const WINDOWS_PER_KEY = 10;
const WINDOW_MS = 10_000;
const WRITE_BATCH = 10_000;
/** One key in this many is changed in v2. */
const CHANGED_EVERY = 100;

const server = await startServer();
const nc = await connect({ servers: server.url });
const opened = new Map<TableKind, ServingTables>();
const created: { kind: TableKind; job: string; version: string }[] = [];

function open(kind: TableKind): Promise<ServingTables> | ServingTables {
  const existing = opened.get(kind);
  if (existing) return existing;
  const tables =
    kind === 'kv'
      ? Promise.resolve(new KvTables(nc))
      : kind === 'postgres'
        ? Promise.resolve(new PostgresTables(POSTGRES_URL))
        : RedisTables.open(REDIS_URL);
  return tables.then((ready) => (opened.set(kind, ready), ready));
}

/** Row i of a version: key user-(i / 10), window i % 10; v2 doubles every 100th key's values. */
function outputs(from: number, to: number, changed: boolean): TableOutput[] {
  const batch: TableOutput[] = [];
  for (let index = from; index < to; index++) {
    const user = Math.floor(index / WINDOWS_PER_KEY);
    const start = (index % WINDOWS_PER_KEY) * WINDOW_MS;
    const clicks = 1 + (index % 17);
    batch.push({
      key: `user-${user}`,
      window: { start, end: start + WINDOW_MS },
      value: { clicks: changed && user % CHANGED_EVERY === 0 ? 2 * clicks : clicks, pages: index % 5 },
      revision: 1,
      kind: 'update',
    });
  }
  return batch;
}

async function writeTable(kind: TableKind, job: string, version: string, changed: boolean): Promise<number> {
  const startedAt = performance.now();
  const tables = await open(kind);
  created.push({ kind, job, version });
  const writer = await tables.writer(job, version);
  for (let from = 0; from < ROWS; from += WRITE_BATCH)
    await writer.write(outputs(from, Math.min(ROWS, from + WRITE_BATCH), changed));
  return (performance.now() - startedAt) / 1000;
}

interface Measured {
  backend: string;
  writeSeconds: number;
  diffSeconds: number;
  peakRssMiB: number;
  peakHeapMiB: number;
  compared: number;
  changed: number;
}

async function measure(backend: string): Promise<Measured> {
  const [fromKind, toKind] = (backend.includes('-') ? backend.split('-') : [backend, backend]) as [
    TableKind,
    TableKind,
  ];
  const job = `bench_diff_${randomBytes(3).toString('hex')}`;
  const writeSeconds = (await writeTable(fromKind, job, 'v1', false)) + (await writeTable(toKind, job, 'v2', true));
  global.gc?.();
  const baseline = process.memoryUsage();
  let peakRss = baseline.rss;
  let peakHeap = baseline.heapUsed;
  const sampler = setInterval(() => {
    const now = process.memoryUsage();
    peakRss = Math.max(peakRss, now.rss);
    peakHeap = Math.max(peakHeap, now.heapUsed);
  }, 20);
  const startedAt = performance.now();
  const diff = await diffVersions(
    job,
    { tables: await open(fromKind), version: 'v1' },
    { tables: await open(toKind), version: 'v2' },
  );
  const diffSeconds = (performance.now() - startedAt) / 1000;
  clearInterval(sampler);
  const expectedChanged = Math.ceil(ROWS / WINDOWS_PER_KEY / CHANGED_EVERY) * WINDOWS_PER_KEY;
  if (diff.compared !== ROWS || diff.changed !== expectedChanged || diff.same !== ROWS - expectedChanged)
    throw new Error(`${backend}: wrong diff ${JSON.stringify({ ...diff, changedRows: undefined })}`);
  const mib = (bytes: number) => bytes / 2 ** 20;
  return {
    backend,
    writeSeconds,
    diffSeconds,
    peakRssMiB: mib(peakRss - baseline.rss),
    peakHeapMiB: mib(peakHeap - baseline.heapUsed),
    compared: diff.compared,
    changed: diff.changed,
  };
}

const results: Measured[] = [];
const failures: string[] = [];
try {
  for (const backend of BACKENDS) {
    try {
      const result = await measure(backend);
      results.push(result);
      console.error(`${backend}: ${JSON.stringify(result)}`);
    } catch (error) {
      // A backend that fails (a KV listing timing out on a loaded machine) is reported, the others still run.
      failures.push(`${backend}: failed: ${(error as Error).message.slice(0, 300)}`);
      console.error(failures.at(-1));
    }
  }
} finally {
  for (const { kind, job, version } of created) await (await open(kind)).drop(job, version).catch(() => undefined);
  for (const tables of opened.values()) await tables.close();
  await nc.close();
  await server.close();
}

const lines = [
  `diff of two ${ROWS.toLocaleString('en')}-row serving tables (${ROWS / WINDOWS_PER_KEY} keys x ${WINDOWS_PER_KEY} windows, 1% of keys changed), ${new Date().toISOString()}`,
  'backend       diff s   rows/s     peak RSS +MiB  peak heap +MiB  (write both s)',
  ...results.map(
    (r) =>
      `${r.backend.padEnd(12)}  ${r.diffSeconds.toFixed(1).padStart(6)}  ${Math.round(r.compared / r.diffSeconds)
        .toLocaleString('en')
        .padStart(
          9,
        )}  ${r.peakRssMiB.toFixed(0).padStart(13)}  ${r.peakHeapMiB.toFixed(0).padStart(14)}  (${r.writeSeconds.toFixed(0)})`,
  ),
  "kv: each page scans the bucket's key names (KV keeps no order), read 20,000 rows a page; postgres-postgres: one database joins both tables (FULL OUTER JOIN on row_key, three queries); redis and kv-postgres: both tables paged in row-key order and merged.",
];
console.log(lines.join('\n'));
if (process.env.DIFF_RESULTS !== undefined) writeFileSync(process.env.DIFF_RESULTS, `${lines.join('\n')}\n`);
