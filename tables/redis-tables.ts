// The Redis backend: per job version one hash and its row index, per job an alias key and a set of
// its versions.
//   kappa:table:<job>:<version>   hash: field = row key (protocol/serving-table.ts), value = the
//                                 row as JSON {"revision":…,["retracted":true,]"key":…,["row":…,]
//                                 ["start":…,"end":…,]"value":…}
//   kappa:rows:<job>:<version>    sorted set: every field of the hash, all at score 0, so rows are
//                                 read in row-key order (ZRANGE BYLEX): one key's, or a page
//   kappa:alias:<job>             string: the version apps read (GET it, then HGETALL its hash)
//   kappa:tables:<job>            set: the versions whose table exists (a hash with no fields does
//                                 not exist in Redis, so this is what `exists` and writers check)
// Job and version names are plain (NAME_PATTERN: no ':'), so these keys never collide. Every write
// is one Lua script per batch that compares each row's stored revision with the incoming one, so
// concurrent writers never let an older revision win. The keys of one job are not hash-tagged:
// Redis Cluster is not supported (a single node, or Sentinel, is).
import { createClient, ErrorReply, type RedisClientType } from '@redis/client';
import { createHash } from 'node:crypto';
import { assertName, KappaError, kvKeyToken, type ServingTableRow } from '../protocol/index.js';
import {
  assertTableName,
  newestPerRow,
  sortRows,
  type PageOptions,
  type ServingTables,
  type TableOutput,
  type TablePage,
  type TableWriter,
} from './types.js';

export const redisKeys = {
  table: (job: string, version: string) => (assertTableName(job, version), `kappa:table:${job}:${version}`),
  rows: (job: string, version: string) => (assertTableName(job, version), `kappa:rows:${job}:${version}`),
  alias: (job: string) => (assertName('job', job), `kappa:alias:${job}`),
  versions: (job: string) => (assertName('job', job), `kappa:tables:${job}`),
};

/**
 * KEYS: table hash, versions set, row index. ARGV: version, then (row key, revision, row JSON) per row.
 * Refuses a dropped (or never created) table, so a retired version's zombie cannot recreate it.
 * The stored revision is read from the row's head (`{"revision":N`) without decoding the value;
 * cjson decodes a row written some other way.
 */
const UPSERT_SCRIPT = `
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply('KAPPA_NO_TABLE ' .. KEYS[1] .. ' does not exist')
end
local written = 0
for i = 2, #ARGV, 3 do
  local incoming = tonumber(ARGV[i + 1])
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local stored = -1
  if current then
    stored = tonumber(string.match(current, '^{"revision":(%d+)')) or cjson.decode(current).revision
  end
  if stored < incoming then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    if not current then redis.call('ZADD', KEYS[3], 0, ARGV[i]) end
    written = written + 1
  end
end
return written
`;

/** KEYS: alias, table hash, versions set, row index. ARGV: version. Refuses the aliased version. */
const DROP_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.error_reply('KAPPA_ALIASED ' .. KEYS[1] .. ' points at ' .. ARGV[1])
end
redis.call('DEL', KEYS[2], KEYS[4])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`;

/** Rows per script call: one call blocks Redis while it runs, so a huge replay batch is split. */
const ROWS_PER_CALL = 10_000;

type Client = RedisClientType;

export class RedisTables implements ServingTables {
  readonly kind = 'redis';
  private readonly scripts: { upsert: LuaScript; drop: LuaScript };

  private constructor(private readonly client: Client) {
    this.scripts = { upsert: new LuaScript(client, UPSERT_SCRIPT), drop: new LuaScript(client, DROP_SCRIPT) };
  }

  static async open(url: string): Promise<RedisTables> {
    let connected = false;
    const client = createClient({
      url,
      socket: {
        connectTimeout: 5_000,
        // A server that is not there at start is a configuration error, reported at once; one that
        // goes away later is waited for (commands queue until it is back), with back-off.
        reconnectStrategy: (retries, cause) =>
          connected ? Math.min(100 * 2 ** retries, 2_000) : retries < 3 ? 200 : cause,
      },
    }) as Client;
    // Connection errors surface on the commands that hit them; the client reconnects by itself.
    client.on('error', () => {});
    client.on('ready', () => (connected = true));
    try {
      await client.connect();
    } catch (error) {
      throw new KappaError('CONNECTION_FAILED', `Redis at ${url} unreachable: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return new RedisTables(client);
  }

  async writer(job: string, version: string): Promise<TableWriter> {
    assertTableName(job, version);
    await this.client.sAdd(redisKeys.versions(job), version);
    return new RedisTableWriter(this.scripts.upsert, job, version);
  }

  async exists(job: string, version: string): Promise<boolean> {
    assertTableName(job, version);
    return (await this.client.sIsMember(redisKeys.versions(job), version)) === 1;
  }

  async read(job: string, version: string, key: string): Promise<ServingTableRow[]> {
    await this.existing(job, version);
    // A key's rows are `<token>` and `<token>.…`, a contiguous range of the index ('/' follows '.').
    const token = kvKeyToken(key);
    const fields = [
      token,
      ...(await this.client.zRangeByLex(redisKeys.rows(job, version), `[${token}.`, `(${token}/`)),
    ];
    // The stored key decides (a digest token stands for a key too long to spell out).
    return sortRows((await this.liveRows(job, version, fields)).filter((row) => row.key === key));
  }

  /** One ZRANGE BYLEX of the index after the cursor and one HMGET: a page costs the same at any size. */
  async page(job: string, version: string, { limit, after }: PageOptions): Promise<TablePage> {
    await this.existing(job, version);
    const fields = await this.client.zRangeByLex(
      redisKeys.rows(job, version),
      after === undefined ? '-' : `(${after}`,
      '+',
      { LIMIT: { offset: 0, count: limit + 1 } },
    );
    const more = fields.length > limit;
    if (more) fields.length = limit;
    const rows = await this.liveRows(job, version, fields);
    return more ? { rows, next: fields.at(-1)! } : { rows };
  }

  private async existing(job: string, version: string): Promise<void> {
    if (!(await this.exists(job, version))) {
      throw new KappaError(
        'TOPIC_NOT_FOUND',
        `job '${job}' version '${version}' has no serving table (Redis hash ${redisKeys.table(job, version)})`,
      );
    }
  }

  /** The live rows of `fields`, in their order (tombstones and missing fields skipped). */
  private async liveRows(job: string, version: string, fields: readonly string[]): Promise<ServingTableRow[]> {
    if (fields.length === 0) return [];
    const rows: ServingTableRow[] = [];
    for (const json of await this.client.hmGet(redisKeys.table(job, version), [...fields])) {
      if (json === null || json === undefined) continue;
      const row = JSON.parse(json) as ServingTableRow;
      if (row.retracted !== true) rows.push(row);
    }
    return rows;
  }

  /** SET is atomic: a reader's GET sees the old version or the new one. */
  async setAlias(job: string, version: string): Promise<void> {
    assertTableName(job, version);
    await this.client.multi().sAdd(redisKeys.versions(job), version).set(redisKeys.alias(job), version).exec();
  }

  async drop(job: string, version: string): Promise<void> {
    try {
      await this.scripts.drop.run(
        [redisKeys.alias(job), redisKeys.table(job, version), redisKeys.versions(job), redisKeys.rows(job, version)],
        [version],
      );
    } catch (error) {
      if (error instanceof ErrorReply && error.message.startsWith('KAPPA_ALIASED')) {
        throw new KappaError(
          'ADMIN_REJECTED',
          `job '${job}' version '${version}' is the version the alias (${redisKeys.alias(job)}) serves; cut over to another version before dropping its table`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** Upserts a batch with one script call per ROWS_PER_CALL rows, the calls pipelined. */
export class RedisTableWriter implements TableWriter {
  constructor(
    private readonly upsert: LuaScript,
    readonly job: string,
    readonly version: string,
  ) {}

  async write(outputs: readonly TableOutput[]): Promise<void> {
    if (outputs.length === 0) return;
    // The script would handle duplicates too; dropping them here saves it the work.
    const newest = newestPerRow(outputs);
    const keys = [
      redisKeys.table(this.job, this.version),
      redisKeys.versions(this.job),
      redisKeys.rows(this.job, this.version),
    ];
    const calls: Promise<unknown>[] = [];
    let args: string[] = [this.version];
    for (const [rowKey, output] of newest) {
      args.push(rowKey, String(output.revision), encodeRedisRow(output));
      if (args.length > ROWS_PER_CALL * 3) {
        calls.push(this.upsert.run(keys, args));
        args = [this.version];
      }
    }
    if (args.length > 1) calls.push(this.upsert.run(keys, args));
    try {
      await Promise.all(calls);
    } catch (error) {
      if (error instanceof ErrorReply && error.message.startsWith('KAPPA_NO_TABLE')) {
        throw new KappaError(
          'TOPIC_NOT_FOUND',
          `job '${this.job}' version '${this.version}' has no serving table (dropped?); ${outputs.length} outputs not written`,
          {
            cause: error,
          },
        );
      }
      throw error;
    }
  }
}

/** The row JSON, revision first so the script reads it without decoding the value. */
function encodeRedisRow(output: TableOutput): string {
  const retract = output.kind === 'retract';
  return JSON.stringify({
    revision: output.revision,
    ...(retract ? { retracted: true } : {}),
    key: output.key,
    ...(output.row !== undefined ? { row: output.row } : {}),
    ...(output.window ? { start: output.window.start, end: output.window.end } : {}),
    value: retract ? null : (output.value ?? null),
  });
}

/** EVALSHA, loading the script with EVAL when the server does not have it (restart, SCRIPT FLUSH). */
class LuaScript {
  private readonly sha1: string;

  constructor(
    private readonly client: Client,
    private readonly source: string,
  ) {
    this.sha1 = createHash('sha1').update(source).digest('hex');
  }

  async run(keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.client.evalSha(this.sha1, { keys, arguments: args });
    } catch (error) {
      if (error instanceof ErrorReply && error.message.startsWith('NOSCRIPT'))
        return this.client.eval(this.source, { keys, arguments: args });
      throw error;
    }
  }
}
