// The row format of a serving table, shared by the worker (writes) and every reader (`kappa view`,
// the coordinator's query API, apps). Values are JSON so any NATS client can read them.
//
// A row key names one row of one table in every backend (a NATS KV key, a PostgreSQL primary key,
// a Redis hash field), so it must be a valid KV key ([-_=.a-zA-Z0-9], a NATS subject that the
// server's 4 KiB control line still carries) and distinct for distinct (key, row, window):
//   <keyToken>                      an actor output (the key's own row)
//   <keyToken>.r.<rowToken>         an actor output in a named row (`emit(value, { row })`)
//   <keyToken>.<start>.<end>        a window result (ms since the epoch, integers)
// A token holds no '.', so the parts split back unambiguously; after the key token comes either
// 'r' or a number, never both.
import { createHash } from 'node:crypto';
import { MAX_KEY_BYTES } from './limits.js';

/** A plain key is its own token: KV-safe characters, not starting with '=' (the encoded forms do). */
const PLAIN_TOKEN = /^[-_a-zA-Z0-9][-_=a-zA-Z0-9]{0,199}$/;

/** Every key within MAX_KEY_BYTES keeps a reversible token: '=' + base64url of its UTF-8 bytes. */
export const MAX_KEY_TOKEN_CHARS = 1 + Math.ceil((MAX_KEY_BYTES * 4) / 3);

/** A row name is a short label; a longer one is stored under its digest. */
const MAX_ROW_TOKEN_CHARS = 200;

/**
 * The longest row key: a key and a row token at their limits, and a window. With the bucket name
 * twice in a direct-get subject it stays well inside nats-server's 4 KiB control line.
 */
export const MAX_ROW_KEY_CHARS = MAX_KEY_TOKEN_CHARS + 3 + MAX_ROW_TOKEN_CHARS + 2 * 21;

/** What a row key may hold: a page cursor from outside is checked against it. */
export const ROW_KEY_PATTERN = /^[-_=a-zA-Z0-9]+(\.[-_=a-zA-Z0-9]+)*$/;

/**
 * The token of a key or row name: the name itself when plain, else '=' + base64url of its UTF-8
 * bytes, else (longer than `maxChars`) '==' + base64url of its SHA-256. base64url has no '=', so the
 * three forms never meet; a digest row keeps the full key and row in its value for a reader to check.
 */
export function nameToken(name: string, maxChars = MAX_KEY_TOKEN_CHARS): string {
  if (PLAIN_TOKEN.test(name)) return name;
  const encoded = `=${Buffer.from(name, 'utf8').toString('base64url')}`;
  if (encoded.length <= maxChars) return encoded;
  return `==${createHash('sha256').update(name, 'utf8').digest('base64url')}`;
}

/** The token every row of `key` starts with (`<token>` or `<token>.…`). */
export function kvKeyToken(key: string): string {
  return nameToken(key);
}

/** Row key of (key, row, window); see the format at the top of this file. */
export function servingTableRowKey(key: string, window?: { start: number; end: number }, row?: string): string {
  let rowKey = nameToken(key);
  if (row !== undefined) rowKey += `.r.${nameToken(row, MAX_ROW_TOKEN_CHARS)}`;
  if (window) rowKey += `.${window.start}.${window.end}`;
  return rowKey;
}

export interface ServingTableRow {
  key: string;
  /** The named row of an actor output (`emit(value, { row })`); absent for the key's own row and windows. */
  row?: string;
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
export function liveRow(
  entry: { operation: string; value: Uint8Array } | null | undefined,
): ServingTableRow | undefined {
  if (!entry || entry.operation !== 'PUT') return undefined;
  const row = decodeRow(entry.value);
  return row.retracted === true ? undefined : row;
}
