// Serving tables: where a job version's results are upserted and read, one table per version,
// behind an alias (job → version) that apps read. Three backends implement `ServingTables`:
// NATS KV (default, no extra infrastructure), PostgreSQL and Redis. Every backend keeps, per row
// (key, window), the newest output revision: a re-emission or an older revision never wins, and a
// retraction is a tombstone with its revision so an older update cannot bring the row back.
import { assertName, ServingTableKind, servingTableRowKey, type ServingTableRow } from '../protocol/index.js';
import type { VersionComparison } from './diff.js';

/** The sink kinds that are serving tables (protocol/messages.ts holds the one list). */
export type TableKind = ServingTableKind;

export const TABLE_KINDS: readonly TableKind[] = ServingTableKind.options;

/** One result to upsert (the fields of a worker Output that a table needs). */
export interface TableOutput {
  key: string;
  /** A named row of the key (an actor's `emit(value, { row })`), kept apart from the key itself. */
  row?: string;
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
  /** Live rows of one key (tombstones skipped): its own row and windows by start, then named rows by name. */
  read(job: string, version: string, key: string): Promise<ServingTableRow[]>;
  /**
   * One page of the whole table in row-key order (protocol/serving-table.ts): up to `limit` rows
   * after the cursor `after` (a row key; none: from the start), tombstones skipped, so a page may
   * hold fewer. `next` is the cursor of the following page, absent once the table is done. Only
   * one page is held in memory, however large the table.
   */
  page(job: string, version: string, options: PageOptions): Promise<TablePage>;
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
  /**
   * Compares two versions' tables inside the backend (diff.ts uses it when both versions live in
   * it): PostgreSQL joins them in one database. Backends without it are merged page by page.
   */
  compareVersions?(job: string, from: string, to: string, options: CompareOptions): Promise<VersionComparison>;
  /**
   * The whole table in row-key order, for a backend whose `page()` costs a scan of the table per
   * page (KV): it lists the row names once and reads the rows a chunk at a time (memory: the
   * names). diff.ts uses it when present; other backends page.
   */
  rowsInOrder?(job: string, version: string): AsyncGenerator<ServingTableRow>;
  close(): Promise<void>;
}

/** What `compareVersions` compares (diff.ts). */
export interface CompareOptions {
  /** Windows ending at or before this (end − 1 ≤ it) are compared; null: none; undefined: all. */
  finalThroughMs: number | null | undefined;
  key?: string;
  /** Differing rows to return. */
  limit: number;
  /** Keys with the most differing rows to return. */
  topKeys: number;
}

export interface PageOptions {
  /** Rows per page, 1 … MAX_PAGE_ROWS. */
  limit: number;
  /** The `next` of the previous page; absent for the first. */
  after?: string;
}

export interface TablePage {
  rows: ServingTableRow[];
  next?: string;
}

/** Rows per page when a reader does not say (the coordinator's `GET /v1/views/<job>`). */
export const DEFAULT_PAGE_ROWS = 100;
/** The largest page a reader may ask for: a page is held in memory and sent whole. */
export const MAX_PAGE_ROWS = 1000;

/** Job and version names become bucket, table and key names: only plain names (NAME_PATTERN) may. */
export function assertTableName(job: string, version: string): void {
  assertName('job', job);
  assertName('version', version);
}

/**
 * Where the PostgreSQL and Redis backends are, and how many copies NATS keeps of KV tables and the
 * alias registry (default 1). Processes read them from their environment (runtime/table-settings.ts).
 */
export interface TableSettings {
  postgresUrl?: string;
  redisUrl?: string;
  replicas?: number;
}

/** Sorts rows as `read` returns them: by key; then the key's own row and its windows by start; then named rows by name. */
export function sortRows(rows: ServingTableRow[]): ServingTableRow[] {
  const byRow = (a: ServingTableRow, b: ServingTableRow) =>
    a.row === b.row ? 0 : a.row === undefined ? -1 : b.row === undefined ? 1 : a.row < b.row ? -1 : 1;
  return rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : byRow(a, b) || (a.start ?? 0) - (b.start ?? 0)));
}

/** Each row's newest output in a batch, by row key (a window re-emitted within a batch is written once). */
export function newestPerRow(outputs: readonly TableOutput[]): Map<string, TableOutput> {
  const newest = new Map<string, TableOutput>();
  for (const output of outputs) {
    const rowKey = servingTableRowKey(output.key, output.window, output.row);
    const seen = newest.get(rowKey);
    if (seen === undefined || seen.revision < output.revision) newest.set(rowKey, output);
  }
  return newest;
}
