// The answer a replayed table must equal, from the batch layer of a Lambda architecture: DuckDB
// running the same aggregation (a count per key per tumbling window) over the same events from a
// file, timed as a figure of its own; and the row-by-row check of a replayed serving table against it.
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { MAX_PAGE_ROWS, type ServingTables } from '../tables/index.js';
import { cpuMeter } from './cpu-meter.js';
import type { Measurement } from './replay-report.js';

/**
 * Count per key per window, DuckDB over Parquet and over CSV, each timed into `measurements`;
 * returns the Parquet answer by `<key>.<start>`.
 */
export async function runDuckDb(
  csvFile: string,
  windowMs: number,
  measurements: Measurement[],
): Promise<Map<string, number>> {
  const instance = await DuckDBInstance.create(':memory:');
  const db = await instance.connect();
  try {
    const columns = `columns = {'user': 'VARCHAR', 'ts': 'BIGINT', 'page': 'INTEGER'}, header = true`;
    const parquetFile = csvFile.replace(/\.csv$/, '.parquet');
    // Not timed: the file a batch layer would keep (written once, read by every batch job).
    await db.run(`COPY (SELECT * FROM read_csv('${csvFile}', ${columns})) TO '${parquetFile}' (FORMAT parquet)`);
    const aggregation = (source: string) =>
      `CREATE OR REPLACE TABLE windows AS SELECT user, ts - ts % ${windowMs} AS start, count(*)::INTEGER AS clicks FROM ${source} GROUP BY ALL`;
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

/**
 * DuckDB over the archive's segment files (the Parquet objects as sealed): the same GROUP BY on
 * their `key` and `event_time` columns, timed like the file runs; checked against the CSV answer.
 */
export async function runDuckDbOnArchive(
  files: string[],
  windowMs: number,
  measurements: Measurement[],
): Promise<Map<string, number>> {
  const instance = await DuckDBInstance.create(':memory:');
  const db = await instance.connect();
  try {
    const list = files.map((file) => `'${file}'`).join(', ');
    const cpu = cpuMeter({ 'this process (DuckDB)': process.pid });
    const startedAt = performance.now();
    await db.run(
      `CREATE OR REPLACE TABLE windows AS SELECT key AS user, event_time - event_time % ${windowMs} AS start, count(*)::INTEGER AS clicks FROM read_parquet([${list}]) GROUP BY ALL`,
    );
    const seconds = (performance.now() - startedAt) / 1000;
    const name = 'DuckDB, archive segments';
    measurements.push({
      name,
      seconds,
      note: `reads the ${files.length} Parquet segment files the archiver wrote, aggregates into an in-memory table; ${cpu()}`,
    });
    console.error(`${name}: ${seconds.toFixed(2)} s`);
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

/** A `<key>.<start>` row id split into its key and window start. */
export function splitRowId(row: string): [string, number] {
  const dot = row.lastIndexOf('.');
  return [row.slice(0, dot), Number(row.slice(dot + 1))];
}

/**
 * Reads the version's whole table page by page in row-key order through the backend-neutral
 * `ServingTables` (as `kappa view` does), so one check serves KV, PostgreSQL and Redis, and
 * compares every row with DuckDB's; returns the mismatches. Tombstones are not listed: a retracted
 * window shows as missing. `pageRows` is MAX_PAGE_ROWS, as a reader gets, unless the bench asks
 * for larger pages (the KV backend lists every key name of the table for each page).
 */
export async function checkTable(
  tables: ServingTables,
  job: string,
  version: string,
  fired: Map<string, number>,
  pageRows = MAX_PAGE_ROWS,
): Promise<number> {
  const startedAt = performance.now();
  const table = new Map<string, number>();
  const problems: string[] = [];
  let after: string | undefined;
  do {
    const page = await tables.page(job, version, { limit: pageRows, after });
    for (const row of page.rows) {
      const id = `${row.key}.${row.start}`;
      if (row.row !== undefined || row.start === undefined)
        problems.push(`${id}: not a window row (${JSON.stringify(row)})`);
      else if (table.has(id)) problems.push(`${id}: listed twice`);
      else table.set(id, row.value as number);
    }
    after = page.next;
  } while (after !== undefined);
  const readSeconds = (performance.now() - startedAt) / 1000;
  for (const [row, count] of fired) {
    const got = table.get(row);
    if (got !== count) problems.push(`${row}: table ${got ?? 'missing'}, DuckDB ${count}`);
  }
  for (const row of table.keys())
    if (!fired.has(row)) problems.push(`${row}: in the table, not a fired window in DuckDB's answer`);
  const sum = (values: Iterable<number>) => [...values].reduce((total, value) => total + value, 0);
  const summary = `${version} ${tables.kind} table (read in ${readSeconds.toFixed(1)} s): ${table.size.toLocaleString('en')} rows, ${sum(table.values()).toLocaleString('en')} clicks; DuckDB (fired windows): ${fired.size.toLocaleString('en')} rows, ${sum(fired.values()).toLocaleString('en')} clicks`;
  if (problems.length === 0) {
    console.error(`${summary}: every row equal`);
  } else {
    console.error(
      `\n!!! MISMATCH ${summary}: ${problems.length} differences, first ones:\n  ${problems.slice(0, 10).join('\n  ')}\n`,
    );
  }
  return problems.length;
}
