import type { ServingTableRow } from '../protocol/index.js';
import type { Output } from '../worker/types.js';

/** The shape `kappa view --json` and `kappa run` print: one object per row. */
export interface ViewRow {
  key: string;
  /** An actor's named row (`emit(value, { row })`), when it has one. */
  row?: string;
  start?: number;
  end?: number;
  value: unknown;
}

export function toViewRow(row: Output | ServingTableRow): ViewRow {
  const start = 'window' in row ? row.window?.start : (row as ServingTableRow).start;
  const end = 'window' in row ? row.window?.end : (row as ServingTableRow).end;
  const name = 'row' in row && typeof row.row === 'string' ? { row: row.row } : {};
  return start === undefined
    ? { key: row.key, ...name, value: row.value }
    : { key: row.key, ...name, start, end, value: row.value };
}
