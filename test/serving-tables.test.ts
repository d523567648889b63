// Every serving-table backend (NATS KV, PostgreSQL, Redis) against a real server: newest revision
// wins whatever order concurrent writers deliver in, retractions are tombstones, reads by key,
// paging in row-key order, keys of any characters and length, no two job versions or rows sharing
// a name, the native alias flips under a reader without a failed or empty read, drop refuses the
// live version. PostgreSQL at KAPPA_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test),
// Redis at KAPPA_REDIS_URL (default redis://127.0.0.1:6379); both are shared, so every job name
// here is unique to the run and everything created is dropped at the end.
import { randomBytes } from 'node:crypto';
import { Kvm } from '@nats-io/kv';
import { createClient, type RedisClientType } from '@redis/client';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buckets,
  decodeRow,
  encodeRow,
  MAX_KEY_BYTES,
  servingTableRowKey,
  type ServingTableRow,
} from '../protocol/index.js';
import { KvTables, type ServingTables, type TableKind, type TableOutput } from '../tables/index.js';
import { PostgresTables, postgresTableName, postgresViewName } from '../tables/postgres-tables.js';
import { RedisTables, redisKeys } from '../tables/redis-tables.js';
import { useNatsServer } from './harness/use-nats.js';

const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.KAPPA_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `${process.pid}_${randomBytes(3).toString('hex')}`;

const nats = useNatsServer();
let pgNative: pg.Pool | undefined;
let redisNative: RedisClientType | undefined;
/** Every (backend, job, version) a test created, dropped in afterAll. */
const created: { kind: TableKind; job: string; version: string }[] = [];
const openedTables: ServingTables[] = [];

beforeAll(async () => {
  pgNative = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  redisNative = createClient({ url: REDIS_URL }) as RedisClientType;
  await redisNative.connect();
});

afterAll(async () => {
  const byKind = new Map<TableKind, ServingTables>();
  for (const kind of ['kv', 'postgres', 'redis'] as const)
    if (created.some((entry) => entry.kind === kind)) byKind.set(kind, await open(kind));
  for (const { kind, job } of created) {
    // The alias outlives drop(); remove it natively first so the live version can be dropped too.
    if (kind === 'postgres') await pgNative!.query(`DROP VIEW IF EXISTS "${postgresViewName(job)}"`);
    if (kind === 'redis') await redisNative!.del(redisKeys.alias(job));
  }
  for (const { kind, job, version } of created) await byKind.get(kind)!.drop(job, version);
  for (const tables of openedTables) await tables.close();
  await redisNative?.close();
  await pgNative?.end();
});

async function open(kind: TableKind): Promise<ServingTables> {
  const tables =
    kind === 'kv'
      ? new KvTables(nats.nc)
      : kind === 'postgres'
        ? new PostgresTables(POSTGRES_URL)
        : await RedisTables.open(REDIS_URL);
  openedTables.push(tables);
  return tables;
}

let jobCounter = 0;
function newJob(kind: TableKind): string {
  return `st_${kind}_${RUN}_${jobCounter++}`;
}

function track(kind: TableKind, job: string, version: string): void {
  created.push({ kind, job, version });
}

const window0 = { start: 0, end: 10 };

/** An update of `key` in `window` (null: an actor output, no window). */
function update(
  key: string,
  revision: number,
  window: { start: number; end: number } | null = window0,
  value: unknown = revision * 10,
): TableOutput {
  return { key, ...(window ? { window } : {}), value, revision, kind: 'update' };
}

function retract(key: string, revision: number, window = window0): TableOutput {
  return { key, window, value: null, revision, kind: 'retract' };
}

/** Every live row, page by page (`limit` rows a page), checking each page's size and cursor on the way. */
async function readAll(tables: ServingTables, job: string, version: string, limit = 3): Promise<ServingTableRow[]> {
  const rows: ServingTableRow[] = [];
  let after: string | undefined;
  for (let pages = 0; ; pages++) {
    const page = await tables.page(job, version, { limit, after });
    expect(page.rows.length).toBeLessThanOrEqual(limit);
    rows.push(...page.rows);
    if (page.next === undefined) return rows;
    expect(page.next > (after ?? '')).toBe(true);
    after = page.next;
    if (pages > 100_000) throw new Error('paging does not end');
  }
}

/** Rows in the order pages list them: by row key, in code-unit (= byte, row keys are ASCII) order. */
function inRowKeyOrder<T extends { key: string; row?: string; start?: number; end?: number }>(rows: T[]): T[] {
  const rowKey = (row: T) =>
    servingTableRowKey(row.key, row.start === undefined ? undefined : { start: row.start, end: row.end! }, row.row);
  return rows.sort((a, b) => (rowKey(a) < rowKey(b) ? -1 : rowKey(a) > rowKey(b) ? 1 : 0));
}

/** The stored row, tombstones included, read natively. */
async function storedRow(
  kind: TableKind,
  job: string,
  version: string,
  rowKey: string,
): Promise<{ revision: number; retracted: boolean } | undefined> {
  if (kind === 'kv') {
    const entry = await (await new Kvm(nats.nc).open(buckets.servingTable(job, version))).get(rowKey);
    if (!entry || entry.operation !== 'PUT') return undefined;
    const row = decodeRow(entry.value);
    return { revision: row.revision, retracted: row.retracted === true };
  }
  if (kind === 'postgres') {
    const result = await pgNative!.query<{ revision: string; retracted: boolean }>(
      `SELECT revision, retracted FROM "${postgresTableName(job, version)}" WHERE row_key = $1`,
      [rowKey],
    );
    const row = result.rows[0];
    return row && { revision: Number(row.revision), retracted: row.retracted };
  }
  const json = await redisNative!.hGet(redisKeys.table(job, version), rowKey);
  if (!json) return undefined;
  const row = JSON.parse(json) as ServingTableRow;
  return { revision: row.revision, retracted: row.retracted === true };
}

/** Stores a row under `rowKey` natively, past the backend's writer (a row key that is a digest of another key). */
async function storeNatively(
  kind: TableKind,
  job: string,
  version: string,
  rowKey: string,
  row: ServingTableRow,
): Promise<void> {
  if (kind === 'kv') {
    await (await new Kvm(nats.nc).open(buckets.servingTable(job, version))).put(rowKey, encodeRow(row));
  } else if (kind === 'postgres') {
    await pgNative!.query(
      `INSERT INTO "${postgresTableName(job, version)}" (row_key, key, value, revision) VALUES ($1, $2, $3, $4)`,
      [rowKey, row.key, JSON.stringify(row.value), row.revision],
    );
  } else {
    await redisNative!.hSet(redisKeys.table(job, version), rowKey, JSON.stringify(row));
    await redisNative!.zAdd(redisKeys.rows(job, version), { score: 0, value: rowKey });
  }
}

describe.each(['kv', 'postgres', 'redis'] as const)('%s serving tables', (kind) => {
  let tables: ServingTables;
  beforeAll(async () => {
    tables = await open(kind);
  });

  it('keeps exactly the newest revision per row whatever order three concurrent writers deliver batches in (property)', async () => {
    // Three backends instances: an owner, a replay after a restore and a resumed zombie.
    const instances = [tables, await open(kind), await open(kind)];
    const job = newJob(kind);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.integer({ min: 0, max: 2 }),
            fc.constantFrom('a', 'b', 'c'),
            fc.constantFrom(0, 10),
            fc.integer({ min: 1, max: 8 }),
          ),
          { minLength: 1, maxLength: 40 },
        ),
        fc.integer({ min: 1, max: 5 }),
        async (writes, batchSize) => {
          const version = `p${run++}`;
          track(kind, job, version);
          const writers = await Promise.all(instances.map((instance) => instance.writer(job, version)));
          // Outputs are deterministic per revision, as a job's are: every 4th revision retracts.
          const output = (key: string, start: number, revision: number): TableOutput =>
            revision % 4 === 0
              ? retract(key, revision, { start, end: start + 10 })
              : update(key, revision, { start, end: start + 10 }, { n: revision, key });
          const perWriter: TableOutput[][] = [[], [], []];
          for (const [writer, key, start, revision] of writes) perWriter[writer]!.push(output(key, start, revision));
          await Promise.all(
            perWriter.map(async (outputs, writer) => {
              for (let index = 0; index < outputs.length; index += batchSize)
                await writers[writer]!.write(outputs.slice(index, index + batchSize));
            }),
          );
          const newest = new Map<string, TableOutput>();
          for (const [, key, start, revision] of writes) {
            const rowKey = servingTableRowKey(key, { start, end: start + 10 });
            if ((newest.get(rowKey)?.revision ?? 0) < revision) newest.set(rowKey, output(key, start, revision));
          }
          const expected = inRowKeyOrder(
            [...newest.values()]
              .filter((out) => out.kind === 'update')
              .map((out) => ({
                key: out.key,
                start: out.window!.start,
                end: out.window!.end,
                value: out.value,
                revision: out.revision,
              })),
          );
          expect(await readAll(tables, job, version)).toEqual(expected);
          for (const [rowKey, out] of newest)
            expect(await storedRow(kind, job, version, rowKey)).toEqual({
              revision: out.revision,
              retracted: out.kind === 'retract',
            });
          await tables.drop(job, version);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('keeps a retraction as a tombstone that an older re-emission cannot bring back, hidden from read()', async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const owner = await tables.writer(job, 'v1');
    const zombie = await (await open(kind)).writer(job, 'v1');
    await owner.write([update('s', 1), update('t', 1)]);
    await owner.write([retract('s', 2)]);
    await zombie.write([update('s', 1), update('s', 1)]);
    expect(await storedRow(kind, job, 'v1', servingTableRowKey('s', window0))).toEqual({
      revision: 2,
      retracted: true,
    });
    expect(await readAll(tables, job, 'v1')).toEqual([{ key: 't', start: 0, end: 10, value: 10, revision: 1 }]);
    // A newer revision (the window re-emitted after the retraction) does replace the tombstone.
    await zombie.write([update('s', 3)]);
    expect(await tables.read(job, 'v1', 's')).toEqual([{ key: 's', start: 0, end: 10, value: 30, revision: 3 }]);
  });

  it("reads one key's rows only, sorted by window start, and pages every row in row-key order", async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const writer = await tables.writer(job, 'v1');
    const w = (start: number) => ({ start, end: start + 10 });
    // 'user 1' and 'a.b' are not KV-safe (base64url tokens); 'a' is a prefix of 'ab' and 'a-b'.
    await writer.write([
      update('ab', 1, w(20)),
      update('a', 1, w(30)),
      update('a', 1, w(0)),
      update('a-b', 1, w(0)),
      update('user 1', 2, w(10)),
      update('a', 1, w(10)),
      update('a.b', 1, w(0)),
      update('user 1', 1, w(0)),
      update('c', 5, null, { total: 3 }),
    ]);
    const rowsOf = (rows: ServingTableRow[]) => rows.map((row) => `${row.key}@${row.start ?? '-'}`);
    expect(rowsOf(await tables.read(job, 'v1', 'a'))).toEqual(['a@0', 'a@10', 'a@30']);
    expect(rowsOf(await tables.read(job, 'v1', 'user 1'))).toEqual(['user 1@0', 'user 1@10']);
    expect(await tables.read(job, 'v1', 'c')).toEqual([{ key: 'c', value: { total: 3 }, revision: 5 }]);
    expect(await tables.read(job, 'v1', 'missing')).toEqual([]);
    // Row-key order: encoded tokens ('=…') first, '-' before '.', then the window start as text.
    expect(rowsOf(await readAll(tables, job, 'v1'))).toEqual([
      'a.b@0',
      'user 1@0',
      'user 1@10',
      'a-b@0',
      'a@0',
      'a@10',
      'a@30',
      'ab@20',
      'c@-',
    ]);
  });

  it('gives job versions whose names differ only in where "_" falls their own tables, and refuses names that are not plain', async () => {
    const job = newJob(kind);
    // Once one bucket: `kappa_table_<job>_a_b` + `_c` and `kappa_table_<job>_a` + `_b_c`.
    const pairs = [
      [`${job}_a_b`, 'c'],
      [`${job}_a`, 'b_c'],
    ] as const;
    for (const [name, version] of pairs) {
      track(kind, name, version);
      await (await tables.writer(name, version)).write([update('k', 1, window0, `${name}/${version}`)]);
    }
    for (const [name, version] of pairs)
      expect((await tables.read(name, version, 'k')).map((row) => row.value)).toEqual([`${name}/${version}`]);
    for (const [name, version] of [
      ['a.b', 'c'],
      ['a', 'b:c'],
      ['a', 'b c'],
      ['', 'v1'],
    ]) {
      await expect(tables.writer(name!, version!)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    }
  });

  it("keeps an actor's named row apart from a key that spells the same text", async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const writer = await tables.writer(job, 'v1');
    // key 'a/b' and key 'a' row 'b'; key 'a.r.b' and key 'a' row 'b' (the row key's own separators).
    await writer.write([
      update('a/b', 1, null, 'key a/b'),
      { ...update('a', 1, null, 'key a, row b'), row: 'b' },
      update('a.r.b', 1, null, 'key a.r.b'),
      update('a', 1, null, 'key a'),
      { ...update('a', 2, null, 'key a, row b.c'), row: 'b.c' },
    ]);
    expect(await tables.read(job, 'v1', 'a')).toEqual([
      { key: 'a', value: 'key a', revision: 1 },
      { key: 'a', row: 'b', value: 'key a, row b', revision: 1 },
      { key: 'a', row: 'b.c', value: 'key a, row b.c', revision: 2 },
    ]);
    expect((await tables.read(job, 'v1', 'a/b')).map((row) => row.value)).toEqual(['key a/b']);
    expect((await tables.read(job, 'v1', 'a.r.b')).map((row) => row.value)).toEqual(['key a.r.b']);
    expect(await readAll(tables, job, 'v1', 2)).toHaveLength(5);
  });

  it('stores, reads and pages keys of any characters up to MAX_KEY_BYTES, and longer keys and rows under a digest', async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const writer = await tables.writer(job, 'v1');
    const awkward = 'a\n.b *>\t=é😀/\u0001"\'%';
    let atLimit = '';
    while (Buffer.byteLength(atLimit + awkward) <= MAX_KEY_BYTES) atLimit += awkward;
    while (Buffer.byteLength(atLimit + 'x') <= MAX_KEY_BYTES) atLimit += 'x';
    expect(Buffer.byteLength(atLimit)).toBe(MAX_KEY_BYTES);
    const tooLong = `${atLimit}${'y'.repeat(5_000)}`; // what a 5,000-character key did to the KV sink: a timeout
    const windowed = { start: 1_700_000_000_000, end: 1_700_000_060_000 };
    const started = performance.now();
    await writer.write([
      update(atLimit, 1, windowed, 'at the limit, windowed'),
      update(atLimit, 1, null, 'at the limit'),
      { ...update(atLimit, 1, null, 'at the limit, long row'), row: 'r'.repeat(5_000) },
      update(tooLong, 1, windowed, 'too long, windowed'),
      update(awkward, 1, null, 'awkward'),
    ]);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(servingTableRowKey(tooLong, windowed)).toMatch(/^==[-_a-zA-Z0-9]{43}\.\d+\.\d+$/);
    expect((await tables.read(job, 'v1', atLimit)).map((row) => row.value)).toEqual([
      'at the limit',
      'at the limit, windowed',
      'at the limit, long row',
    ]);
    expect(await tables.read(job, 'v1', tooLong)).toEqual([
      { key: tooLong, ...windowed, value: 'too long, windowed', revision: 1 },
    ]);
    expect((await tables.read(job, 'v1', awkward)).map((row) => row.value)).toEqual(['awkward']);
    expect((await readAll(tables, job, 'v1', 2)).map((row) => row.value).sort()).toEqual([
      'at the limit',
      'at the limit, long row',
      'at the limit, windowed',
      'awkward',
      'too long, windowed',
    ]);
    // A digest row key stands for its key: a reader checks the key stored with it.
    const impostorKey = `${'z'.repeat(3_000)}`;
    await storeNatively(kind, job, 'v1', servingTableRowKey(impostorKey), {
      key: 'someone else',
      value: 'impostor',
      revision: 1,
    });
    expect(await tables.read(job, 'v1', impostorKey)).toEqual([]);
  });

  it('lists a table of many pages completely and in row-key order, skipping tombstones, whatever the page size', async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const writer = await tables.writer(job, 'v1');
    const outputs: TableOutput[] = [];
    for (let index = 0; index < 240; index++) {
      const key = index % 3 === 0 ? `user ${index}` : `user-${index}`;
      outputs.push(
        index % 10 === 0
          ? update(key, 1, null, index)
          : update(key, 1, { start: index * 1000, end: index * 1000 + 1000 }, index),
      );
    }
    await writer.write(outputs);
    await writer.write([
      retract('user-1', 2, { start: 1000, end: 2000 }),
      retract('user-2', 2, { start: 2000, end: 3000 }),
    ]);
    const expected = inRowKeyOrder(
      outputs
        .filter((output) => output.key !== 'user-1' && output.key !== 'user-2')
        .map((output) => ({
          key: output.key,
          ...(output.window ? { start: output.window.start, end: output.window.end } : {}),
          value: output.value,
          revision: 1,
        })),
    );
    for (const limit of [1, 7, 100, 238, 1000]) expect(await readAll(tables, job, 'v1', limit)).toEqual(expected);
  });

  it.skipIf(kind === 'kv')(
    'flips the native alias while a reader reads through it, with no failed or empty read',
    async () => {
      const job = newJob(kind);
      const rows = 200;
      for (const version of ['v1', 'v2']) {
        track(kind, job, version);
        const writer = await tables.writer(job, version);
        await writer.write(Array.from({ length: rows }, (_, index) => update(`k${index}`, 1, window0, { version })));
      }
      await tables.setAlias(job, 'v1');
      const readThroughAlias = async (): Promise<unknown[]> => {
        if (kind === 'postgres')
          return (await pgNative!.query<{ value: unknown }>(`SELECT value FROM "${postgresViewName(job)}"`)).rows.map(
            (row) => row.value,
          );
        const version = await redisNative!.get(redisKeys.alias(job));
        const hash = await redisNative!.hGetAll(redisKeys.table(job, version!));
        return Object.values(hash).map((json) => (JSON.parse(json) as ServingTableRow).value);
      };
      let flipping = true;
      const seen = new Map<string, number>();
      const failures: string[] = [];
      const reader = (async () => {
        while (flipping) {
          try {
            const values = (await readThroughAlias()) as { version: string }[];
            const versions = new Set(values.map((value) => value.version));
            // A read sees one whole version: all its rows, none of the other's.
            if (values.length !== rows || versions.size !== 1)
              failures.push(`read ${values.length} rows of versions ${[...versions].join(',')}`);
            for (const version of versions) seen.set(version, (seen.get(version) ?? 0) + 1);
          } catch (error) {
            failures.push(String(error));
          }
        }
      })();
      for (let flip = 0; flip < 30; flip++) {
        await tables.setAlias(job, flip % 2 === 0 ? 'v2' : 'v1');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      flipping = false;
      await reader;
      expect(failures).toEqual([]);
      expect(seen.get('v1')).toBeGreaterThan(0);
      expect(seen.get('v2')).toBeGreaterThan(0);
    },
  );

  it("drops a version's table and refuses to drop the version the alias serves", async () => {
    const job = newJob(kind);
    for (const version of ['v1', 'v2']) {
      track(kind, job, version);
      await (await tables.writer(job, version)).write([update('k', 1)]);
    }
    const v2Writer = await tables.writer(job, 'v2');
    await tables.setAlias(job, 'v1');
    if (kind !== 'kv') {
      await expect(tables.drop(job, 'v1')).rejects.toMatchObject({ code: 'ADMIN_REJECTED' });
      expect(await readAll(tables, job, 'v1')).toHaveLength(1);
    }
    await tables.drop(job, 'v2');
    expect(await tables.exists(job, 'v2')).toBe(false);
    expect(await tables.exists(job, 'v1')).toBe(true);
    await expect(tables.read(job, 'v2', 'k')).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    await expect(tables.page(job, 'v2', { limit: 10 })).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    // A writer still holding the dropped table (a retired version's zombie) cannot recreate it.
    if (kind !== 'kv')
      await expect(v2Writer.write([update('k', 2)])).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    await tables.drop(job, 'v2'); // dropping what is gone is a no-op
  });

  it('upserts a batch of 10,000 outputs in one write', async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const writer = await tables.writer(job, 'v1');
    const batch = Array.from({ length: 10_000 }, (_, index) =>
      update(
        `user-${index % 1000}`,
        1,
        { start: Math.floor(index / 1000) * 10_000, end: Math.floor(index / 1000) * 10_000 + 10_000 },
        { clicks: index },
      ),
    );
    let started = performance.now();
    await writer.write(batch);
    const firstMs = performance.now() - started;
    started = performance.now();
    await writer.write(batch); // the same batch again: a re-emission, nothing changes
    const againMs = performance.now() - started;
    started = performance.now();
    await writer.write(batch.map((output) => ({ ...output, revision: 2 })));
    const newerMs = performance.now() - started;
    console.log(
      `${kind}: 10,000-output batch: insert ${firstMs.toFixed(0)} ms, re-emission ${againMs.toFixed(0)} ms, newer revisions ${newerMs.toFixed(0)} ms`,
    );
    const rows = await readAll(tables, job, 'v1', 1000);
    expect(rows).toHaveLength(10_000);
    expect(rows.every((row) => row.revision === 2)).toBe(true);
  });
});

describe('PostgreSQL table names', () => {
  it('never gives two job versions one name, and fits 63 bytes with a hash suffix', async () => {
    expect(postgresTableName('a_b', 'c')).not.toBe(postgresTableName('a', 'b_c'));
    const job = `st_long_${RUN}_${'j'.repeat(64)}`.slice(0, 64);
    const versions = [`${'v'.repeat(63)}1`, `${'v'.repeat(63)}2`];
    for (const version of versions) {
      expect(Buffer.byteLength(postgresTableName(job, version))).toBeLessThanOrEqual(63);
      track('postgres', job, version);
    }
    expect(postgresTableName(job, versions[0]!)).not.toBe(postgresTableName(job, versions[1]!));
    const tables = await open('postgres');
    for (const version of versions) await (await tables.writer(job, version)).write([update('k', 1, window0, version)]);
    await tables.setAlias(job, versions[1]!);
    expect((await readAll(tables, job, versions[0]!)).map((row) => row.value)).toEqual([versions[0]]);
    const viaView = await pgNative!.query<{ value: string }>(`SELECT value FROM "${postgresViewName(job)}"`);
    expect(viaView.rows.map((row) => row.value)).toEqual([versions[1]]);
  });
});
