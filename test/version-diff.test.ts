// The diff of two job versions' serving tables (tables/diff.ts) against real backends: v1 sums each
// user's amounts per 10 s window, v2 is the same job with one user's amounts doubled. The diff must
// report exactly that user's windows as changed and every other row as same, on NATS KV,
// PostgreSQL (joined by the database), Redis and across backends (v1 in KV, v2 in PostgreSQL); a
// v2 that drops a user shows its rows as only in v1; windows past either version's watermark are
// not compared. The expected answer is computed here from the events, not by the code under test.
// PostgreSQL and Redis at KAPPA_POSTGRES_URL / KAPPA_REDIS_URL (defaults as serving-tables.test.ts);
// every job name is unique to the run and every table is dropped at the end.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { diffVersions, KvTables, type ServingTables, type TableKind, type TableOutput } from '../tables/index.js';
import { PostgresTables } from '../tables/postgres-tables.js';
import { RedisTables } from '../tables/redis-tables.js';
import { useNatsServer } from './harness/use-nats.js';

const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.KAPPA_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN = `${process.pid}_${randomBytes(3).toString('hex')}`;
const WINDOW_MS = 10_000;

const nats = useNatsServer();
const opened = new Map<TableKind, ServingTables>();
const created: { kind: TableKind; job: string; version: string }[] = [];

afterAll(async () => {
  for (const { kind, job, version } of created) await opened.get(kind)!.drop(job, version);
  for (const tables of opened.values()) await tables.close();
});

async function open(kind: TableKind): Promise<ServingTables> {
  let tables = opened.get(kind);
  if (!tables) {
    tables =
      kind === 'kv'
        ? new KvTables(nats.nc)
        : kind === 'postgres'
          ? new PostgresTables(POSTGRES_URL)
          : await RedisTables.open(REDIS_URL);
    opened.set(kind, tables);
  }
  return tables;
}

interface Event {
  user: string;
  timeMs: number;
  amount: number;
}

/** 12 users (some with characters that need an encoded row-key token), 6 windows, a few events each. */
function events(): Event[] {
  const users = ['alice', 'bob', 'carol', 'dave', 'a-b', 'a', 'zoë', 'user.7', 'Z', '0', 'mallory', 'trent'];
  const list: Event[] = [];
  for (let i = 0; i < 600; i++)
    list.push({ user: users[(i * 7) % users.length]!, timeMs: (i * 7919) % (6 * WINDOW_MS), amount: 1 + (i % 13) });
  return list;
}

/** The job's result (sum per user per window), computed here; `amountOf` is the version's logic. */
function sums(list: Event[], amountOf: (event: Event) => number | undefined): TableOutput[] {
  const byRow = new Map<string, { key: string; start: number; sum: number }>();
  for (const event of list) {
    const amount = amountOf(event);
    if (amount === undefined) continue;
    const start = event.timeMs - (event.timeMs % WINDOW_MS);
    const id = `${event.user}\u0000${start}`;
    const row = byRow.get(id) ?? { key: event.user, start, sum: 0 };
    row.sum += amount;
    byRow.set(id, row);
  }
  return [...byRow.values()].map(({ key, start, sum }) => ({
    key,
    window: { start, end: start + WINDOW_MS },
    value: { sum },
    revision: 1,
    kind: 'update',
  }));
}

async function writeVersion(kind: TableKind, job: string, version: string, outputs: TableOutput[]): Promise<void> {
  const tables = await open(kind);
  created.push({ kind, job, version });
  await (await tables.writer(job, version)).write(outputs);
}

const all = events();
const v1 = sums(all, (event) => event.amount);
const DOUBLED = 'zoë';
const v2 = sums(all, (event) => (event.user === DOUBLED ? 2 * event.amount : event.amount));
const DROPPED = 'carol';
const v2Dropped = sums(all, (event) => (event.user === DROPPED ? undefined : event.amount));
const rowsOf = (user: string) => v1.filter((output) => output.key === user).length;

let jobs = 0;
const newJob = () => `diff_${RUN}_${jobs++}`;

describe.each<[TableKind, TableKind]>([
  ['kv', 'kv'],
  ['postgres', 'postgres'],
  ['redis', 'redis'],
  ['kv', 'postgres'],
])('diff of v1 in %s and v2 in %s', (fromKind, toKind) => {
  it("reports exactly the changed user's windows as changed and every other row as same", async () => {
    const job = newJob();
    await writeVersion(fromKind, job, 'v1', v1);
    await writeVersion(toKind, job, 'v2', v2);
    const diff = await diffVersions(
      job,
      { tables: await open(fromKind), version: 'v1' },
      { tables: await open(toKind), version: 'v2' },
      { limit: 1000 },
    );
    const changedUserRows = rowsOf(DOUBLED);
    expect(changedUserRows).toBeGreaterThan(1);
    expect(diff).toMatchObject({
      compared: v1.length,
      same: v1.length - changedUserRows,
      changed: changedUserRows,
      onlyInFrom: 0,
      onlyInTo: 0,
      topKeys: [{ key: DOUBLED, rows: changedUserRows }],
    });
    expect(diff.changedRows).toHaveLength(changedUserRows);
    for (const row of diff.changedRows) {
      expect(row.key).toBe(DOUBLED);
      const before = v1.find((output) => output.key === DOUBLED && output.window!.start === row.start)!;
      expect(row).toEqual({
        key: DOUBLED,
        start: row.start,
        end: row.start! + WINDOW_MS,
        from: before.value,
        to: { sum: 2 * (before.value as { sum: number }).sum },
      });
    }
  });

  it('shows the rows of a user v2 drops as only in v1', async () => {
    const job = newJob();
    await writeVersion(fromKind, job, 'v1', v1);
    await writeVersion(toKind, job, 'v2', v2Dropped);
    const diff = await diffVersions(
      job,
      { tables: await open(fromKind), version: 'v1' },
      { tables: await open(toKind), version: 'v2' },
      { limit: 3 },
    );
    expect(diff).toMatchObject({
      compared: v1.length,
      same: v1.length - rowsOf(DROPPED),
      changed: 0,
      onlyInFrom: rowsOf(DROPPED),
      onlyInTo: 0,
      topKeys: [{ key: DROPPED, rows: rowsOf(DROPPED) }],
    });
    expect(diff.changedRows).toHaveLength(3);
    for (const row of diff.changedRows) {
      expect(row.key).toBe(DROPPED);
      expect(row.from).toBeDefined();
      expect('to' in row).toBe(false);
    }
    // The other way round, the same rows are only in the later version.
    const reverse = await diffVersions(
      job,
      { tables: await open(toKind), version: 'v2' },
      { tables: await open(fromKind), version: 'v1' },
    );
    expect(reverse).toMatchObject({ onlyInFrom: 0, onlyInTo: rowsOf(DROPPED), changed: 0 });
  });

  it("compares only windows both versions' watermarks have passed, and one key with --key", async () => {
    const job = newJob();
    await writeVersion(fromKind, job, 'v1', v1);
    await writeVersion(toKind, job, 'v2', v2);
    // v1 has fired the first four windows, v2 only the first three (end - 1 <= watermark).
    const bounded = await diffVersions(
      job,
      { tables: await open(fromKind), version: 'v1', watermarkMs: 4 * WINDOW_MS - 1 },
      { tables: await open(toKind), version: 'v2', watermarkMs: 3 * WINDOW_MS - 1 },
    );
    const final = (output: TableOutput) => output.window!.end <= 3 * WINDOW_MS;
    const changedFinal = v1.filter((output) => final(output) && output.key === DOUBLED).length;
    expect(bounded).toMatchObject({
      finalThroughMs: 3 * WINDOW_MS - 1,
      compared: v1.filter(final).length,
      changed: changedFinal,
      same: v1.filter(final).length - changedFinal,
    });
    const none = await diffVersions(
      job,
      { tables: await open(fromKind), version: 'v1', watermarkMs: null },
      { tables: await open(toKind), version: 'v2' },
    );
    expect(none).toMatchObject({ compared: 0, finalThroughMs: null });
    const oneKey = await diffVersions(
      job,
      { tables: await open(fromKind), version: 'v1' },
      { tables: await open(toKind), version: 'v2' },
      { key: DOUBLED },
    );
    expect(oneKey).toMatchObject({ compared: rowsOf(DOUBLED), changed: rowsOf(DOUBLED), same: 0 });
    const otherKey = await diffVersions(
      job,
      { tables: await open(fromKind), version: 'v1' },
      { tables: await open(toKind), version: 'v2' },
      { key: 'a-b' },
    );
    expect(otherKey).toMatchObject({ compared: rowsOf('a-b'), same: rowsOf('a-b'), changed: 0 });
  });
});

describe('diff of actor rows', () => {
  it.each<TableKind>(['kv', 'postgres', 'redis'])('compares rows with no window as they stand (%s)', async (kind) => {
    const job = newJob();
    const actor = (key: string, value: unknown, row?: string): TableOutput => ({
      key,
      ...(row === undefined ? {} : { row }),
      value,
      revision: 1,
      kind: 'update',
    });
    await writeVersion(kind, job, 'v1', [
      actor('a', { n: 1 }),
      actor('a', { n: 2 }, 'x'),
      actor('b', { n: 3, m: [1] }),
    ]);
    // Key order within an object does not make a row differ.
    await writeVersion(kind, job, 'v2', [
      actor('a', { n: 1 }),
      actor('a', { n: 5 }, 'x'),
      actor('b', { m: [1], n: 3 }),
    ]);
    const tables = await open(kind);
    const diff = await diffVersions(
      job,
      { tables, version: 'v1', watermarkMs: null },
      { tables, version: 'v2', watermarkMs: null },
    );
    expect(diff).toMatchObject({ compared: 3, same: 2, changed: 1, onlyInFrom: 0, onlyInTo: 0 });
    expect(diff.changedRows).toEqual([{ key: 'a', row: 'x', from: { n: 2 }, to: { n: 5 } }]);
  });
});
