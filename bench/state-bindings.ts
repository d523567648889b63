// Compares the two RocksDB bindings on the access pattern of a task's keyed state:
// batched writes (one batch per flush), a full iterate (logical checkpoint), prefix scans
// (actor activation loads every row of a key) and multi-gets.
//
//   npx tsx bench/state-bindings.ts [nxtedition|native] [--pairs N]
//
// The choice and the figures are in state/README.md; the loser (@nxtedition/rocksdb) was then
// uninstalled, so this prints a note for it unless it is installed again (without saving).
//
// Each binding writes into its own temp directory, removed afterwards. Neither binding lets
// us turn the write-ahead log off (see state/README.md), so both run with their default WAL
// and sync=false.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const require = createRequire(import.meta.url);

const pairCount = Number(argAfter('--pairs') ?? 1_000_000);
const rowsPerPrefix = 100;
const prefixCount = Math.floor(pairCount / rowsPerPrefix);
const writeBatchSize = 1_000;
const scanCount = 10_000;
const scanConcurrency = 100;
const getBatchSize = 500;
const getCount = 200_000;

interface BindingUnderTest {
  name: string;
  open(dir: string): Promise<void>;
  writeBatch(keys: Buffer[], values: Buffer[], from: number, to: number): Promise<void>;
  iterateAll(): Promise<number>;
  scan(gte: Buffer, lt: Buffer): Promise<number>;
  getMany(keys: Buffer[]): Promise<number>;
  close(): Promise<void>;
}

// ---- @nxtedition/rocksdb (abstract-level API) ----
interface NxtIterator {
  nextv(size: number): Promise<Array<[Buffer, Buffer]>>;
  close(): Promise<void>;
}
interface NxtChainedBatch {
  put(key: Buffer, value: Buffer): NxtChainedBatch;
  write(options?: { sync?: boolean }): Promise<void>;
}
interface NxtDb {
  open(): Promise<void>;
  close(): Promise<void>;
  batch(): NxtChainedBatch;
  iterator(options: { gte?: Buffer; lt?: Buffer }): NxtIterator;
  getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>>;
}

function nxtedition(): BindingUnderTest {
  const { RocksLevel } = require('@nxtedition/rocksdb') as {
    RocksLevel: new (location: string, options: object) => NxtDb;
  };
  let db: NxtDb;
  return {
    name: '@nxtedition/rocksdb',
    async open(dir) {
      db = new RocksLevel(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await db.open();
    },
    async writeBatch(keys, values, from, to) {
      const batch = db.batch();
      for (let i = from; i < to; i++) batch.put(keys[i]!, values[i]!);
      await batch.write({ sync: false });
    },
    async iterateAll() {
      const iterator = db.iterator({});
      let rows = 0;
      for (;;) {
        const entries = await iterator.nextv(1_000);
        if (entries.length === 0) break;
        rows += entries.length;
      }
      await iterator.close();
      return rows;
    },
    async scan(gte, lt) {
      const iterator = db.iterator({ gte, lt });
      let rows = 0;
      for (;;) {
        const entries = await iterator.nextv(1_000);
        if (entries.length === 0) break;
        rows += entries.length;
      }
      await iterator.close();
      return rows;
    },
    async getMany(keys) {
      const values = await db.getMany(keys);
      return values.filter((value) => value !== undefined).length;
    },
    close: () => db.close(),
  };
}

// ---- rocksdb-native (Holepunch) ----
interface NativeWriteBatch {
  tryPut(key: Buffer, value: Buffer): void;
  flush(): Promise<void>;
}
interface NativeReadBatch {
  get(key: Buffer): Promise<Buffer | null>;
  tryFlush(): void;
}
interface NativeDb {
  ready(): Promise<void>;
  close(): Promise<void>;
  write(options: { capacity: number }): NativeWriteBatch;
  read(options: { capacity: number }): NativeReadBatch;
  iterator(
    range: { gte?: Buffer; lt?: Buffer },
    options: { capacity: number },
  ): AsyncIterable<{ key: Buffer; value: Buffer }>;
}

function native(): BindingUnderTest {
  const RocksDB = require('rocksdb-native') as new (path: string) => NativeDb;
  let db: NativeDb;
  return {
    name: 'rocksdb-native',
    async open(dir) {
      db = new RocksDB(dir);
      await db.ready();
    },
    async writeBatch(keys, values, from, to) {
      const batch = db.write({ capacity: to - from });
      for (let i = from; i < to; i++) batch.tryPut(keys[i]!, values[i]!);
      await batch.flush();
    },
    async iterateAll() {
      let rows = 0;
      for await (const _row of db.iterator({}, { capacity: 1_000 })) rows++;
      return rows;
    },
    async scan(gte, lt) {
      let rows = 0;
      // Capacity above the expected row count: one native read per scan.
      for await (const _row of db.iterator({ gte, lt }, { capacity: 128 })) rows++;
      return rows;
    },
    async getMany(keys) {
      const batch = db.read({ capacity: keys.length });
      const pending = keys.map((key) => batch.get(key));
      batch.tryFlush();
      const values = await Promise.all(pending);
      return values.filter((value) => value !== null).length;
    },
    close: () => db.close(),
  };
}

// ---- workload ----
function prefixOf(prefixIndex: number): Buffer {
  return Buffer.from(`actor-${String(prefixIndex).padStart(7, '0')}/`);
}

function makeData(): { keys: Buffer[]; values: Buffer[] } {
  const keys: Buffer[] = [];
  for (let p = 0; p < prefixCount; p++) {
    const prefix = prefixOf(p);
    for (let r = 0; r < rowsPerPrefix; r++) {
      keys.push(Buffer.concat([prefix, Buffer.from(`count/${String(r).padStart(4, '0')}`)]));
    }
  }
  // Events arrive in key-hash order, not key order: write in a shuffled order.
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
  const values = keys.map(() => randomBytes(48));
  return { keys, values };
}

function rate(count: number, startedAt: bigint): string {
  const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
  return `${Math.round(count / seconds).toLocaleString('en-US')}/s (${seconds.toFixed(2)} s)`;
}

async function run(binding: BindingUnderTest, data: { keys: Buffer[]; values: Buffer[] }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-state-'));
  try {
    await binding.open(dir);
    console.log(`\n${binding.name}`);

    let startedAt = process.hrtime.bigint();
    for (let from = 0; from < data.keys.length; from += writeBatchSize) {
      await binding.writeBatch(data.keys, data.values, from, Math.min(from + writeBatchSize, data.keys.length));
    }
    console.log(`  batched write  ${rate(data.keys.length, startedAt)} rows`);

    startedAt = process.hrtime.bigint();
    const iterated = await binding.iterateAll();
    console.log(`  full iterate   ${rate(iterated, startedAt)} rows`);
    if (iterated !== data.keys.length) throw new Error(`iterated ${iterated} rows, expected ${data.keys.length}`);

    for (const concurrency of [1, scanConcurrency]) {
      startedAt = process.hrtime.bigint();
      let scannedRows = 0;
      for (let done = 0; done < scanCount; done += concurrency) {
        const scans: Array<Promise<number>> = [];
        for (let i = 0; i < concurrency; i++) {
          const prefix = prefixOf(Math.floor(Math.random() * prefixCount));
          const upper = Buffer.from(prefix);
          upper[upper.length - 1]! += 1;
          scans.push(binding.scan(prefix, upper));
        }
        for (const rows of await Promise.all(scans)) scannedRows += rows;
      }
      console.log(
        `  prefix scan    ${rate(scanCount, startedAt)} scans, ${concurrency} in flight (${(scannedRows / scanCount).toFixed(0)} rows each)`,
      );
    }

    startedAt = process.hrtime.bigint();
    let found = 0;
    for (let done = 0; done < getCount; done += getBatchSize) {
      const keys: Buffer[] = [];
      for (let i = 0; i < getBatchSize; i++) keys.push(data.keys[Math.floor(Math.random() * data.keys.length)]!);
      found += await binding.getMany(keys);
    }
    console.log(`  multi-get      ${rate(getCount, startedAt)} keys in batches of ${getBatchSize}`);
    if (found !== getCount) throw new Error(`found ${found} of ${getCount} keys`);

    await binding.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function argAfter(flag: string): string | undefined {
  const at = process.argv.indexOf(flag);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const only = process.argv[2]?.startsWith('--') ? undefined : process.argv[2];
const data = makeData();
console.log(`${data.keys.length.toLocaleString('en-US')} pairs, write batches of ${writeBatchSize}`);
for (const [name, make] of [
  ['nxtedition', nxtedition],
  ['native', native],
] as const) {
  if (only !== undefined && only !== name) continue;
  let binding: BindingUnderTest;
  try {
    binding = make();
  } catch (error) {
    // The losing binding is uninstalled after the choice (state/README.md); reinstall it to re-run.
    console.log(`\n${name}: not installed (${(error as Error).message.split('\n')[0]})`);
    continue;
  }
  await run(binding, data);
}
