import type { ServingTableRow } from '../protocol/index.js';
import type { Output } from '../worker/types.js';

/** The shape `kappa view --json` and `kappa run` print: one object per row. */
export interface ViewRow {
  key: string;
  start?: number;
  end?: number;
  value: unknown;
}

export function toViewRow(row: Output | ServingTableRow): ViewRow {
  const start = 'window' in row ? row.window?.start : (row as ServingTableRow).start;
  const end = 'window' in row ? row.window?.end : (row as ServingTableRow).end;
  return start === undefined ? { key: row.key, value: row.value } : { key: row.key, start, end, value: row.value };
}
