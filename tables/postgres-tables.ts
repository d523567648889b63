// The PostgreSQL backend: one table per job version, and per job a view (the alias) that apps
// query with plain SQL. Names are quoted identifiers in the connection's current schema (pick
// another with `?options=-c%20search_path%3D<schema>` in KAPPA_POSTGRES_URL):
//   table "kappa_<job>@<version>"  row_key text primary key (protocol/serving-table.ts), key,
//                                  row_name (an actor's named row, else null), window_start,
//                                  window_end (ms, null for actor outputs), value jsonb,
//                                  revision, retracted
//   view  "kappa_<job>"            SELECT key, row_name, window_start, window_end, value, revision
//                                  FROM <the aliased version's table> WHERE NOT retracted
// A name longer than PostgreSQL's 63 bytes is cut and suffixed with a hash of the whole name
// (`#` + 10 hex digits); COMMENT ON TABLE/VIEW records the job and version either way.
import { createHash } from 'node:crypto';
import pg from 'pg';
import { assertName, KappaError, kvKeyToken, type ServingTableRow } from '../protocol/index.js';
import type { DiffRow, VersionComparison } from './diff.js';
import {
  assertTableName,
  newestPerRow,
  sortRows,
  type CompareOptions,
  type PageOptions,
  type ServingTables,
  type TableOutput,
  type TablePage,
  type TableWriter,
} from './types.js';

/** The SQLSTATE of an error the server sent (undefined for a connection or client error). */
function sqlState(error: unknown): string | undefined {
  return error instanceof pg.DatabaseError ? error.code : undefined;
}

/** PostgreSQL cuts identifiers at 63 bytes (NAMEDATALEN - 1); ours must fit whole. */
const MAX_IDENTIFIER_BYTES = 63;

/** `kappa_<job>@<version>`: '@' is outside the job/version alphabet, so no two versions share a name. */
export function postgresTableName(job: string, version: string): string {
  assertTableName(job, version);
  return fitIdentifier(`kappa_${job}@${version}`);
}

/** `kappa_<job>`: the view apps read; it selects the live rows of the aliased version's table. */
export function postgresViewName(job: string): string {
  assertName('job', job);
  return fitIdentifier(`kappa_${job}`);
}

function fitIdentifier(name: string): string {
  if (Buffer.byteLength(name) <= MAX_IDENTIFIER_BYTES) return name;
  // '#' never occurs in a full name, so a shortened name cannot equal one.
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 10);
  return `${name.slice(0, MAX_IDENTIFIER_BYTES - 11)}#${hash}`;
}

function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** Errors PostgreSQL reports for two writers locking the same rows in another order; retried. */
const RETRYABLE = new Set(['40P01', '40001']);

export interface PostgresTablesOptions {
  /** pg pool size (default 4: a worker thread writes one batch at a time). */
  maxConnections?: number;
}

export class PostgresTables implements ServingTables {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;

  constructor(connectionString: string, options: PostgresTablesOptions = {}) {
    this.pool = new pg.Pool({ connectionString, max: options.maxConnections ?? 4, application_name: 'kappa' });
    // An idle connection that breaks emits here; the next query gets a fresh one (or its own error).
    this.pool.on('error', () => {});
  }

  async writer(job: string, version: string): Promise<TableWriter> {
    await this.ensureTable(job, version);
    return new PostgresTableWriter(this.pool, job, version);
  }

  async exists(job: string, version: string): Promise<boolean> {
    const result = await this.pool.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [
      quote(postgresTableName(job, version)),
    ]);
    return result.rows[0]?.found === true;
  }

  async read(job: string, version: string, key: string): Promise<ServingTableRow[]> {
    // A key's rows are `<token>` and `<token>.…`: under the C collation the latter sort between
    // `<token>.` and `<token>/` ('/' follows '.'), so the primary key index serves both; the stored
    // key decides (a digest token stands for a key too long to spell out).
    const rows = await this.query(
      job,
      version,
      (table) =>
        `SELECT ${COLUMNS} FROM ${table} WHERE (row_key = $1 OR (row_key > $1 || '.' AND row_key < $1 || '/')) AND key = $2 AND NOT retracted`,
      [kvKeyToken(key), key],
    );
    return sortRows(rows.map(toServingRow));
  }

  /** Keyset pagination on the primary key: each page is one index range scan, whatever the table's size. */
  async page(job: string, version: string, { limit, after }: PageOptions): Promise<TablePage> {
    const rows = await this.query(
      job,
      version,
      (table) =>
        `SELECT row_key, ${COLUMNS} FROM ${table} WHERE ${after === undefined ? '' : 'row_key > $2 AND '}NOT retracted ORDER BY row_key LIMIT $1`,
      after === undefined ? [limit + 1] : [limit + 1, after],
    );
    const more = rows.length > limit;
    if (more) rows.length = limit;
    return { rows: rows.map(toServingRow), ...(more ? { next: rows.at(-1)!.row_key } : {}) };
  }

  private async query(
    job: string,
    version: string,
    sql: (table: string) => string,
    parameters: unknown[],
  ): Promise<(StoredRow & { row_key: string })[]> {
    const table = quote(postgresTableName(job, version));
    try {
      return (await this.pool.query<StoredRow & { row_key: string }>(sql(table), parameters)).rows;
    } catch (error) {
      if (sqlState(error) === '42P01') {
        throw new KappaError(
          'TOPIC_NOT_FOUND',
          `job '${job}' version '${version}' has no serving table (PostgreSQL table ${table})`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * Two versions of a job compared by the database (tables/diff.ts): a FULL OUTER JOIN of their live,
   * final rows on the primary key, counted in one scan; the keys with the most differing rows and
   * the first differing rows by row key each take one more. jsonb equality decides "same" (key
   * order and number spelling do not count), as the merge's deep equality does.
   */
  async compareVersions(job: string, from: string, to: string, options: CompareOptions): Promise<VersionComparison> {
    const fromTable = quote(postgresTableName(job, from));
    const toTable = quote(postgresTableName(job, to));
    for (const version of [from, to])
      if (!(await this.exists(job, version)))
        throw new KappaError(
          'TOPIC_NOT_FOUND',
          `job '${job}' version '${version}' has no serving table (PostgreSQL table ${quote(postgresTableName(job, version))})`,
        );
    // $1: the final bound (null with $2 = false: every window); $2: whether a bound applies; $3: the key or null.
    const side = (table: string) =>
      `SELECT row_key, key, row_name, window_start, window_end, value FROM ${table}
       WHERE NOT retracted AND (window_end IS NULL OR NOT $2::boolean OR window_end - 1 <= $1::bigint)
         AND ($3::text IS NULL OR key = $3::text)`;
    const joined = `(${side(fromTable)}) f FULL OUTER JOIN (${side(toTable)}) t ON f.row_key = t.row_key`;
    const differs = 'f.row_key IS NULL OR t.row_key IS NULL OR f.value IS DISTINCT FROM t.value';
    const bounded = options.finalThroughMs !== undefined;
    const parameters = [
      options.finalThroughMs === null || options.finalThroughMs === undefined
        ? null
        : Math.floor(options.finalThroughMs),
      bounded,
      options.key ?? null,
    ];
    // With a bound of null no window is final: `window_end - 1 <= NULL` is never true.
    const counts = await this.pool.query<Record<keyof DiffCountsRow, string>>(
      `SELECT count(*) AS compared,
              count(*) FILTER (WHERE f.row_key IS NOT NULL AND t.row_key IS NOT NULL AND f.value = t.value) AS same,
              count(*) FILTER (WHERE f.row_key IS NOT NULL AND t.row_key IS NOT NULL AND f.value <> t.value) AS changed,
              count(*) FILTER (WHERE t.row_key IS NULL) AS only_from,
              count(*) FILTER (WHERE f.row_key IS NULL) AS only_to
       FROM ${joined}`,
      parameters,
    );
    const topKeys = await this.pool.query<{ key: string; rows: string }>(
      `SELECT COALESCE(f.key, t.key) AS key, count(*) AS rows FROM ${joined} WHERE ${differs}
       GROUP BY 1 ORDER BY 2 DESC, COALESCE(f.key, t.key) COLLATE "C" LIMIT $4`,
      [...parameters, options.topKeys],
    );
    const rows = await this.pool.query<DifferingRow>(
      `SELECT COALESCE(f.key, t.key) AS key, COALESCE(f.row_name, t.row_name) AS row_name,
              COALESCE(f.window_start, t.window_start) AS window_start, COALESCE(f.window_end, t.window_end) AS window_end,
              f.row_key IS NOT NULL AS in_from, t.row_key IS NOT NULL AS in_to, f.value AS from_value, t.value AS to_value
       FROM ${joined} WHERE ${differs} ORDER BY COALESCE(f.row_key, t.row_key) LIMIT $4`,
      [...parameters, options.limit],
    );
    const count = counts.rows[0]!;
    return {
      compared: Number(count.compared),
      same: Number(count.same),
      changed: Number(count.changed),
      onlyInFrom: Number(count.only_from),
      onlyInTo: Number(count.only_to),
      topKeys: topKeys.rows.map((row) => ({ key: row.key, rows: Number(row.rows) })),
      changedRows: rows.rows.map(toDiffRow),
    };
  }

  /**
   * Points the view at the version's table (created empty if no output reached it yet). CREATE OR
   * REPLACE VIEW swaps the definition in one transaction: a concurrent SELECT waits for the lock
   * and then reads the old table or the new one, never an error or nothing.
   */
  async setAlias(job: string, version: string): Promise<void> {
    await this.ensureTable(job, version);
    const view = quote(postgresViewName(job));
    const table = quote(postgresTableName(job, version));
    await this.transaction(async (client) => {
      await client.query(
        `CREATE OR REPLACE VIEW ${view} AS SELECT key, row_name, window_start, window_end, value, revision FROM ${table} WHERE NOT retracted`,
      );
      await client.query(
        `COMMENT ON VIEW ${view} IS ${literal(`kappa serving table alias: job ${job}, version ${version}`)}`,
      );
    });
  }

  /** Drops the version's table; PostgreSQL itself refuses while the job's view selects from it. */
  async drop(job: string, version: string): Promise<void> {
    try {
      await this.pool.query(`DROP TABLE IF EXISTS ${quote(postgresTableName(job, version))}`);
    } catch (error) {
      if (sqlState(error) === '2BP01') {
        throw new KappaError(
          'ADMIN_REJECTED',
          `job '${job}' version '${version}' is the version the alias (view ${quote(postgresViewName(job))}) serves; cut over to another version before dropping its table`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async ensureTable(job: string, version: string): Promise<void> {
    const name = postgresTableName(job, version);
    const table = quote(name);
    await this.transaction(async (client) => {
      // The writers of a new table (one per partition) create it at once, and concurrent CREATE
      // TABLE IF NOT EXISTS can still collide in the catalog (pg_type unique violation): take turns.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [name]);
      const found = await client.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [table]);
      if (found.rows[0]?.found === true) return;
      await client.query(
        `CREATE TABLE ${table} (
          row_key text COLLATE "C" PRIMARY KEY,
          key text NOT NULL,
          row_name text,
          window_start bigint,
          window_end bigint,
          value jsonb,
          revision bigint NOT NULL,
          retracted boolean NOT NULL DEFAULT false
        )`,
      );
      await client.query(
        `COMMENT ON TABLE ${table} IS ${literal(`kappa serving table: job ${job}, version ${version}`)}`,
      );
    });
  }

  private async transaction(work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await work(client);
      await client.query('COMMIT');
    } catch (error) {
      // A connection whose ROLLBACK failed is not handed out again.
      const rollback = await client.query('ROLLBACK').then(
        () => undefined,
        (rollbackError: Error) => rollbackError,
      );
      client.release(rollback);
      throw error;
    }
    client.release();
  }
}

/** The columns a reader gets, in the order of the alias view. */
const COLUMNS = 'key, row_name, window_start, window_end, value, revision';

interface StoredRow {
  key: string;
  row_name: string | null;
  window_start: string | null;
  window_end: string | null;
  value: unknown;
  revision: string;
}

interface DiffCountsRow {
  compared: string;
  same: string;
  changed: string;
  only_from: string;
  only_to: string;
}

interface DifferingRow {
  key: string;
  row_name: string | null;
  window_start: string | null;
  window_end: string | null;
  in_from: boolean;
  in_to: boolean;
  from_value: unknown;
  to_value: unknown;
}

function toDiffRow(row: DifferingRow): DiffRow {
  const shown: DiffRow = { key: row.key };
  if (row.row_name !== null) shown.row = row.row_name;
  if (row.window_start !== null) shown.start = Number(row.window_start);
  if (row.window_end !== null) shown.end = Number(row.window_end);
  if (row.in_from) shown.from = row.from_value;
  if (row.in_to) shown.to = row.to_value;
  return shown;
}

function toServingRow(row: StoredRow): ServingTableRow {
  // bigint columns arrive as strings; event times and revisions fit a double exactly.
  const served: ServingTableRow = { key: row.key, value: row.value, revision: Number(row.revision) };
  if (row.row_name !== null) served.row = row.row_name;
  if (row.window_start !== null) served.start = Number(row.window_start);
  if (row.window_end !== null) served.end = Number(row.window_end);
  return served;
}

/**
 * Upserts a batch in one INSERT … SELECT FROM unnest(…) ON CONFLICT statement whose update only
 * applies when the incoming revision is newer, so a re-emission, a replay after a restore or a
 * resumed zombie never replaces a newer row. A retraction is a row with retracted = true and its
 * revision (a tombstone), which an older update cannot bring back.
 */
export class PostgresTableWriter implements TableWriter {
  private readonly upsert: string;

  constructor(
    private readonly pool: pg.Pool,
    readonly job: string,
    readonly version: string,
  ) {
    const table = quote(postgresTableName(job, version));
    this.upsert = `INSERT INTO ${table} AS t (row_key, key, row_name, window_start, window_end, value, revision, retracted)
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]::jsonb[], $7::bigint[], $8::boolean[])
      ON CONFLICT (row_key) DO UPDATE SET key = excluded.key, row_name = excluded.row_name, window_start = excluded.window_start, window_end = excluded.window_end,
        value = excluded.value, revision = excluded.revision, retracted = excluded.retracted
      WHERE t.revision < excluded.revision`;
  }

  async write(outputs: readonly TableOutput[]): Promise<void> {
    if (outputs.length === 0) return;
    // ON CONFLICT cannot touch a row twice in one statement: keep each row's newest output.
    const newest = newestPerRow(outputs);
    // Rows in one order for every writer, so two writers of overlapping batches cannot deadlock.
    const rowKeys = [...newest.keys()].sort();
    const keys: string[] = [];
    const rowNames: (string | null)[] = [];
    const starts: (number | null)[] = [];
    const ends: (number | null)[] = [];
    const values: string[] = [];
    const revisions: number[] = [];
    const retracted: boolean[] = [];
    for (const rowKey of rowKeys) {
      const output = newest.get(rowKey)!;
      const retract = output.kind === 'retract';
      keys.push(output.key);
      rowNames.push(output.row ?? null);
      starts.push(output.window?.start ?? null);
      ends.push(output.window?.end ?? null);
      values.push(retract ? 'null' : (JSON.stringify(output.value) ?? 'null'));
      revisions.push(output.revision);
      retracted.push(retract);
    }
    const parameters = [rowKeys, keys, rowNames, starts, ends, values, revisions, retracted];
    for (let attempt = 1; ; attempt++) {
      try {
        await this.pool.query(this.upsert, parameters);
        return;
      } catch (error) {
        const code = sqlState(error);
        if (code === '42P01') {
          throw new KappaError(
            'TOPIC_NOT_FOUND',
            `job '${this.job}' version '${this.version}' has no serving table (dropped?); ${outputs.length} outputs not written`,
            { cause: error },
          );
        }
        if (code === undefined || !RETRYABLE.has(code) || attempt >= 5) throw error;
      }
    }
  }
}
