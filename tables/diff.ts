// What a new job version changes: two versions' serving tables compared row by row over the rows
// both have made final (a window once both versions' watermarks have passed its end, an actor row
// as it stands), for the cutover gate and `kappa diff`. Each side is read through its backend's
// `page()`, which lists a table in row-key order, and the two streams are merged like a sort-merge
// join: memory holds a page of each side (plus a count per differing key), whatever the tables'
// sizes, and the two sides may live in different backends (v1 in NATS KV, v2 in PostgreSQL). Two
// versions in one PostgreSQL database are compared by the database itself (`compareVersions`: a
// FULL OUTER JOIN on the row key), which reads each table once without sending it to us.
import { isDeepStrictEqual } from 'node:util';
import { servingTableRowKey, type ServingTableRow } from '../protocol/index.js';
import { MAX_PAGE_ROWS, type ServingTables, type TableKind } from './types.js';

/** One version's table and how far its results are final. */
export interface DiffSide {
  tables: ServingTables;
  version: string;
  /**
   * The version's watermark (the minimum over its keyed tasks), ms: a window is final once it has
   * fired (Flink: watermark ≥ end − 1). Undefined: no bound (a version with no running tasks, whose
   * table no longer changes), every row as it stands. Null: no task has a watermark yet, so no
   * window is final.
   */
  watermarkMs?: number | null;
}

export interface DiffOptions {
  /** Only this key's rows. */
  key?: string;
  /** How many differing rows to return side by side (default 20). */
  limit?: number;
  /** How many keys with the most differing rows to return (default 10). */
  topKeys?: number;
}

/** A row that differs: in both versions with other values, or in one only (the other side absent). */
export interface DiffRow {
  key: string;
  row?: string;
  start?: number;
  end?: number;
  from?: unknown;
  to?: unknown;
}

export interface DiffCounts {
  /** Rows compared: every final row key of either version. */
  compared: number;
  same: number;
  changed: number;
  onlyInFrom: number;
  onlyInTo: number;
}

export interface VersionDiff extends DiffCounts {
  job: string;
  from: string;
  to: string;
  /** Windows ending at or before this (ms) were compared; null: none; absent: every window. */
  finalThroughMs?: number | null;
  /** The keys with the most differing rows (changed or in one version only), most first. */
  topKeys: { key: string; rows: number }[];
  /** Up to `limit` differing rows in row-key order. */
  changedRows: DiffRow[];
}

/** What a backend that can compare two of its own versions itself answers (PostgreSQL). */
export interface VersionComparison extends DiffCounts {
  topKeys: { key: string; rows: number }[];
  changedRows: DiffRow[];
}

/** Rows per page each backend is read in: a KV page scans the bucket's key names, so it takes larger ones. */
const PAGE_ROWS: Record<TableKind, number> = { kv: 20_000, postgres: MAX_PAGE_ROWS, redis: 5_000 };

/** Compares version `from`'s table with version `to`'s over the rows both have made final. */
export async function diffVersions(
  job: string,
  from: DiffSide,
  to: DiffSide,
  options: DiffOptions = {},
): Promise<VersionDiff> {
  const finalThroughMs = finalBound(from.watermarkMs, to.watermarkMs);
  const limit = options.limit ?? 20;
  const topKeys = options.topKeys ?? 10;
  const head = { job, from: from.version, to: to.version, ...(finalThroughMs === undefined ? {} : { finalThroughMs }) };
  // The database joins its own tables: nothing crosses the wire but the answer.
  if (from.tables === to.tables && from.tables.compareVersions !== undefined) {
    const compared = await from.tables.compareVersions(job, from.version, to.version, {
      finalThroughMs,
      key: options.key,
      limit,
      topKeys,
    });
    return { ...head, ...compared };
  }
  const isFinal = (row: ServingTableRow) =>
    row.end === undefined || finalThroughMs === undefined || (finalThroughMs !== null && row.end - 1 <= finalThroughMs);
  const counts: DiffCounts = { compared: 0, same: 0, changed: 0, onlyInFrom: 0, onlyInTo: 0 };
  const changedRows: DiffRow[] = [];
  const differingByKey = new Map<string, number>();
  const differs = (row: ServingTableRow, fromValue: unknown, toValue: unknown, which: 'from' | 'to' | 'both') => {
    differingByKey.set(row.key, (differingByKey.get(row.key) ?? 0) + 1);
    if (changedRows.length >= limit) return;
    const shown: DiffRow = { key: row.key };
    if (row.row !== undefined) shown.row = row.row;
    if (row.start !== undefined) shown.start = row.start;
    if (row.end !== undefined) shown.end = row.end;
    if (which !== 'to') shown.from = fromValue;
    if (which !== 'from') shown.to = toValue;
    changedRows.push(shown);
  };
  const left = new RowCursor(finalRows(job, from, options.key, isFinal));
  const right = new RowCursor(finalRows(job, to, options.key, isFinal));
  await Promise.all([left.advance(), right.advance()]);
  while (left.current !== undefined || right.current !== undefined) {
    counts.compared++;
    const a = left.current;
    const b = right.current;
    if (b === undefined || (a !== undefined && a.rowKey < b.rowKey)) {
      counts.onlyInFrom++;
      differs(a!.row, a!.row.value, undefined, 'from');
      await left.advance();
    } else if (a === undefined || b.rowKey < a.rowKey) {
      counts.onlyInTo++;
      differs(b.row, undefined, b.row.value, 'to');
      await right.advance();
    } else {
      if (isDeepStrictEqual(a.row.value, b.row.value)) counts.same++;
      else {
        counts.changed++;
        differs(a.row, a.row.value, b.row.value, 'both');
      }
      await Promise.all([left.advance(), right.advance()]);
    }
  }
  return { ...head, ...counts, topKeys: mostDiffering(differingByKey, topKeys), changedRows };
}

/**
 * The newest time through which both versions' windows are final: the smaller watermark. Undefined
 * when neither side bounds it; null when one side has no watermark yet.
 */
export function finalBound(from: number | null | undefined, to: number | null | undefined): number | null | undefined {
  if (from === null || to === null) return null;
  if (from === undefined) return to;
  if (to === undefined) return from;
  return Math.min(from, to);
}

/** The top `count` keys by differing rows, ties by key. */
function mostDiffering(byKey: Map<string, number>, count: number): { key: string; rows: number }[] {
  return [...byKey]
    .sort(([keyA, a], [keyB, b]) => b - a || (keyA < keyB ? -1 : keyA > keyB ? 1 : 0))
    .slice(0, count)
    .map(([key, rows]) => ({ key, rows }));
}

interface KeyedRow {
  rowKey: string;
  row: ServingTableRow;
}

/** A side's final rows in row-key order, a page at a time (one key's rows with `key`). */
async function* finalRows(
  job: string,
  side: DiffSide,
  key: string | undefined,
  isFinal: (row: ServingTableRow) => boolean,
): AsyncGenerator<KeyedRow> {
  const keyed = (row: ServingTableRow): KeyedRow => ({
    rowKey: servingTableRowKey(
      row.key,
      row.end === undefined ? undefined : { start: row.start!, end: row.end },
      row.row,
    ),
    row,
  });
  if (key !== undefined) {
    const rows = (await side.tables.read(job, side.version, key)).filter(isFinal).map(keyed);
    yield* rows.sort((a, b) => (a.rowKey < b.rowKey ? -1 : a.rowKey > b.rowKey ? 1 : 0));
    return;
  }
  if (side.tables.rowsInOrder) {
    for await (const row of side.tables.rowsInOrder(job, side.version)) if (isFinal(row)) yield keyed(row);
    return;
  }
  let after: string | undefined;
  do {
    const page = await side.tables.page(job, side.version, { limit: PAGE_ROWS[side.tables.kind], after });
    for (const row of page.rows) if (isFinal(row)) yield keyed(row);
    after = page.next;
  } while (after !== undefined);
}

/** The head of a row stream, for the merge. */
class RowCursor {
  current: KeyedRow | undefined;

  constructor(private readonly rows: AsyncGenerator<KeyedRow>) {}

  async advance(): Promise<void> {
    const next = await this.rows.next();
    this.current = next.done === true ? undefined : next.value;
  }
}
