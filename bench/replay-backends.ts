// Where bench/replay.ts's serving tables live: the bench's own nats-server for KV; for PostgreSQL
// a database created for the run on the machine's server (KAPPA_POSTGRES_URL, default the tests'
// postgres://postgres@127.0.0.1:5432/test) and dropped after it; for Redis the machine's server
// (KAPPA_REDIS_URL, default redis://127.0.0.1:6379) under the run's own job name, whose keys
// are deleted after it. Both servers are shared with other engineers' tests and benches, so
// nothing of one run meets another's.
import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { createClient } from '@redis/client';
import pg from 'pg';
import { openServingTables, type ServingTables, type TableKind, type TableSettings } from '../tables/index.js';
import { redisKeys } from '../tables/redis-tables.js';

/** A replayed version's table: `none` runs the job without one. */
export type ReplaySink = TableKind | 'none';

export const REPLAY_SINKS: readonly ReplaySink[] = ['kv', 'postgres', 'redis', 'none'];

const POSTGRES_URL = process.env.KAPPA_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.KAPPA_REDIS_URL ?? 'redis://127.0.0.1:6379';

export class ReplayBackends {
  private readonly opened = new Map<TableKind, Promise<ServingTables>>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly job: string,
    /** What the `kappa` processes are given (KAPPA_POSTGRES_URL, KAPPA_REDIS_URL) and the bench reads with. */
    readonly settings: TableSettings,
    /** The run's PostgreSQL database, dropped at close. */
    private readonly database: string | undefined,
    /** The servers' processes, when they run on this machine: their CPU is part of a run's cost. */
    readonly serverPids: { postgres?: number; redis?: number },
  ) {}

  /** Prepares the backends `sinks` name for the job `job` (a name unique to the run). */
  static async prepare(nc: NatsConnection, job: string, sinks: readonly ReplaySink[]): Promise<ReplayBackends> {
    const settings: TableSettings = {};
    const serverPids: { postgres?: number; redis?: number } = {};
    let database: string | undefined;
    if (sinks.includes('postgres')) {
      database = job.toLowerCase();
      const admin = new pg.Client(POSTGRES_URL);
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${database}"`);
        const backend = (await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        // The postmaster forks one process per connection: its pid is this connection's parent.
        if (isThisMachine(POSTGRES_URL)) serverPids.postgres = parentPid(backend);
      } finally {
        await admin.end();
      }
      const url = new URL(POSTGRES_URL);
      url.pathname = `/${database}`;
      settings.postgresUrl = url.toString();
    }
    if (sinks.includes('redis')) {
      settings.redisUrl = REDIS_URL;
      const client = createClient({ url: REDIS_URL });
      await client.connect();
      try {
        const pid = /process_id:(\d+)/.exec(await client.info('server'))?.[1];
        if (pid !== undefined && isThisMachine(REDIS_URL)) serverPids.redis = Number(pid);
      } finally {
        await client.close();
      }
    }
    return new ReplayBackends(nc, job, settings, database, serverPids);
  }

  /** The environment of the `kappa` processes: where PostgreSQL and Redis are. */
  get env(): Record<string, string> {
    return {
      ...(this.settings.postgresUrl ? { KAPPA_POSTGRES_URL: this.settings.postgresUrl } : {}),
      ...(this.settings.redisUrl ? { KAPPA_REDIS_URL: this.settings.redisUrl } : {}),
    };
  }

  /** The backend's tables, read through the same interface `kappa view` uses. */
  tables(kind: TableKind): Promise<ServingTables> {
    let tables = this.opened.get(kind);
    if (!tables) {
      tables = openServingTables(kind, this.nc, this.settings);
      this.opened.set(kind, tables);
    }
    return tables;
  }

  /** Closes the bench's clients, drops the run's database and deletes its Redis keys. */
  async close(): Promise<void> {
    for (const tables of this.opened.values()) await (await tables).close();
    if (this.database !== undefined) {
      const admin = new pg.Client(POSTGRES_URL);
      await admin.connect();
      try {
        // FORCE: a killed worker's connection may not have been noticed by the server yet.
        await admin.query(`DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    }
    if (this.settings.redisUrl !== undefined) {
      const client = createClient({ url: this.settings.redisUrl });
      await client.connect();
      try {
        // Every version a writer was opened for is in the job's set of versions.
        const versions = await client.sMembers(redisKeys.versions(this.job));
        await client.del([
          redisKeys.alias(this.job),
          redisKeys.versions(this.job),
          ...versions.flatMap((version) => [redisKeys.table(this.job, version), redisKeys.rows(this.job, version)]),
        ]);
      } finally {
        await client.close();
      }
    }
  }
}

/** A process's parent (Linux /proc), if it is on this machine. */
function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function isThisMachine(url: string): boolean {
  return ['', 'localhost', '127.0.0.1', '[::1]'].includes(new URL(url).hostname);
}
