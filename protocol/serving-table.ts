// The row format of a serving table in NATS KV, shared by the worker (writes) and every reader
// (`kappa view`, the coordinator's query API, apps). Values are JSON so any NATS client can read them.

/** KV keys allow [-/_=.a-zA-Z0-9]; a key outside that (or starting with '=') is base64url'ed behind '='. */
const KV_SAFE = /^[-_a-zA-Z0-9][-_=a-zA-Z0-9]{0,199}$/;

export function kvKeyToken(key: string): string {
  return KV_SAFE.test(key) ? key : `=${Buffer.from(key, 'utf8').toString('base64url')}`;
}

/** Row key: `<key>` for actor outputs, `<key>.<start>.<end>` for windowed ones. */
export function servingTableRowKey(key: string, window?: { start: number; end: number }): string {
  const token = kvKeyToken(key);
  return window ? `${token}.${window.start}.${window.end}` : token;
}

export interface ServingTableRow {
  key: string;
  start?: number;
  end?: number;
  value: unknown;
  revision: number;
  /**
   * A retracted row (a session window merged into a larger one) stays as a tombstone with its
   * revision, so an older re-emission of it can never bring it back. Readers skip it.
   */
  retracted?: boolean;
}

export function encodeRow(row: ServingTableRow): Uint8Array {
  return Buffer.from(JSON.stringify(row));
}

export function decodeRow(bytes: Uint8Array): ServingTableRow {
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as ServingTableRow;
}

/** The row a reader sees for a KV entry, or undefined for a deleted entry or a tombstone. */
export function liveRow(entry: { operation: string; value: Uint8Array } | null | undefined): ServingTableRow | undefined {
  if (!entry || entry.operation !== 'PUT') return undefined;
  const row = decodeRow(entry.value);
  return row.retracted === true ? undefined : row;
}
