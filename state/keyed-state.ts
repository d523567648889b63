// Keyed state of one task: an actor-granular write-back cache over a TaskStore.
//
// An actor key is activated before the engine runs its events: every row of the key is loaded
// with a prefix scan, and from then on get/put/delete are synchronous Map operations with no
// encoding (the per-event path). Changes are written back in one RocksDB batch at flush(), which
// the engine calls at each checkpoint; the JetStream log covers everything after it. Like Kafka
// Streams' caching store in front of RocksDB, but the unit of caching is the actor key, so an
// active actor never misses.
//
// A row is addressed by (key, namespace, subKey) and stored under
// encodeKey([key, namespace, ...subKey]): all rows of a key share the prefix encodeKey([key]).
import {
  ActiveActor,
  addStoredRow,
  compositeIdentity,
  decodeRowKey,
  dropEntry,
  encodeRowKey,
  findEntry,
  namespaceRows,
  StateRowEntry,
  type SubKey,
} from './actor-rows.js';
import { StateError } from './errors.js';
import { decodeKey, encodeKey } from './key-encoding.js';
import type { StateRow, TaskStore, WriteCapture } from './task-store.js';

export type { SubKey } from './actor-rows.js';

export interface KeyedStateOptions {
  /** Clean keys beyond this are dropped from memory by evict(), least recently activated first. */
  maxActiveKeys?: number;
}

export interface FlushResult {
  puts: number;
  deletes: number;
  /** Bytes of keys and values written to RocksDB. */
  bytes: number;
}

const DEFAULT_MAX_ACTIVE_KEYS = 100_000;
/** An uncached write that deletes its row. */
const DELETED = Symbol('deleted');
/** Prefix scans in flight during one activate(): enough to keep the native thread pool busy. */
const ACTIVATION_SCANS_IN_FLIGHT = 64;

export class KeyedState {
  private readonly maxActiveKeys: number;
  /** Active actors; each knows when it was last activated, and evict() takes the least recent first. */
  private readonly actors = new Map<string, ActiveActor>();
  /** Activations so far: each actor activated takes the next number, in order. */
  private activations = 0;
  /**
   * The row get/put touched last: the engine reads a row and writes it back for nearly every
   * event, so the write finds it here without looking it up again. Forgotten at flush, which may
   * drop entries; an entry of an evicted actor is never taken for the key's rows.
   */
  private recent: StateRowEntry | undefined;
  private dirty: StateRowEntry[] = [];
  /** Rows written past the cache (putUncached/deleteUncached) since the last flush, in order. */
  private uncached: Array<[rowKey: Uint8Array, value: unknown]> = [];
  private flushing = false;
  /**
   * Whether every row RocksDB holds belongs to an active key, so a key being activated has none
   * and needs no prefix scan: true from an empty store (a version replaying from the start) or a
   * restore that made every stored key active, until a key with stored rows is evicted.
   * Undefined until the first activate() looks.
   */
  private storedRowsAllActive: boolean | undefined;

  constructor(
    private readonly store: TaskStore,
    options: KeyedStateOptions = {},
  ) {
    this.maxActiveKeys = options.maxActiveKeys ?? DEFAULT_MAX_ACTIVE_KEYS;
  }

  get activeKeys(): number {
    return this.actors.size;
  }

  get dirtyRows(): number {
    return this.dirty.length + this.uncached.length;
  }

  /**
   * Loads every row of each key not yet active, with one batch of prefix scans; afterwards
   * get/put on those keys are synchronous. Keys already active move to the back of the eviction
   * order, so a key used in every batch stays resident.
   */
  async activate(keys: Iterable<string>): Promise<void> {
    // A key listed several times counts as activated where it first appears.
    const firstOfThisCall = this.activations + 1;
    const toLoad = new Set<string>();
    for (const key of keys) {
      const actor = this.actors.get(key);
      if (actor === undefined) toLoad.add(key);
      else if (actor.lastActivation < firstOfThisCall) actor.lastActivation = ++this.activations;
    }
    if (toLoad.size === 0) return;
    this.storedRowsAllActive ??= this.actors.size === 0 && (await this.storeIsEmpty());
    if (this.storedRowsAllActive) {
      // Nothing stored can belong to a key not active yet: no scans.
      for (const key of toLoad) if (!this.actors.has(key)) this.install(new ActiveActor(key));
      return;
    }
    const unique = [...toLoad];

    const loaded = new Array<StateRow[]>(unique.length);
    let next = 0;
    const scanWorker = async (): Promise<void> => {
      while (next < unique.length) {
        const index = next++;
        loaded[index] = await this.store.scanPrefix(encodeKey([unique[index]!]));
      }
    };
    const workers: Array<Promise<void>> = [];
    for (let i = 0; i < Math.min(ACTIVATION_SCANS_IN_FLIGHT, unique.length); i++) workers.push(scanWorker());
    await Promise.all(workers);

    for (let i = 0; i < unique.length; i++) {
      const key = unique[i]!;
      // A concurrent activate() may have installed the key while we scanned, and the engine may
      // have written to it since: never overwrite a resident actor.
      if (this.actors.has(key)) continue;
      const actor = new ActiveActor(key);
      for (const [rowKey, value] of loaded[i]!) {
        const parts = decodeRowKey(rowKey, key);
        const namespace = parts[1] as string;
        const subKey: SubKey = parts.length === 3 ? parts[2]! : parts.slice(2);
        addStoredRow(actor, namespace, subKey, value);
      }
      this.install(actor);
    }
  }

  /**
   * One pass over every stored row, in key order, for a task restored from a checkpoint: each
   * key with a row in one of `residentNamespaces` (open windows, timers) is made active with all
   * its rows, and `visit` sees those rows, so the engine can rebuild what it keeps only in memory.
   * Cheaper than activate() for many keys: one sequential scan instead of a prefix scan per key.
   */
  async restoreResident(
    residentNamespaces: ReadonlySet<string>,
    visit: (key: string, namespace: string, subKey: SubKey, value: unknown) => void,
    options: { activate: boolean } = { activate: true },
  ): Promise<void> {
    let group: Array<[namespace: string, subKey: SubKey, value: unknown]> = [];
    let groupKey: string | undefined;
    let allInstalled = true;
    const install = () => {
      if (groupKey === undefined || this.actors.has(groupKey)) return;
      if (!options.activate || !group.some(([namespace]) => residentNamespaces.has(namespace))) {
        // Rows the engine keeps itself (it writes them back with putUncached) are only visited.
        if (!options.activate)
          for (const [namespace, subKey, value] of group)
            if (residentNamespaces.has(namespace)) visit(groupKey, namespace, subKey, value);
        allInstalled = false;
        return;
      }
      const actor = new ActiveActor(groupKey);
      for (const [namespace, subKey, value] of group) {
        addStoredRow(actor, namespace, subKey, value);
        if (residentNamespaces.has(namespace)) visit(groupKey, namespace, subKey, value);
      }
      this.install(actor);
    };
    for await (const batch of this.store.scanBatches(undefined, undefined, 4_096)) {
      for (const [rowKey, value] of batch) {
        const parts = decodeKey(rowKey);
        if (parts.length < 2 || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') {
          throw new StateError(
            'STATE_KEY_CORRUPT',
            `stored row is not (key, namespace, ...subKey): ${JSON.stringify(parts)}`,
          );
        }
        if (parts[0] !== groupKey) {
          install();
          group = [];
          groupKey = parts[0];
        }
        group.push([parts[1], parts.length === 3 ? parts[2]! : parts.slice(2), value]);
      }
    }
    install();
    this.storedRowsAllActive = this.storedRowsAllActive !== false && allInstalled;
  }

  /** The task's scratch store, for working data that no checkpoint holds (TaskStore.scratch). */
  scratch(): Promise<TaskStore> {
    return this.store.scratch();
  }

  isActive(key: string): boolean {
    return this.actors.has(key);
  }

  get(key: string, namespace: string, subKey: SubKey): unknown | undefined {
    let entry = this.recentEntry(key, namespace, subKey);
    if (entry === undefined) {
      entry = findEntry(this.activeActor(key), namespace, subKey);
      if (entry !== undefined) this.recent = entry;
    }
    return entry === undefined || entry.deleted ? undefined : entry.value;
  }

  /** Sets a row; the value is kept by reference until flush() encodes it with msgpack. */
  put(key: string, namespace: string, subKey: SubKey, value: unknown): void {
    const recent = this.recentEntry(key, namespace, subKey);
    if (recent !== undefined) {
      recent.value = value;
      recent.deleted = false;
      this.markDirty(recent);
      return;
    }
    const actor = this.activeActor(key);
    const rows = namespaceRows(actor, namespace);
    let entry: StateRowEntry | undefined;
    if (typeof subKey === 'object' && subKey.length !== 1) {
      const identity = compositeIdentity(subKey);
      entry = (rows.composite ??= new Map()).get(identity);
      if (entry === undefined) {
        entry = new StateRowEntry(actor, namespace, [...subKey], value, false);
        rows.composite.set(identity, entry);
      }
    } else {
      const scalar = typeof subKey === 'object' ? subKey[0]! : subKey;
      entry = rows.scalar.get(scalar);
      if (entry === undefined) {
        if (typeof scalar !== 'string' && (typeof scalar !== 'number' || scalar !== scalar)) {
          throw new StateError(
            'STATE_KEY_INVALID',
            `subKey of ${key}/${namespace} must be a string or a number other than NaN`,
          );
        }
        entry = new StateRowEntry(actor, namespace, scalar, value, false);
        rows.scalar.set(scalar, entry);
      }
    }
    entry.value = value;
    entry.deleted = false;
    this.markDirty(entry);
    this.recent = entry;
  }

  /** The recent row if it is this one (a scalar subKey; composite ones are looked up). */
  private recentEntry(key: string, namespace: string, subKey: SubKey): StateRowEntry | undefined {
    const recent = this.recent;
    if (
      recent === undefined ||
      recent.subKey !== subKey ||
      recent.namespace !== namespace ||
      recent.actor.key !== key ||
      !recent.actor.resident
    )
      return undefined;
    return recent;
  }

  delete(key: string, namespace: string, subKey: SubKey): void {
    const entry = findEntry(this.activeActor(key), namespace, subKey);
    // All rows of an active key are in memory, so a row we do not hold is not in RocksDB either.
    if (entry === undefined || entry.deleted) return;
    entry.deleted = true;
    entry.value = undefined;
    this.markDirty(entry);
  }

  /**
   * Writes a row at the next flush without caching it or activating its key: for rows the engine
   * keeps in memory itself (open windows), so they are not held twice. The key must not be active
   * (its cached rows would hide this write); a window job never activates a key. A row is written
   * at most once between flushes (the store applies a batch's deletes after its puts).
   */
  putUncached(key: string, namespace: string, subKey: SubKey, value: unknown): void {
    this.uncached.push([this.uncachedRowKey(key, namespace, subKey), value]);
  }

  /** Deletes a row at the next flush, past the cache, like putUncached. */
  deleteUncached(key: string, namespace: string, subKey: SubKey): void {
    this.uncached.push([this.uncachedRowKey(key, namespace, subKey), DELETED]);
  }

  private uncachedRowKey(key: string, namespace: string, subKey: SubKey): Uint8Array {
    if (this.actors.has(key)) {
      throw new StateError('STATE_KEY_ACTIVE', `actor key ${JSON.stringify(key)} is active: write it with put/delete`);
    }
    return typeof subKey === 'object' ? encodeKey([key, namespace, ...subKey]) : encodeKey([key, namespace, subKey]);
  }

  /** Rows of one namespace of an active key, in no particular order. */
  *entries(key: string, namespace: string): IterableIterator<[SubKey, unknown]> {
    const rows = this.activeActor(key).namespaces.get(namespace);
    if (rows === undefined) return;
    for (const entry of rows.scalar.values()) if (!entry.deleted) yield [entry.subKey, entry.value];
    if (rows.composite === undefined) return;
    for (const entry of rows.composite.values()) if (!entry.deleted) yield [entry.subKey, entry.value];
  }

  /**
   * Writes every dirty row in one write batch; returns counts and bytes written. With `capture`,
   * the encoded rows written are appended to it: exactly the rows changed since the previous
   * flush, which is what an incremental checkpoint uploads (the engine flushes only at checkpoints).
   */
  async flush(capture?: WriteCapture): Promise<FlushResult> {
    if (this.dirty.length === 0 && this.uncached.length === 0) return { puts: 0, deletes: 0, bytes: 0 };
    this.recent = undefined;
    const flushed = this.dirty;
    this.dirty = [];
    const uncached = this.uncached;
    this.uncached = [];
    const puts: StateRow[] = [];
    const deletes: Uint8Array[] = [];
    for (const write of uncached) {
      if (write[1] === DELETED) deletes.push(write[0]);
      else puts.push(write);
    }
    const putEntries: StateRowEntry[] = [];
    const deleteEntries: StateRowEntry[] = [];
    for (const entry of flushed) {
      entry.dirty = false;
      entry.actor.dirtyRows--;
      if (!entry.deleted) {
        puts.push([encodeRowKey(entry), entry.value]);
        putEntries.push(entry);
      } else if (entry.stored) {
        deletes.push(encodeRowKey(entry));
        deleteEntries.push(entry);
      } else {
        dropEntry(entry); // created and deleted between two flushes: RocksDB never saw it
      }
    }

    // Rows changed while the batch is written are dirty again and go into the next flush. evict()
    // waits meanwhile: RocksDB does not hold these rows until the write lands, so an evicted and
    // re-activated key would read stale rows.
    this.flushing = true;
    let bytes: number;
    try {
      bytes = await this.store.write(puts, deletes, capture);
    } catch (error) {
      for (const entry of putEntries) this.markDirty(entry);
      for (const entry of deleteEntries) this.markDirty(entry);
      this.uncached = uncached.concat(this.uncached);
      throw error;
    } finally {
      this.flushing = false;
    }

    for (const entry of putEntries) entry.stored = true;
    // Rows read while the batch was written may be dropped now.
    this.recent = undefined;
    for (const entry of deleteEntries) {
      entry.stored = false;
      if (entry.deleted && !entry.dirty) dropEntry(entry);
    }
    return { puts: puts.length, deletes: deletes.length, bytes };
  }

  /**
   * Deactivates least-recently-activated clean keys beyond maxActiveKeys, or `keep` when given
   * (fewer, under heap pressure), never dropping dirty rows. `isPinned` keeps keys the engine
   * still needs resident (open windows, pending timers).
   */
  evict(isPinned?: (key: string) => boolean, keep = this.maxActiveKeys): void {
    if (this.flushing) return;
    const excess = this.actors.size - Math.min(keep, this.maxActiveKeys);
    if (excess <= 0) return;
    const candidates: ActiveActor[] = [];
    for (const actor of this.actors.values()) {
      if (actor.dirtyRows === 0 && isPinned?.(actor.key) !== true) candidates.push(actor);
    }
    candidates.sort((a, b) => a.lastActivation - b.lastActivation);
    for (let index = 0; index < Math.min(excess, candidates.length); index++) {
      const actor = candidates[index]!;
      this.actors.delete(actor.key);
      actor.resident = false;
      // Its rows stay in RocksDB: activating it again must read them.
      this.storedRowsAllActive = false;
    }
  }

  private install(actor: ActiveActor): void {
    actor.lastActivation = ++this.activations;
    this.actors.set(actor.key, actor);
  }

  private async storeIsEmpty(): Promise<boolean> {
    for await (const batch of this.store.scanBatches(undefined, undefined, 1)) return batch.length === 0;
    return true;
  }

  private activeActor(key: string): ActiveActor {
    const actor = this.actors.get(key);
    if (actor === undefined) {
      throw new StateError(
        'STATE_KEY_NOT_ACTIVE',
        `actor key ${JSON.stringify(key)} is not active: activate() it before get/put`,
      );
    }
    return actor;
  }

  private markDirty(entry: StateRowEntry): void {
    if (entry.dirty) return;
    entry.dirty = true;
    entry.actor.dirtyRows++;
    this.dirty.push(entry);
  }
}
