// Every serving-table backend (NATS KV, PostgreSQL, Redis) against a real server: newest revision
// wins whatever order concurrent writers deliver in, retractions are tombstones, reads by key,
// the native alias flips under a reader without a failed or empty read, drop refuses the live
// version. PostgreSQL at KAPPA_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test),
// Redis at KAPPA_REDIS_URL (default redis://127.0.0.1:6379); both are shared, so every job name
// here is unique to the run and everything created is dropped at the end.
import { randomBytes } from 'node:crypto';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createClient, type RedisClientType } from '@redis/client';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buckets, decodeRow, servingTableRowKey, type ServingTableRow } from '../protocol/index.js';
import { KvTables, type ServingTables, type TableKind, type TableOutput } from '../tables/index.js';
import { PostgresTables, postgresTableName, postgresViewName } from '../tables/postgres-tables.js';
import { RedisTables, redisKeys } from '../tables/redis-tables.js';
import { startServer, type NatsServer } from './harness/nats-server.js';

const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.KAPPA_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `${process.pid}_${randomBytes(3).toString('hex')}`;

let server: (NatsServer & { close(): Promise<void> }) | undefined;
let nc: NatsConnection | undefined;
let pgNative: pg.Pool | undefined;
let redisNative: RedisClientType | undefined;
/** Every (backend, job, version) a test created, dropped in afterAll. */
const created: { kind: TableKind; job: string; version: string }[] = [];
const openedTables: ServingTables[] = [];

beforeAll(async () => {
  server = await startServer();
  nc = await connect({ servers: server.url });
  pgNative = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  redisNative = createClient({ url: REDIS_URL }) as RedisClientType;
  await redisNative.connect();
});

afterAll(async () => {
  const byKind = new Map<TableKind, ServingTables>();
  for (const kind of ['kv', 'postgres', 'redis'] as const) if (created.some((entry) => entry.kind === kind)) byKind.set(kind, await open(kind));
  for (const { kind, job } of created) {
    // The alias outlives drop(); remove it natively first so the live version can be dropped too.
    if (kind === 'postgres') await pgNative!.query(`DROP VIEW IF EXISTS "${postgresViewName(job)}"`);
    if (kind === 'redis') await redisNative!.del(redisKeys.alias(job));
  }
  for (const { kind, job, version } of created) await byKind.get(kind)!.drop(job, version);
  for (const tables of openedTables) await tables.close();
  await redisNative?.close();
  await pgNative?.end();
  await nc?.close();
  await server?.close();
});

async function open(kind: TableKind): Promise<ServingTables> {
  const tables = kind === 'kv' ? new KvTables(nc!) : kind === 'postgres' ? new PostgresTables(POSTGRES_URL) : await RedisTables.open(REDIS_URL);
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
function update(key: string, revision: number, window: { start: number; end: number } | null = window0, value: unknown = revision * 10): TableOutput {
  return { key, ...(window ? { window } : {}), value, revision, kind: 'update' };
}

function retract(key: string, revision: number, window = window0): TableOutput {
  return { key, window, value: null, revision, kind: 'retract' };
}

/** The stored row, tombstones included, read natively. */
async function storedRow(kind: TableKind, job: string, version: string, rowKey: string): Promise<{ revision: number; retracted: boolean } | undefined> {
  if (kind === 'kv') {
    const entry = await (await new Kvm(nc!).open(buckets.servingTable(job, version))).get(rowKey);
    if (!entry || entry.operation !== 'PUT') return undefined;
    const row = decodeRow(entry.value);
    return { revision: row.revision, retracted: row.retracted === true };
  }
  if (kind === 'postgres') {
    const result = await pgNative!.query<{ revision: string; retracted: boolean }>(`SELECT revision, retracted FROM "${postgresTableName(job, version)}" WHERE row_key = $1`, [rowKey]);
    const row = result.rows[0];
    return row && { revision: Number(row.revision), retracted: row.retracted };
  }
  const json = await redisNative!.hGet(redisKeys.table(job, version), rowKey);
  if (!json) return undefined;
  const row = JSON.parse(json) as ServingTableRow;
  return { revision: row.revision, retracted: row.retracted === true };
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
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom('a', 'b', 'c'), fc.constantFrom(0, 10), fc.integer({ min: 1, max: 8 })), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 5 }),
        async (writes, batchSize) => {
          const version = `p${run++}`;
          track(kind, job, version);
          const writers = await Promise.all(instances.map((instance) => instance.writer(job, version)));
          // Outputs are deterministic per revision, as a job's are: every 4th revision retracts.
          const output = (key: string, start: number, revision: number): TableOutput =>
            revision % 4 === 0 ? retract(key, revision, { start, end: start + 10 }) : update(key, revision, { start, end: start + 10 }, { n: revision, key });
          const perWriter: TableOutput[][] = [[], [], []];
          for (const [writer, key, start, revision] of writes) perWriter[writer]!.push(output(key, start, revision));
          await Promise.all(
            perWriter.map(async (outputs, writer) => {
              for (let index = 0; index < outputs.length; index += batchSize) await writers[writer]!.write(outputs.slice(index, index + batchSize));
            }),
          );
          const newest = new Map<string, TableOutput>();
          for (const [, key, start, revision] of writes) {
            const rowKey = servingTableRowKey(key, { start, end: start + 10 });
            if ((newest.get(rowKey)?.revision ?? 0) < revision) newest.set(rowKey, output(key, start, revision));
          }
          const expected = [...newest.values()]
            .filter((out) => out.kind === 'update')
            .map((out) => ({ key: out.key, start: out.window!.start, end: out.window!.end, value: out.value, revision: out.revision }))
            .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.start - b.start));
          expect(await tables.read(job, version)).toEqual(expected);
          for (const [rowKey, out] of newest) expect(await storedRow(kind, job, version, rowKey)).toEqual({ revision: out.revision, retracted: out.kind === 'retract' });
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
    expect(await storedRow(kind, job, 'v1', servingTableRowKey('s', window0))).toEqual({ revision: 2, retracted: true });
    expect(await tables.read(job, 'v1')).toEqual([{ key: 't', start: 0, end: 10, value: 10, revision: 1 }]);
    // A newer revision (the window re-emitted after the retraction) does replace the tombstone.
    await zombie.write([update('s', 3)]);
    expect(await tables.read(job, 'v1', 's')).toEqual([{ key: 's', start: 0, end: 10, value: 30, revision: 3 }]);
  });

  it('reads one key\'s rows only, sorted by window start, and every row sorted by key then start', async () => {
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
    expect(rowsOf(await tables.read(job, 'v1'))).toEqual(['a@0', 'a@10', 'a@30', 'a-b@0', 'a.b@0', 'ab@20', 'c@-', 'user 1@0', 'user 1@10']);
  });

  it.skipIf(kind === 'kv')('flips the native alias while a reader reads through it, with no failed or empty read', async () => {
    const job = newJob(kind);
    const rows = 200;
    for (const version of ['v1', 'v2']) {
      track(kind, job, version);
      const writer = await tables.writer(job, version);
      await writer.write(Array.from({ length: rows }, (_, index) => update(`k${index}`, 1, window0, { version })));
    }
    await tables.setAlias(job, 'v1');
    const readThroughAlias = async (): Promise<unknown[]> => {
      if (kind === 'postgres') return (await pgNative!.query<{ value: unknown }>(`SELECT value FROM "${postgresViewName(job)}"`)).rows.map((row) => row.value);
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
          if (values.length !== rows || versions.size !== 1) failures.push(`read ${values.length} rows of versions ${[...versions].join(',')}`);
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
  });

  it('drops a version\'s table and refuses to drop the version the alias serves', async () => {
    const job = newJob(kind);
    for (const version of ['v1', 'v2']) {
      track(kind, job, version);
      await (await tables.writer(job, version)).write([update('k', 1)]);
    }
    const v2Writer = await tables.writer(job, 'v2');
    await tables.setAlias(job, 'v1');
    if (kind !== 'kv') {
      await expect(tables.drop(job, 'v1')).rejects.toMatchObject({ code: 'ADMIN_REJECTED' });
      expect(await tables.read(job, 'v1')).toHaveLength(1);
    }
    await tables.drop(job, 'v2');
    expect(await tables.exists(job, 'v2')).toBe(false);
    expect(await tables.exists(job, 'v1')).toBe(true);
    await expect(tables.read(job, 'v2')).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    // A writer still holding the dropped table (a retired version's zombie) cannot recreate it.
    if (kind !== 'kv') await expect(v2Writer.write([update('k', 2)])).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    await tables.drop(job, 'v2'); // dropping what is gone is a no-op
  });

  it('upserts a batch of 10,000 outputs in one write', async () => {
    const job = newJob(kind);
    track(kind, job, 'v1');
    const writer = await tables.writer(job, 'v1');
    const batch = Array.from({ length: 10_000 }, (_, index) => update(`user-${index % 1000}`, 1, { start: Math.floor(index / 1000) * 10_000, end: Math.floor(index / 1000) * 10_000 + 10_000 }, { clicks: index }));
    let started = performance.now();
    await writer.write(batch);
    const firstMs = performance.now() - started;
    started = performance.now();
    await writer.write(batch); // the same batch again: a re-emission, nothing changes
    const againMs = performance.now() - started;
    started = performance.now();
    await writer.write(batch.map((output) => ({ ...output, revision: 2 })));
    const newerMs = performance.now() - started;
    console.log(`${kind}: 10,000-output batch: insert ${firstMs.toFixed(0)} ms, re-emission ${againMs.toFixed(0)} ms, newer revisions ${newerMs.toFixed(0)} ms`);
    const rows = await tables.read(job, 'v1');
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
    expect((await tables.read(job, versions[0]!)).map((row) => row.value)).toEqual([versions[0]]);
    const viaView = await pgNative!.query<{ value: string }>(`SELECT value FROM "${postgresViewName(job)}"`);
    expect(viaView.rows.map((row) => row.value)).toEqual([versions[1]]);
  });
});
