// Batch mode over a file: `kappa run JOB --input FILE` (a process, as a user runs it) against
// DuckDB reading the same JSON-lines file and running the same aggregation, in one run: a
// tumbling 1-minute count per user over {user, ts, page} events, 10k users, 8 partitions. Kappa's
// table is checked row by row against DuckDB's answer. Prints seconds, events/s, CPU seconds and
// peak memory, and the ratio (issue 17 asks kappa run within 5× of DuckDB).
//
// Run: npm run build && npx tsx bench/run-input.ts [events=1000000] [keys=10000]
//      RUN_INPUT_CPU_PROF=DIR writes a V8 CPU profile of `kappa run` into DIR.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { CLI } from '../test/harness/cli.js';
import { cpuMeter } from './cpu-meter.js';

const totalEvents = Number(process.argv[2] ?? 1_000_000);
const keyCount = Number(process.argv[3] ?? 10_000);
const WINDOW_MS = 60_000;
const PARTITIONS = 8;

const cpuProfileDir = process.env.RUN_INPUT_CPU_PROF;
const cpuProfileArgs = cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfileDir] : [];

const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-run-'));
try {
  // The events: 1 per ms and a bit (16-17 minutes per 1M), keys spread, times a little out of order.
  const input = join(dir, 'clicks.jsonl');
  const startMs = Date.UTC(2026, 0, 1);
  const lines: string[] = [];
  for (let index = 0; index < totalEvents; index++) {
    const ts = startMs + Math.floor(index * 0.96) - (index % 7) * 50;
    lines.push(JSON.stringify({ user: `u${(index * 7919) % keyCount}`, ts, page: index % 13 }));
  }
  writeFileSync(input, lines.join('\n') + '\n');
  lines.length = 0;
  const job = join(dir, 'count.mjs');
  writeFileSync(
    job,
    `export default {
  name: 'count', version: 'v1', source: { topic: 'clicks' }, key: 'user', time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '1s' }, window: { kind: 'tumbling', size: ${WINDOW_MS} },
  aggregate: { init: () => 0, add: (count) => count + 1 },
};
`,
  );

  // 1. kappa run, as a process; its peak resident memory polled from /proc.
  const output = join(dir, 'table.jsonl');
  const startedAt = performance.now();
  const child = spawn(
    process.execPath,
    [...cpuProfileArgs, CLI, 'run', job, '--input', input, '--partitions', String(PARTITIONS), '--output', output],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const cpu = cpuMeter({ 'kappa run': child.pid! });
  let peakKb = 0;
  let cpuNote = '';
  const poll = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      peakKb = Math.max(peakKb, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
      cpuNote = cpu();
    } catch {
      // exited
    }
  }, 50);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(poll);
  const kappaSeconds = (performance.now() - startedAt) / 1000;
  if (code !== 0) throw new Error(`kappa run exited ${code}: ${stderr}`);
  const table = new Map<string, number>();
  for (const line of readFileSync(output, 'utf8').split('\n')) {
    if (line === '') continue;
    const row = JSON.parse(line) as { key: string; start: number; value: number };
    table.set(`${row.key}.${row.start}`, row.value);
  }

  // 2. DuckDB over the same file, the same aggregation.
  const instance = await DuckDBInstance.create(':memory:');
  const db = await instance.connect();
  const duckCpu = cpuMeter({ 'this process (DuckDB)': process.pid });
  const duckStartedAt = performance.now();
  await db.run(
    `CREATE TABLE windows AS SELECT user, ts - ts % ${WINDOW_MS} AS start, count(*)::INTEGER AS clicks
     FROM read_json('${input}', format = 'newline_delimited', columns = {'user': 'VARCHAR', 'ts': 'BIGINT', 'page': 'INTEGER'})
     GROUP BY ALL`,
  );
  const duckSeconds = (performance.now() - duckStartedAt) / 1000;
  const duckNote = duckCpu();
  const expected = new Map<string, number>();
  for (const row of (await db.runAndReadAll('SELECT user, start, clicks FROM windows')).getRowObjects())
    expected.set(`${String(row.user)}.${Number(row.start)}`, Number(row.clicks));
  db.closeSync();
  instance.closeSync();

  const differing = [...expected].filter(([row, count]) => table.get(row) !== count).length;
  console.log(
    `kappa run over ${totalEvents.toLocaleString('en')} lines (${keyCount.toLocaleString('en')} keys, ${PARTITIONS} partitions): table ${table.size.toLocaleString('en')} rows, DuckDB ${expected.size.toLocaleString('en')}: ${differing === 0 && table.size === expected.size ? 'every row equal' : `${differing} rows differ`}`,
  );
  console.log(
    `kappa run: ${kappaSeconds.toFixed(2)} s, ${Math.round(totalEvents / kappaSeconds).toLocaleString('en')} events/s, peak ${(peakKb / 1024).toFixed(0)} MB; ${cpuNote}`,
  );
  console.log(
    `DuckDB read_json + GROUP BY: ${duckSeconds.toFixed(2)} s, ${Math.round(totalEvents / duckSeconds).toLocaleString('en')} events/s; ${duckNote}`,
  );
  console.log(`kappa run / DuckDB: ${(kappaSeconds / duckSeconds).toFixed(1)}× the time (issue 17 asks ≤ 5×)`);
  if (differing > 0 || table.size !== expected.size) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
