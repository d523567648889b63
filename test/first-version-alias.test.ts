// A job's first version is what apps read as soon as it has a table, on every backend, with no
// cutover: `kappa start` of v1 points the job's alias at it (the registry, the PostgreSQL view
// `kappa_<job>`, the Redis alias key) and the query API serves v1's rows; starting v2 does not move
// the alias (that is cutover's job). Real processes: a coordinator, one worker carrying both
// versions, `kappa start`. PostgreSQL and Redis are the machine's (KAPPA_POSTGRES_URL,
// KAPPA_REDIS_URL); job names are unique to the run and everything created is dropped at the end.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from '@redis/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import { AliasRegistry, openServingTables, type TableKind } from '../tables/index.js';
import { postgresViewName } from '../tables/postgres-tables.js';
import { redisKeys } from '../tables/redis-tables.js';
import { kappa, KappaProcess, workerArgs } from './harness/cli.js';
import { derivedJobModule } from './harness/job-modules.js';
import type { Click } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.KAPPA_REDIS_URL ?? 'redis://127.0.0.1:6379';
const V1 = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
const V2 = resolve(import.meta.dirname, '../examples/clicks-per-window-v2.mjs');

describe.each<TableKind>(['postgres', 'redis', 'kv'])('the first version started, with a %s table', (table) => {
  const nats = useNatsServer();
  let dir: string;
  const processes: KappaProcess[] = [];
  const job = `first_${table}_${process.pid}_${Date.now() % 100_000}`;
  const env = { KAPPA_POSTGRES_URL: POSTGRES_URL, KAPPA_REDIS_URL: REDIS_URL };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), `kappa-first-alias-${table}-`));
  });
  afterAll(async () => {
    await Promise.all(processes.map((child) => child.kill()));
    // The native alias outlives drop(): remove it first so both tables can go.
    if (table === 'postgres') {
      const client = new pg.Client(POSTGRES_URL);
      await client.connect();
      await client.query(`DROP VIEW IF EXISTS "${postgresViewName(job)}"`);
      await client.end();
    }
    if (table === 'redis') {
      const client = createClient({ url: REDIS_URL });
      await client.connect();
      await client.del(redisKeys.alias(job));
      await client.close();
    }
    const tables = await openServingTables(table, nats.nc, { postgresUrl: POSTGRES_URL, redisUrl: REDIS_URL });
    for (const version of ['v1', 'v2']) await tables.drop(job, version).catch(() => undefined);
    await tables.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function jobModule(example: string, version: string): string {
    return derivedJobModule(dir, version, example, { name: job, sink: { kind: table } });
  }

  function spawn(args: string[]): KappaProcess {
    const child = new KappaProcess([...args, '--nats', nats.url], env);
    processes.push(child);
    return child;
  }

  /** What each place apps read says the alias is (undefined: no alias there). */
  async function aliasEverywhere(): Promise<{ registry?: string; native?: string }> {
    const registry = (await (await AliasRegistry.open(nats.nc)).get(job))?.version;
    if (table === 'postgres') {
      const client = new pg.Client(POSTGRES_URL);
      await client.connect();
      try {
        const result = await client.query<{ comment: string | null }>(
          'SELECT obj_description(to_regclass($1), $2) AS comment',
          [`"${postgresViewName(job)}"`, 'pg_class'],
        );
        return { registry, native: /version (\S+)$/.exec(result.rows[0]?.comment ?? '')?.[1] };
      } finally {
        await client.end();
      }
    }
    if (table === 'redis') {
      const client = createClient({ url: REDIS_URL });
      await client.connect();
      try {
        return { registry, native: (await client.get(redisKeys.alias(job))) ?? undefined };
      } finally {
        await client.close();
      }
    }
    return { registry, native: registry };
  }

  it('points the alias at v1 once it has a table, serves v1 through it, and keeps it there when v2 starts', async () => {
    expect((await kappa(['topic', 'create', 'clicks', '--partitions', '2', '--nats', nats.url])).code).toBe(0);
    const producer = await Producer.forTopic(nats.nc, 'clicks');
    const startMs = Date.UTC(2026, 10, 24, 12);
    for (let id = 0; id < 400; id++) {
      const click: Click = {
        id,
        user: `user-${id % 7}`,
        ts: startMs + id * 100,
        ...(id % 3 ? { page: `/p${id % 5}` } : {}),
      };
      if (!producer.publish({ key: click.user, time: click.ts, value: click })) await producer.ready();
    }
    await producer.flush();
    const coordinator = spawn(['coordinator', '--id', 'c1', '--http-port', '0', '--session-timeout', '3s']);
    const [, port] = await coordinator.waitForLog(/"httpPort":(\d+)/);
    spawn(workerArgs({ jobs: [jobModule(V1, 'v1'), jobModule(V2, 'v2')], id: 'w1', stateDir: join(dir, 'w1') }));
    const logs = () => processes.map((child) => child.logs.slice(-1500)).join('\n---\n');

    const started = await kappa(['start', job, '--version', 'v1', '--nats', nats.url], { env });
    expect(started.code, started.stderr).toBe(0);
    // No cutover: the query API answers through the alias with v1's rows.
    const served = await pollUntil(
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/v1/views/${job}?key=user-1`);
        const body = (await response.json()) as { version?: string; rows?: unknown[] };
        return response.ok && body.rows!.length > 0 ? body : undefined;
      },
      { what: 'v1 served through the alias', timeoutMs: 60_000, context: logs },
    );
    expect(served.version).toBe('v1');
    expect(await aliasEverywhere()).toEqual({ registry: 'v1', native: 'v1' });
    if (table === 'postgres') {
      const client = new pg.Client(POSTGRES_URL);
      await client.connect();
      const result = await client.query<{ rows: number }>(
        `SELECT count(*)::int AS rows FROM "${postgresViewName(job)}"`,
      );
      await client.end();
      expect(result.rows[0]!.rows).toBeGreaterThan(0);
    }
    const viewed = await kappa(['view', job, '--key', 'user-1', '--json', '--nats', nats.url], { env });
    expect(viewed.code, viewed.stderr).toBe(0);
    expect(viewed.stdout.trim().split('\n').length).toBe(served.rows!.length);

    // v2 starts, builds its table and catches up; the alias stays on v1.
    const second = await kappa(['start', job, '--version', 'v2', '--nats', nats.url], { env });
    expect(second.code, second.stderr).toBe(0);
    const tables = await openServingTables(table, nats.nc, { postgresUrl: POSTGRES_URL, redisUrl: REDIS_URL });
    try {
      await pollUntil(
        async () => {
          const v2 = (await leaderStatus(nats.nc)).versions.find((version) => version.version === 'v2');
          return v2?.progress === 1 && (await tables.exists(job, 'v2'));
        },
        { what: 'v2 caught up with a table', timeoutMs: 60_000, context: logs },
      );
    } finally {
      await tables.close();
    }
    // The leader reconsiders aliases every second: give it a few rounds.
    await sleep(3_000);
    expect(await aliasEverywhere()).toEqual({ registry: 'v1', native: 'v1' });
    const versions = (await leaderStatus(nats.nc)).versions;
    expect(versions.map((version) => [version.version, version.served]).sort()).toEqual([
      ['v1', true],
      ['v2', false],
    ]);
  }, 180_000);
});
