// Opens the serving-table backend a job version uses. The PostgreSQL and Redis clients are loaded
// only when a job uses them (import them from their modules directly): every task thread imports
// this module, and loading @redis/client cost each one ≈ 0.1 s at start.
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError } from '../protocol/index.js';
import { KvTables } from './kv-tables.js';
import type { ServingTables, TableKind, TableSettings } from './types.js';

export * from './types.js';
export { KvTables, RevisionGuardedTable } from './kv-tables.js';
export { AliasRegistry, type AliasEntry } from './alias-registry.js';

export async function openServingTables(
  kind: TableKind,
  nc: NatsConnection,
  settings: TableSettings,
): Promise<ServingTables> {
  switch (kind) {
    case 'kv':
      return new KvTables(nc, settings.replicas ?? 1);
    case 'postgres':
      if (!settings.postgresUrl)
        throw new ConfigError(
          `serving tables of kind 'postgres' need KAPPA_POSTGRES_URL (e.g. postgres://user@host:5432/db); it is not set`,
        );
      return new (await import('./postgres-tables.js')).PostgresTables(settings.postgresUrl);
    case 'redis':
      if (!settings.redisUrl)
        throw new ConfigError(
          `serving tables of kind 'redis' need KAPPA_REDIS_URL (e.g. redis://host:6379); it is not set`,
        );
      return (await import('./redis-tables.js')).RedisTables.open(settings.redisUrl);
    default:
      throw new ConfigError(`serving tables of kind '${kind}' are not available`);
  }
}
export {
  diffVersions,
  finalBound,
  type DiffCounts,
  type DiffOptions,
  type DiffRow,
  type DiffSide,
  type VersionDiff,
  type VersionComparison,
} from './diff.js';
