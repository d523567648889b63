// The report of bench/replay.ts: every run's seconds as a table (printed, and saved as
// bench/results/replay.txt) with each Kappa run's ratio to the raw consumer and to the KV table's
// run in the same configuration, and as a bar chart of events per second (replay.svg and
// replay.png, Vega-Lite rendered without a browser).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { ReplaySink } from './replay-backends.js';

const RESULTS_DIR = join(import.meta.dirname, 'results');

/** One timed run: the raw consumer, a Kappa configuration with a table backend, or a DuckDB query. */
export interface Measurement {
  name: string;
  seconds: number;
  note: string;
  /** A Kappa run: its workers × threads (`1x2`) and its serving table. */
  kappa?: { config: string; sink: ReplaySink };
}

/** How the report names a Kappa run's table. */
export const SINK_NAMES: Record<ReplaySink, string> = {
  kv: 'KV table',
  postgres: 'PostgreSQL table',
  redis: 'Redis table',
  none: 'no table',
};

/** Issue 16: the PostgreSQL and Redis tables within 1.5× of the KV table's time. */
const KV_BOUND = 1.5;

/** What every run read: the events per second, the titles. */
export interface ReplayWorkload {
  totalEvents: number;
  partitions: number;
  keyCount: number;
}

/** Raw consumer, then Kappa's runs, then DuckDB's, each group in the order it ran. */
export function inReportOrder(measurements: readonly Measurement[]): Measurement[] {
  const rank = (row: Measurement) => (row.name.startsWith('raw') ? 0 : row.name.startsWith('Kappa') ? 1 : 2);
  return measurements
    .map((row, index) => ({ row, index }))
    .sort((a, b) => rank(a.row) - rank(b.row) || a.index - b.index)
    .map(({ row }) => row);
}

export function printTable(rows: readonly Measurement[], workload: ReplayWorkload): void {
  const { totalEvents, partitions, keyCount } = workload;
  const raw = rows.find((row) => row.name.startsWith('raw'))!;
  const duck = rows.find((row) => row.name === 'DuckDB, Parquet file')!;
  const rate = (row: Measurement) => totalEvents / row.seconds;
  // The KV table's run in the same configuration, the figure the other backends are held to.
  const kvRun = (row: Measurement) =>
    rows.find((other) => other.kappa?.sink === 'kv' && other.kappa.config === row.kappa?.config);
  const timesKv = (row: Measurement) => {
    const kv = row.kappa === undefined ? undefined : kvRun(row);
    return kv === undefined ? undefined : row.seconds / kv.seconds;
  };
  const header = ['', 'seconds', 'events/s', '/ raw consumer', 'time / KV', '/ DuckDB (Parquet)'];
  const body = rows.map((row) => [
    row.name,
    row.seconds.toFixed(2),
    Math.round(rate(row)).toLocaleString('en'),
    (rate(row) / rate(raw)).toFixed(3),
    timesKv(row)?.toFixed(2) ?? '',
    (rate(row) / rate(duck)).toFixed(3),
  ]);
  const versusKv = rows.flatMap((row) => {
    const ratio = timesKv(row);
    if (ratio === undefined || row.kappa!.sink === 'kv' || row.kappa!.sink === 'none') return [];
    const verdict = ratio <= KV_BOUND ? 'within' : 'NOT within';
    return [`  ${row.name}: ${ratio.toFixed(2)}× the KV table's time, ${verdict} ${KV_BOUND}×`];
  });
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
    ...(versusKv.length > 0
      ? ["time / KV: the run's seconds over the KV table's run in the same configuration", ...versusKv, '']
      : []),
    ...rows.map((row) => `  ${row.name}: ${row.note}`),
  ].join('\n');
  console.log(`\n${text}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'replay.txt'), `${text}\n`);
}

const COLORS: Record<string, string> = {
  'raw NATS consumer': '#9e9e9e',
  [`Kappa, ${SINK_NAMES.kv}`]: '#4c78a8',
  [`Kappa, ${SINK_NAMES.postgres}`]: '#72b7b2',
  [`Kappa, ${SINK_NAMES.redis}`]: '#e45756',
  'DuckDB (batch)': '#f58518',
};

export async function savePlot(rows: readonly Measurement[], workload: ReplayWorkload): Promise<void> {
  const { totalEvents, partitions, keyCount } = workload;
  const PLOT_BASE = 10_000;
  const kind = (row: Measurement) =>
    row.kappa !== undefined
      ? `Kappa, ${SINK_NAMES[row.kappa.sink]}`
      : row.name.startsWith('DuckDB')
        ? 'DuckDB (batch)'
        : 'raw NATS consumer';
  const values = rows.map((row) => ({
    run: row.name,
    kind: kind(row),
    rate: Math.round(totalEvents / row.seconds),
    label: `${Math.round(totalEvents / row.seconds).toLocaleString('en')}/s`,
  }));
  const maxRate = Math.max(...values.map((value) => value.rate));
  const kinds = [...new Set(values.map((value) => value.kind))];
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
              domain: kinds,
              range: kinds.map((name) => COLORS[name] ?? '#bab0ac'),
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
