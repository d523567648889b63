// Nexmark on Kappa beside the published per-core figures of Flink and RisingWave: every query of
// examples/nexmark/ run by `kappa nexmark run`'s code (its own nats-server, a coordinator, one
// worker with 2 threads; each query from earliest to caught up, its table checked against DuckDB
// running the query's SQL), over N generated events, and the raw AckNone consumer reading the same
// three topics in the same run, so every figure is also a ratio against it.
//
// Per core: events per worker CPU-second, the workers' user + system time over all their threads
// while the query ran (the nats-server's is printed apart: Flink's figures have no broker in them).
// Prints the table, writes it to bench/results/nexmark.txt and a bar chart to nexmark.svg.
//
// Run: npm run build && npx tsx bench/nexmark.ts [events=1000000]
// Env: NEXMARK_QUERIES=q0,q5 runs only those (default: all of them).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { readRaw } from './raw-consumer.js';

// The built CLI's modules: the cluster runs dist/cli/main.js, and the examples are found from dist.
type NexmarkRunModule = typeof import('../cli/commands/nexmark-run.js');
type NexmarkModule = typeof import('../cli/commands/nexmark.js');
type QueryResult = Awaited<ReturnType<NexmarkRunModule['measureNexmark']>>[number];
const DIST = new URL('../dist/cli/commands/', import.meta.url);
if (!existsSync(new URL('nexmark-run.js', DIST))) throw new Error('dist/ is missing: run `npm run build` first');
const { measureNexmark, runSettings } = (await import(new URL('nexmark-run.js', DIST).href)) as NexmarkRunModule;
const { generateIntoCluster } = (await import(new URL('nexmark.js', DIST).href)) as NexmarkModule;

const RESULTS_DIR = join(import.meta.dirname, 'results');
const QUERIES = (process.env.NEXMARK_QUERIES ?? 'q0,q1,q2,q3,q4,q5,q7,q8,q11').split(',');
const events = Number(process.argv[2] ?? 1_000_000);
if (!Number.isSafeInteger(events) || events <= 0)
  throw new Error(`events: expected a positive integer, found ${events}`);

/** Published throughput per core (events/s/core), as issue 15 quotes them. */
const PUBLISHED: Record<string, { flink1?: number; flink2?: number; risingWave?: number }> = {
  q0: { flink1: 155_000, flink2: 379_000, risingWave: 170_000 },
  q5: { flink1: 22_000, flink2: 75_000, risingWave: 11_000 },
  q7: { flink1: 12_000, risingWave: 38_000 },
  q8: { flink1: 146_000 },
  q11: { flink1: 40_000 },
};

/** The two series of the plot. */
const KAPPA_SERIES = 'Kappa, events per worker CPU-second';
const FLINK_SERIES = 'Flink 1.x, events/s per core (published)';

const settings = runSettings.load({ events, queries: QUERIES.join(','), timeout: 3600 });
let raw = { seconds: 0, messages: 0 };
const startedAt = Date.now();
const results = await measureNexmark(settings, generateIntoCluster(settings), {
  afterGenerate: async (nc, topicStreams, messages) => {
    const seconds = await readRaw(nc, topicStreams, { expected: messages });
    raw = { seconds, messages };
    console.error(`raw AckNone consumer: ${messages} messages in ${seconds.toFixed(2)} s`);
  },
});
const text = report(results);
console.log(`\n${text}`);
mkdirSync(RESULTS_DIR, { recursive: true });
writeFileSync(join(RESULTS_DIR, 'nexmark.txt'), `${text}\n`);
writeFileSync(join(RESULTS_DIR, 'nexmark.svg'), await plot(results));
console.log(`\ntable: ${join(RESULTS_DIR, 'nexmark.txt')}, plot: ${join(RESULTS_DIR, 'nexmark.svg')}`);
console.log(`whole run: ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);

function thousands(value: number | undefined): string {
  return value === undefined ? '-' : `${Math.round(value / 1000)}k`;
}

function perCpuSecond(result: QueryResult): number {
  return events / Math.max(0.01, result.cpuSeconds);
}

function report(results: readonly QueryResult[]): string {
  const rawRate = events / raw.seconds;
  const header = [
    'query',
    'events',
    'seconds',
    'events/s',
    '/ raw',
    'worker CPU s',
    'nats CPU s',
    'events/worker CPU-s',
    'Flink 1.x /core',
    '/ Flink 1.x',
    'Flink 2.x /core',
    'RisingWave /core',
    'equal to SQL',
  ];
  const body = [
    ['raw', String(events), raw.seconds.toFixed(1), Math.round(rawRate).toLocaleString('en'), '1.000'],
    ...results.map((result) => {
      const rate = events / result.seconds;
      const published = PUBLISHED[result.query] ?? {};
      return [
        result.query,
        String(events),
        result.seconds.toFixed(1),
        Math.round(rate).toLocaleString('en'),
        (rate / rawRate).toFixed(3),
        result.cpuSeconds.toFixed(1),
        result.natsCpuSeconds.toFixed(1),
        Math.round(perCpuSecond(result)).toLocaleString('en'),
        thousands(published.flink1),
        published.flink1 === undefined ? '-' : (perCpuSecond(result) / published.flink1).toFixed(2),
        thousands(published.flink2),
        thousands(published.risingWave),
        result.equal ? 'yes' : 'no',
      ];
    }),
  ];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...body.map((cells) => (cells[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ')
      .trimEnd();
  return [
    `Nexmark on Kappa: ${events.toLocaleString('en')} events (seed ${settings.seed}), 1 worker × ${settings.threads} threads, ${settings.queries.length} queries one after another`,
    line(header),
    ...body.map(line),
    '',
    `  raw: the raw AckNone consumer reading the three topics' ${raw.messages.toLocaleString('en')} messages (24 partition streams, no processing), same run`,
    '  seconds: from starting the query\'s job version(s) to every task at the end of its input; "/ raw": its events/s over the raw consumer\'s',
    "  events/worker CPU-s: events over the worker process's CPU seconds (all threads) meanwhile, the per-core figure; nats-server CPU apart",
    '  Flink / RisingWave: published events/s per core (issue 15); "/ Flink 1.x": events per worker CPU-s over Flink 1.x per core',
    "  equal to SQL: the table (q0-q2: the stream sink's outputs) equals DuckDB running the query's SQL over the same events",
  ].join('\n');
}

async function plot(results: readonly QueryResult[]): Promise<string> {
  const values = results.flatMap((result) => {
    const kappa = Math.round(perCpuSecond(result));
    const flink1 = PUBLISHED[result.query]?.flink1;
    return [
      { query: result.query, series: KAPPA_SERIES, rate: kappa, label: thousands(kappa) },
      ...(flink1 === undefined
        ? []
        : [{ query: result.query, series: FLINK_SERIES, rate: flink1, label: thousands(flink1) }]),
    ];
  });
  const base = 1_000;
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: `Nexmark per core: Kappa over ${events.toLocaleString('en')} events vs Flink 1.x's published figures`,
      subtitle: `1 worker × ${settings.threads} threads on a 2-core machine; log scale; Flink has no figure for q1–q4`,
    },
    width: 520,
    background: 'white',
    data: { values },
    encoding: {
      y: { field: 'query', type: 'nominal', sort: null, title: null },
      yOffset: { field: 'series', type: 'nominal', sort: null },
      x: {
        field: 'rate',
        type: 'quantitative',
        scale: { type: 'log', domainMin: base, domainMax: Math.max(...values.map((value) => value.rate)) * 4 },
        title: 'events per second per core',
      },
    },
    layer: [
      {
        mark: 'bar',
        encoding: {
          x2: { datum: base },
          color: {
            field: 'series',
            type: 'nominal',
            title: null,
            scale: { domain: [KAPPA_SERIES, FLINK_SERIES], range: ['#4c78a8', '#9e9e9e'] },
            legend: { orient: 'bottom', labelLimit: 400 },
          },
        },
      },
      { mark: { type: 'text', align: 'left', dx: 4, fontSize: 10 }, encoding: { text: { field: 'label' } } },
    ],
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}
