// Serving tables: where a job version's results are upserted and read, one table per version,
// behind an alias (job → version) that apps read. Three backends implement `ServingTables`:
// NATS KV (default, no extra infrastructure), PostgreSQL and Redis. Every backend keeps, per row
// (key, window), the newest output revision: a re-emission or an older revision never wins, and a
// retraction is a tombstone with its revision so an older update cannot bring the row back.
import { servingTableRowKey, type ServingTableRow } from '../protocol/index.js';

export type TableKind = 'kv' | 'postgres' | 'redis';

export const TABLE_KINDS: readonly TableKind[] = ['kv', 'postgres', 'redis'];

/** One result to upsert (the fields of a worker Output that a table needs). */
export interface TableOutput {
  key: string;
  window?: { start: number; end: number };
  value: unknown;
  revision: number;
  kind: 'update' | 'retract';
}

export interface TableWriter {
  /** Upserts a batch (newest revision per row wins); resolves once it is durable in the backend. */
  write(outputs: readonly TableOutput[]): Promise<void>;
}

export interface ServingTables {
  readonly kind: TableKind;
  /** A writer for a version's table, creating the table if needed. */
  writer(job: string, version: string): Promise<TableWriter>;
  /** Live rows of a version's table (tombstones skipped), all or those of one key, sorted by key then start. */
  read(job: string, version: string, key?: string): Promise<ServingTableRow[]>;
  /** Whether the version's table exists. */
  exists(job: string, version: string): Promise<boolean>;
  /**
   * Points the backend's alias of `job` at `version` in one step: a reader sees the old version or
   * the new one, never neither (KV: the alias key; PostgreSQL: the view, replaced in one
   * transaction; Redis: the alias key).
   */
  setAlias(job: string, version: string): Promise<void>;
  /** Drops a version's table (retire). */
  drop(job: string, version: string): Promise<void>;
  close(): Promise<void>;
}

/** Where the PostgreSQL and Redis backends are (env KAPPA_POSTGRES_URL, KAPPA_REDIS_URL). */
export interface TableSettings {
  postgresUrl?: string;
  redisUrl?: string;
}

export function tableSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): TableSettings {
  return { postgresUrl: env.KAPPA_POSTGRES_URL, redisUrl: env.KAPPA_REDIS_URL };
}

/** Sorts rows as every reader returns them: by key, then window start. */
export function sortRows(rows: ServingTableRow[]): ServingTableRow[] {
  return rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : (a.start ?? 0) - (b.start ?? 0)));
}

/** Each row's newest output in a batch, by row key (a window re-emitted within a batch is written once). */
export function newestPerRow(outputs: readonly TableOutput[]): Map<string, TableOutput> {
  const newest = new Map<string, TableOutput>();
  for (const output of outputs) {
    const rowKey = servingTableRowKey(output.key, output.window);
    const seen = newest.get(rowKey);
    if (seen === undefined || seen.revision < output.revision) newest.set(rowKey, output);
  }
  return newest;
}
