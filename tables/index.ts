// Opens the serving-table backend a job version uses.
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError } from '../protocol/index.js';
import { KvTables } from './kv-tables.js';
import { PostgresTables } from './postgres-tables.js';
import { RedisTables } from './redis-tables.js';
import type { ServingTables, TableKind, TableSettings } from './types.js';

export * from './types.js';
export { KvTables, RevisionGuardedTable } from './kv-tables.js';
export { PostgresTables, postgresTableName, postgresViewName } from './postgres-tables.js';
export { RedisTables, redisKeys } from './redis-tables.js';
export { AliasRegistry, type AliasEntry } from './alias-registry.js';

export async function openServingTables(kind: TableKind, nc: NatsConnection, settings: TableSettings): Promise<ServingTables> {
  switch (kind) {
    case 'kv':
      return new KvTables(nc);
    case 'postgres':
      if (!settings.postgresUrl) throw new ConfigError(`serving tables of kind 'postgres' need KAPPA_POSTGRES_URL (e.g. postgres://user@host:5432/db); it is not set`);
      return new PostgresTables(settings.postgresUrl);
    case 'redis':
      if (!settings.redisUrl) throw new ConfigError(`serving tables of kind 'redis' need KAPPA_REDIS_URL (e.g. redis://host:6379); it is not set`);
      return RedisTables.open(settings.redisUrl);
    default:
      throw new ConfigError(`serving tables of kind '${kind}' are not available`);
  }
}
