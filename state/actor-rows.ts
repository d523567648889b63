// The rows of one active actor key as KeyedState holds them in memory: per namespace, scalar
// subKeys in one Map and composite subKeys under a string identity, each row with its dirty,
// deleted and stored flags. A row is stored in RocksDB under encodeKey([key, namespace, ...subKey]).
import { StateError } from './errors.js';
import { decodeKey, encodeKey, type KeyPart } from './key-encoding.js';

export type SubKey = KeyPart | readonly KeyPart[];

export class StateRowEntry {
  /** Set while the row has a change not yet written by flush(). */
  dirty = false;
  /** A delete waiting for flush(); the entry stays so a later put reuses it. */
  deleted = false;

  constructor(
    readonly actor: ActiveActor,
    readonly namespace: string,
    readonly subKey: SubKey,
    public value: unknown,
    /** Whether RocksDB holds the row as of the last flush: a delete of an unstored row writes nothing. */
    public stored: boolean,
  ) {}
}

/**
 * Rows of one namespace of one actor. Scalar subKeys are Map keys as they are (Map tells 1 from
 * "1", and treats -0 as 0 as the key encoding does); composite subKeys get a string identity.
 */
export class NamespaceRows {
  readonly scalar = new Map<KeyPart, StateRowEntry>();
  composite: Map<string, StateRowEntry> | undefined;
}

export class ActiveActor {
  readonly namespaces = new Map<string, NamespaceRows>();
  dirtyRows = 0;
  /** When it was last activated (KeyedState's count of activations): eviction takes the lowest first. */
  lastActivation = 0;
  /** False once evicted: a reference to it held elsewhere no longer names the key's rows. */
  resident = true;

  constructor(readonly key: string) {}
}

/** Adds a row read from RocksDB (so stored and clean) to an actor being loaded. */
export function addStoredRow(actor: ActiveActor, namespace: string, subKey: SubKey, value: unknown): void {
  const rows = namespaceRows(actor, namespace);
  const entry = new StateRowEntry(actor, namespace, subKey, value, true);
  if (typeof subKey === 'object') (rows.composite ??= new Map()).set(compositeIdentity(subKey), entry);
  else rows.scalar.set(subKey, entry);
}

export function findEntry(actor: ActiveActor, namespace: string, subKey: SubKey): StateRowEntry | undefined {
  const rows = actor.namespaces.get(namespace);
  if (rows === undefined) return undefined;
  if (typeof subKey !== 'object') return rows.scalar.get(subKey);
  // A one-part composite is the same row as its scalar: their byte encodings are equal.
  if (subKey.length === 1) return rows.scalar.get(subKey[0]!);
  return rows.composite?.get(compositeIdentity(subKey));
}

/** Forgets a deleted row once RocksDB no longer holds it. */
export function dropEntry(entry: StateRowEntry): void {
  const rows = entry.actor.namespaces.get(entry.namespace);
  if (rows === undefined) return;
  if (typeof entry.subKey === 'object') {
    const identity = compositeIdentity(entry.subKey);
    if (rows.composite?.get(identity) === entry) rows.composite.delete(identity);
  } else if (rows.scalar.get(entry.subKey) === entry) {
    rows.scalar.delete(entry.subKey);
  }
}

export function encodeRowKey(entry: StateRowEntry): Uint8Array {
  const subKey = entry.subKey;
  return typeof subKey === 'object'
    ? encodeKey([entry.actor.key, entry.namespace, ...subKey])
    : encodeKey([entry.actor.key, entry.namespace, subKey]);
}

export function decodeRowKey(rowKey: Uint8Array, key: string): KeyPart[] {
  const parts = decodeKey(rowKey);
  if (parts.length < 2 || parts[0] !== key || typeof parts[1] !== 'string') {
    throw new StateError(
      'STATE_KEY_CORRUPT',
      `row under actor key ${JSON.stringify(key)} is not (key, namespace, ...subKey): ${JSON.stringify(parts)}`,
    );
  }
  return parts;
}

export function namespaceRows(actor: ActiveActor, namespace: string): NamespaceRows {
  let rows = actor.namespaces.get(namespace);
  if (rows === undefined) {
    rows = new NamespaceRows();
    actor.namespaces.set(namespace, rows);
  }
  return rows;
}

/**
 * A string naming a composite subKey uniquely: numbers print without quotes (String(-0) is "0",
 * as in the key encoding), strings as JSON with quotes, so the comma separator is unambiguous.
 * One-part composites never get here: they are the same row as their scalar (see findEntry).
 */
export function compositeIdentity(subKey: readonly KeyPart[]): string {
  let identity = '';
  for (let i = 0; i < subKey.length; i++) {
    const part = subKey[i]!;
    if (i > 0) identity += ',';
    if (typeof part === 'number') {
      if (part !== part) throw new StateError('STATE_KEY_INVALID', 'a subKey part is NaN');
      identity += String(part);
    } else if (typeof part === 'string') {
      identity += JSON.stringify(part);
    } else {
      throw new StateError('STATE_KEY_INVALID', `a subKey part must be a string or a number, found ${typeof part}`);
    }
  }
  return identity;
}
