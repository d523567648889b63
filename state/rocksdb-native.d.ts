// Types for the part of rocksdb-native (Holepunch, CommonJS, ships no types) that TaskStore uses.
// Read from node_modules/rocksdb-native/{index.js,lib/batch.js,lib/iterator.js,lib/state.js}.
declare module 'rocksdb-native' {
  interface RocksDBOptions {
    createIfMissing?: boolean;
    maxBackgroundJobs?: number;
    /** Skip flushing memtables on close; we flush explicitly at checkpoints instead. */
    avoidFlushDuringShutdown?: boolean;
  }

  interface BatchOptions {
    /** Operations before the batch's native buffer is resized. */
    capacity?: number;
    autoDestroy?: boolean;
  }

  interface WriteBatch {
    tryPut(key: Uint8Array, value: Uint8Array): void;
    tryDelete(key: Uint8Array): void;
    tryDeleteRange(start: Uint8Array, end: Uint8Array): void;
    flush(): Promise<void>;
    destroy(): void;
  }

  interface ReadBatch {
    get(key: Uint8Array): Promise<Buffer | null>;
    tryFlush(): void;
    destroy(): void;
  }

  interface Range {
    gt?: Uint8Array;
    gte?: Uint8Array;
    lt?: Uint8Array;
    lte?: Uint8Array;
    reverse?: boolean;
    limit?: number;
  }

  interface IteratorOptions {
    /** Rows fetched per native read (default 8, far too small for scans). */
    capacity?: number;
    values?: boolean;
  }

  class RocksDB {
    constructor(path: string, options?: RocksDBOptions);
    readonly opened: boolean;
    readonly closed: boolean;
    ready(): Promise<void>;
    close(options?: { force?: boolean }): Promise<void>;
    read(options?: BatchOptions): ReadBatch;
    write(options?: BatchOptions): WriteBatch;
    iterator(range: Range, options?: IteratorOptions): AsyncIterable<{ key: Buffer; value: Buffer }>;
    deleteRange(start: Uint8Array, end: Uint8Array): Promise<void>;
    /** Flushes memtables to SST files. */
    flush(): Promise<void>;
    approximateSize(
      start: Uint8Array,
      end: Uint8Array,
      options?: { includeMemtables?: boolean; includeFiles?: boolean },
    ): Promise<number>;
    snapshot(): RocksDB;
  }

  export = RocksDB;
}
