// One RocksDB instance holding the state of one task (job, version, partition).
//
// Keys are bytes from key-encoding.ts; values are msgpack. The store knows nothing of actors or
// windows: KeyedState (and later window state) decide what the keys mean.
//
// Durability: RocksDB's write-ahead log cannot be turned off through rocksdb-native (see
// README.md), so writes do go to the WAL, unsynced. Correctness does not rely on it: the
// JetStream log is our WAL, and a restore starts from the last checkpoint and re-reads the log.
import { rm } from 'node:fs/promises';
import { Decoder, Encoder } from '@msgpack/msgpack';
import RocksDB from 'rocksdb-native';
import { StateError } from './errors.js';
import { prefixUpperBound } from './key-encoding.js';

/** Rows fetched per native iterator read; an actor's rows mostly fit in one read. */
const SCAN_CAPACITY = 256;
/** Bounds every key encodeKey produces (tags are 0x10 and 0x20). */
const LOWEST_KEY = Uint8Array.of(0x00);
const ABOVE_HIGHEST_KEY = Uint8Array.of(0xff);

export type StateRow = [key: Uint8Array, value: unknown];
/** A row as RocksDB holds it: key bytes and msgpack value bytes. Checkpoints move these. */
export type EncodedRow = [key: Uint8Array, value: Uint8Array];

function scratchDirOf(dir: string): string {
  return `${dir}.scratch`;
}

/** Receives exactly what one write() stored, encoded: the delta an incremental checkpoint uploads. */
export interface WriteCapture {
  puts: EncodedRow[];
  deletes: Uint8Array[];
}

export class TaskStore {
  // Reused for every value: msgpack's Encoder keeps its buffer between calls.
  private readonly encoder = new Encoder();
  private readonly decoder = new Decoder();
  private closed = false;
  private scratchStore: Promise<TaskStore> | undefined;

  private constructor(
    readonly dir: string,
    private readonly db: RocksDB,
  ) {}

  /** Opens (creating if missing) the task's store in `dir`. */
  static async open(dir: string): Promise<TaskStore> {
    const db = new RocksDB(dir, { createIfMissing: true });
    await db.ready();
    return new TaskStore(dir, db);
  }

  /** Removes a closed store's files (a task moved away, or a retired job version). */
  static async destroy(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    await rm(scratchDirOf(dir), { recursive: true, force: true });
  }

  /**
   * A second RocksDB beside this one (`<dir>.scratch`) for working data that is never part of a
   * checkpoint: the window rows spilled out of memory. A checkpoint is this store as of a flush
   * (and a local copy is reused when its mark says so), so rows written between checkpoints must
   * not land here. Opened empty on first use; closed and removed with this store.
   */
  scratch(): Promise<TaskStore> {
    this.assertOpen();
    this.scratchStore ??= (async () => {
      const dir = scratchDirOf(this.dir);
      await rm(dir, { recursive: true, force: true });
      return TaskStore.open(dir);
    })();
    return this.scratchStore;
  }

  /** Values of `keys` in order; undefined where a key has no row. One native read batch. */
  async getMany(keys: readonly Uint8Array[]): Promise<Array<unknown | undefined>> {
    this.assertOpen();
    if (keys.length === 0) return [];
    const batch = this.db.read({ capacity: keys.length, autoDestroy: true });
    const pending = keys.map((key) => batch.get(key));
    batch.tryFlush();
    const values = await Promise.all(pending);
    return values.map((value) => (value === null ? undefined : this.decoder.decode(value)));
  }

  /** Every row whose key starts with `prefix`, in key order. */
  async scanPrefix(prefix: Uint8Array): Promise<StateRow[]> {
    return this.scanRange(prefix, prefixUpperBound(prefix));
  }

  /** Every row with start <= key < end, in key order. */
  async scanRange(start: Uint8Array, end: Uint8Array): Promise<StateRow[]> {
    this.assertOpen();
    const rows: StateRow[] = [];
    for await (const { key, value } of this.db.iterator({ gte: start, lt: end }, { capacity: SCAN_CAPACITY })) {
      rows.push([key, this.decoder.decode(value)]);
    }
    return rows;
  }

  /**
   * Rows with start <= key < end (the whole store by default) in key order, `batchRows` at a time,
   * for scans too large to hold at once (a logical checkpoint, a window purge).
   */
  async *scanBatches(
    start: Uint8Array = LOWEST_KEY,
    end: Uint8Array = ABOVE_HIGHEST_KEY,
    batchRows = 1_000,
  ): AsyncGenerator<StateRow[]> {
    this.assertOpen();
    let batch: StateRow[] = [];
    for await (const { key, value } of this.db.iterator({ gte: start, lt: end }, { capacity: batchRows })) {
      batch.push([key, this.decoder.decode(value)]);
      if (batch.length >= batchRows) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  /**
   * Applies puts and deletes atomically in one write batch. Returns the bytes of keys and values
   * written, for metrics. A key both put and deleted ends deleted (deletes are applied last).
   */
  async write(puts: readonly StateRow[], deletes: readonly Uint8Array[] = [], capture?: WriteCapture): Promise<number> {
    this.assertOpen();
    if (puts.length === 0 && deletes.length === 0) return 0;
    const batch = this.db.write({ capacity: puts.length + deletes.length, autoDestroy: true });
    let bytes = 0;
    for (const [key, value] of puts) {
      // encode() copies out of the encoder's shared buffer: the batch holds every value until flush.
      const encoded = this.encoder.encode(value);
      batch.tryPut(key, encoded);
      bytes += key.length + encoded.length;
      capture?.puts.push([key, encoded]);
    }
    for (const key of deletes) {
      batch.tryDelete(key);
      bytes += key.length;
      capture?.deletes.push(key);
    }
    await this.flushBatch(batch, puts.length, deletes.length);
    return bytes;
  }

  /** Applies already-encoded rows (a checkpoint being restored) in one write batch. */
  async writeEncoded(puts: readonly EncodedRow[], deletes: readonly Uint8Array[] = []): Promise<void> {
    this.assertOpen();
    if (puts.length === 0 && deletes.length === 0) return;
    const batch = this.db.write({ capacity: puts.length + deletes.length, autoDestroy: true });
    for (const [key, value] of puts) batch.tryPut(key, value);
    for (const key of deletes) batch.tryDelete(key);
    await this.flushBatch(batch, puts.length, deletes.length);
  }

  /**
   * A write batch is atomic: when RocksDB refuses it (its error says only "Batch was not applied";
   * a full disk is the usual cause) nothing of it is in the store, which still holds what it held.
   * After such an error this handle refuses every later write too: reopen the store.
   */
  private async flushBatch(batch: { flush(): Promise<void> }, puts: number, deletes: number): Promise<void> {
    try {
      await batch.flush();
    } catch (error) {
      throw new StateError(
        'STATE_WRITE_FAILED',
        `task store ${this.dir}: a write of ${puts} puts and ${deletes} deletes was refused (is the disk full?): ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /** Every row, encoded, `batchRows` at a time in key order: the content of a full checkpoint. */
  async *scanEncodedBatches(batchRows = 4_096): AsyncGenerator<EncodedRow[]> {
    this.assertOpen();
    let batch: EncodedRow[] = [];
    for await (const { key, value } of this.db.iterator(
      { gte: LOWEST_KEY, lt: ABOVE_HIGHEST_KEY },
      { capacity: batchRows },
    )) {
      batch.push([key, value]);
      if (batch.length >= batchRows) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  /** Deletes every row. */
  async clear(): Promise<void> {
    await this.deleteRange(LOWEST_KEY, ABOVE_HIGHEST_KEY);
  }

  /** Deletes every row with start <= key < end (a purged window, a dropped namespace). */
  async deleteRange(start: Uint8Array, end: Uint8Array): Promise<void> {
    this.assertOpen();
    await this.db.deleteRange(start, end);
  }

  /** Size of the store's SST files plus memtables, as estimated by RocksDB (cheap, approximate). */
  async approximateSizeBytes(): Promise<number> {
    this.assertOpen();
    const size = await this.db.approximateSize(LOWEST_KEY, ABOVE_HIGHEST_KEY, {
      includeMemtables: true,
      includeFiles: true,
    });
    return Number(size);
  }

  /** Writes memtables to SST files, so a checkpoint can copy or read durable files. */
  async flushToDisk(): Promise<void> {
    this.assertOpen();
    await this.db.flush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.close();
    const scratch = this.scratchStore;
    if (scratch === undefined) return;
    this.scratchStore = undefined;
    const store = await scratch;
    await store.close();
    await rm(store.dir, { recursive: true, force: true });
  }

  private assertOpen(): void {
    if (this.closed) throw new StateError('STATE_CLOSED', `task store ${this.dir} is closed`);
  }
}
