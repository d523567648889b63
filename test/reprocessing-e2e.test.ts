// The reprocessing pattern end to end with real processes, once with the NATS KV table and once
// with PostgreSQL: v1 (a windowed count) runs and serves while a producer keeps writing; v2 (the
// "bug fix": distinct pages) is deployed on its own worker and replays from earliest into its own
// table; `--cutover auto` flips the alias once v2 has caught up. A reader polling the query API
// (and, for PostgreSQL, the alias view) sees v1, then v2, and never a failed or empty read. v2's
// table equals the batch reference of v2's logic over every event, and v1 is retired: its table
// is dropped after the grace period.
//
// Then the lag bound itself: v2's worker is frozen (SIGSTOP) while events keep arriving, so v2 is
// thousands of messages behind with every task still running; `kappa cutover` must refuse, naming
// the lag and the bound, and succeed once v2 has caught up.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import { AliasRegistry } from '../tables/alias-registry.js';
import type { ServingTableRow } from '../protocol/index.js';
import { openServingTables, type TableKind } from '../tables/index.js';
import { postgresViewName } from '../tables/postgres-tables.js';
import { kappa, KappaProcess, workerArgs } from './harness/cli.js';
import { derivedJobModule } from './harness/job-modules.js';
import { clicksReference, clickWithLateOnes, type Click } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import { expectedResults, readTopicLog, viewedTable } from './harness/expected-results.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const V1 = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
const V2 = resolve(import.meta.dirname, '../examples/clicks-per-window-v2.mjs');
/**
 * The topic, recording the field its producer keys by: the jobs key by 'user' too, so the leader
 * plans them to read it directly (no repartition stage), as the batch answer assumes.
 */
function createClicksTopic(url: string) {
  return kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--key', 'user', '--nats', url]);
}

const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Read {
  atMs: number;
  ok: boolean;
  version?: string;
  rows?: number;
  error?: string;
}

describe.each<TableKind>(['kv', 'postgres'])('replay v2 and cut over, with a %s table', (table) => {
  const nats = useNatsServer();
  let dir: string;
  const processes: KappaProcess[] = [];
  // A job name of its own: the PostgreSQL server is shared with other runs.
  const job = `clicks_${table}_${process.pid}_${Date.now() % 100_000}`;
  const env = { KAPPA_POSTGRES_URL: POSTGRES_URL };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), `kappa-reprocessing-${table}-`));
  });
  afterAll(async () => {
    await Promise.all(processes.map((process) => process.kill()));
    const tables = await openServingTables(table, nats.nc, { postgresUrl: POSTGRES_URL });
    for (const version of ['v1', 'v2']) await tables.drop(job, version).catch(() => undefined);
    if (table === 'postgres') {
      const client = new pg.Client(POSTGRES_URL);
      await client.connect();
      await client.query(`DROP VIEW IF EXISTS ${postgresViewName(job)}`).catch(() => undefined);
      await tables.drop(job, 'v2').catch(() => undefined);
      await client.end();
    }
    await tables.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A job module: the example with this test's job name and table kind. */
  function jobModule(example: string, version: string): string {
    return derivedJobModule(dir, version, example, { name: job, sink: { kind: table } });
  }

  function spawn(args: string[]): KappaProcess {
    const child = new KappaProcess([...args, '--nats', nats.url], env);
    processes.push(child);
    return child;
  }

  it('serves v1 while v2 replays, flips to v2 with no failed read, and v2 equals the batch answer', async () => {
    expect((await createClicksTopic(nats.url)).code).toBe(0);
    const coordinator = spawn(['coordinator', '--id', 'c1', '--http-port', '0', '--session-timeout', '3s']);
    const [, port] = await coordinator.waitForLog(/"httpPort":(\d+)/);
    spawn(workerArgs({ jobs: [jobModule(V1, 'v1')], id: 'w1', stateDir: join(dir, 'w1'), checkpointInterval: '1s' }));

    // A producer keeps writing: 50 clicks every 100 ms.
    const producer = await Producer.forTopic(nats.nc, 'clicks');
    let produced = 0;
    let producing = true;
    const production = (async () => {
      while (producing) {
        for (let index = 0; index < 50; index++, produced++) {
          const click = clickWithLateOnes(produced);
          if (!producer.publish({ key: click.user, time: click.ts, value: click })) await producer.ready();
        }
        await sleep(100);
      }
      await producer.flush();
    })();

    // v1 is the first version: it becomes what apps read once it has caught up.
    const v1 = await kappa(
      [
        'replay',
        job,
        '--version',
        'v1',
        '--from',
        'earliest',
        '--cutover',
        'auto',
        '--max-lag',
        '300',
        '--follow',
        '--nats',
        nats.url,
      ],
      { env },
    );
    expect(v1.code, v1.stderr + v1.stdout).toBe(0);
    // v1 may be served (lag within the bound) before its first window for user-1 fired: the reads
    // start once it has a row, so an empty read can only come from the flip to v2.
    await pollUntil(
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/v1/views/${job}?key=user-1`);
        const body = (await response.json()) as { rows?: ServingTableRow[] };
        return response.ok && (body.rows?.length ?? 0) > 0 ? true : undefined;
      },
      { what: 'a row of user-1 in the served v1', timeoutMs: 30_000 },
    );

    // A reader polls the query API (and the PostgreSQL alias view) the whole time from here on.
    const reads: Read[] = [];
    const viewReads: Read[] = [];
    let reading = true;
    const pgClient = table === 'postgres' ? new pg.Client(POSTGRES_URL) : undefined;
    await pgClient?.connect();
    const reader = (async () => {
      while (reading) {
        const atMs = Date.now();
        try {
          const response = await fetch(`http://127.0.0.1:${port}/v1/views/${job}?key=user-1`);
          const body = (await response.json()) as { version?: string; rows?: ServingTableRow[]; error?: string };
          reads.push(
            response.ok
              ? { atMs, ok: true, version: body.version, rows: body.rows!.length }
              : { atMs, ok: false, error: body.error },
          );
        } catch (error) {
          reads.push({ atMs, ok: false, error: (error as Error).message });
        }
        if (pgClient) {
          try {
            const result = await pgClient.query(
              `SELECT count(*)::int AS rows FROM ${postgresViewName(job)} WHERE key = 'user-1'`,
            );
            viewReads.push({ atMs, ok: true, rows: (result.rows[0] as { rows: number }).rows });
          } catch (error) {
            viewReads.push({ atMs, ok: false, error: (error as Error).message });
          }
        }
        await sleep(50);
      }
    })();

    // Version 2 is deployed on a worker of its own and replays from the start of the topic.
    await sleep(1_000);
    spawn(workerArgs({ jobs: [jobModule(V2, 'v2')], id: 'w2', stateDir: join(dir, 'w2'), checkpointInterval: '1s' }));
    const replayStartedMs = Date.now();
    const v2 = await kappa(
      [
        'replay',
        job,
        '--version',
        'v2',
        '--from',
        'earliest',
        '--cutover',
        'auto',
        '--max-lag',
        '300',
        '--follow',
        '--nats',
        nats.url,
      ],
      { env },
    );
    expect(v2.code, v2.stderr + v2.stdout).toBe(0);
    expect(v2.stdout).toMatch(/v2: running, .*serving/);
    await sleep(1_000);
    reading = false;
    await reader;
    await pgClient?.end();
    producing = false;
    await production;

    // Every read succeeded with rows; the version went v1 … v1, v2 … v2, flipping once, after the replay started.
    expect(reads.length).toBeGreaterThan(20);
    expect(reads.filter((read) => !read.ok)).toEqual([]);
    expect(reads.every((read) => read.rows! > 0)).toBe(true);
    const versions = reads.map((read) => read.version);
    const flip = versions.indexOf('v2');
    expect(flip).toBeGreaterThan(0);
    expect(versions.slice(0, flip).every((version) => version === 'v1')).toBe(true);
    expect(versions.slice(flip).every((version) => version === 'v2')).toBe(true);
    expect(reads[flip]!.atMs).toBeGreaterThan(replayStartedMs);
    if (table === 'postgres') {
      expect(viewReads.filter((read) => !read.ok)).toEqual([]);
      expect(viewReads.every((read) => read.rows! > 0)).toBe(true);
    }

    // v2 caught up with everything produced; its table (read through the alias) is the batch answer of v2's logic.
    await waitFor('v2 caught up and served', async () => {
      const view = (await leaderStatus(nats.nc)).versions.find((candidate) => candidate.version === 'v2');
      return view?.progress === 1 && view.served ? true : undefined;
    });
    const viewed = await kappa(['view', job, '--json', '--nats', nats.url], { env });
    expect(viewed.code, viewed.stderr).toBe(0);
    const served = viewedTable(viewed.stdout);
    const reference = await clicksReference(V2);
    const log = await readTopicLog<Click>(nats.nc, 'clicks', PARTITIONS);
    expect(log).toHaveLength(produced);
    const expected = expectedResults(reference, log, PARTITIONS);
    expect(expected.windows.size).toBeGreaterThan(50);
    expect(served).toEqual(expected.windows);

    // The served version cannot be retired; v1 can, and its table is gone after the grace period.
    const refused = await kappa(['retire', job, '--version', 'v2', '--nats', nats.url], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/alias points at it/);
    const retired = await kappa(['retire', job, '--version', 'v1', '--grace', '1s', '--nats', nats.url], { env });
    expect(retired.code, retired.stderr).toBe(0);
    const tables = await openServingTables(table, nats.nc, { postgresUrl: POSTGRES_URL });
    try {
      await waitFor('v1 retired and its table dropped', async () =>
        !(await leaderStatus(nats.nc)).versions.some((candidate) => candidate.version === 'v1') &&
        !(await tables.exists(job, 'v1'))
          ? true
          : undefined,
      );
      expect(await tables.exists(job, 'v2')).toBe(true);
    } finally {
      await tables.close();
    }
    console.log(
      `${table}: ${produced} events, ${reads.length} reads through the alias (flip after ${flip}), ${expected.windows.size} windows of v2 checked`,
    );
  }, 240_000);

  function waitFor(what: string, probe: () => Promise<true | undefined>): Promise<true> {
    return pollUntil(probe, {
      what,
      timeoutMs: 60_000,
      context: () => processes.map((p) => p.logs.slice(-1500)).join('\n---\n'),
    });
  }
});

describe('kappa cutover and the lag bound', () => {
  const nats = useNatsServer();
  let dir: string;
  const processes: KappaProcess[] = [];
  const job = `lagged_${process.pid}_${Date.now() % 100_000}`;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kappa-cutover-lag-'));
  });
  afterAll(async () => {
    for (const child of processes) child.child.kill('SIGCONT');
    await Promise.all(processes.map((child) => child.kill()));
    rmSync(dir, { recursive: true, force: true });
  });

  function spawn(args: string[]): KappaProcess {
    const child = new KappaProcess([...args, '--nats', nats.url]);
    processes.push(child);
    return child;
  }

  function jobModule(example: string, version: string): string {
    return derivedJobModule(dir, version, example, { name: job });
  }

  async function produce(producer: Producer, from: number, count: number): Promise<void> {
    const startMs = Date.UTC(2026, 10, 24, 12);
    for (let id = from; id < from + count; id++) {
      const click: Click = { id, user: `user-${(id * 31) % 13}`, ts: startMs + id * 40 };
      if (!producer.publish({ key: click.user, time: click.ts, value: click })) await producer.ready();
    }
    await producer.flush();
  }

  /** v2 as the leader sees it, with how many of its tasks run. */
  async function v2View() {
    const status = await leaderStatus(nats.nc);
    const view = status.versions.find((candidate) => candidate.job === job && candidate.version === 'v2');
    const running = status.tasks.filter(
      (task) => task.job === job && task.version === 'v2' && task.state === 'running',
    ).length;
    return view && { ...view, running };
  }

  it('refuses a cutover while v2 is thousands of messages behind, naming the lag and the bound, and flips once it has caught up', async () => {
    expect((await createClicksTopic(nats.url)).code).toBe(0);
    // A long session timeout: the frozen worker's tasks stay assigned and running, only behind.
    spawn(['coordinator', '--id', 'c1', '--http-port', '0', '--session-timeout', '60s']);
    spawn(workerArgs({ jobs: [jobModule(V1, 'v1')], id: 'w1', stateDir: join(dir, 'w1') }));
    const w2 = spawn(workerArgs({ jobs: [jobModule(V2, 'v2')], id: 'w2', stateDir: join(dir, 'w2') }));
    const producer = await Producer.forTopic(nats.nc, 'clicks');
    await produce(producer, 0, 1_000);
    expect((await kappa(['start', job, '--version', 'v1', '--nats', nats.url])).code).toBe(0);
    expect((await kappa(['replay', job, '--version', 'v2', '--from', 'earliest', '--nats', nats.url])).code).toBe(0);
    await waitFor('v2 running on every partition and caught up', async () => {
      const view = await v2View();
      return view?.running === PARTITIONS && view.progress === 1 ? true : undefined;
    });

    // v2's worker stops making progress while 4,000 more events arrive: v2 is genuinely behind.
    w2.child.kill('SIGSTOP');
    await produce(producer, 1_000, 4_000);
    const behind = await waitFor('v2 behind by the new events, every task still running', async () => {
      const view = await v2View();
      return view?.running === PARTITIONS && view.lagMessages >= 4_000 ? view : undefined;
    });
    expect(behind.served).toBe(false);
    const refused = await kappa(['cutover', job, '--version', 'v2', '--max-lag', '100', '--nats', nats.url]);
    expect(refused.code, refused.stdout + refused.stderr).toBe(1);
    const lag = /v2 is (\d+) messages behind \(bound 100\)/.exec(refused.stderr);
    expect(lag, refused.stderr).not.toBeNull();
    expect(Number(lag![1])).toBeGreaterThanOrEqual(4_000);
    const aliases = await AliasRegistry.open(nats.nc);
    expect((await aliases.get(job))?.version).toBe('v1');

    // Thawed, v2 catches up, and the same cutover goes through.
    w2.child.kill('SIGCONT');
    await waitFor('v2 caught up again', async () => ((await v2View())?.progress === 1 ? true : undefined));
    const accepted = await kappa(['cutover', job, '--version', 'v2', '--max-lag', '100', '--nats', nats.url]);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toMatch(/apps now read v2 \(was v1\)/);
    expect((await aliases.get(job))?.version).toBe('v2');
    await producer.close();
  }, 180_000);

  function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    return pollUntil(probe, {
      what,
      timeoutMs: 60_000,
      context: () => processes.map((p) => p.logs.slice(-1500)).join('\n---\n'),
    });
  }
});
