// Opens the serving-table backend a job version uses.
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError } from '../protocol/index.js';
import { KvTables } from './kv-tables.js';
import type { ServingTables, TableKind, TableSettings } from './types.js';

export * from './types.js';
export { KvTables, RevisionGuardedTable } from './kv-tables.js';
export { AliasRegistry, type AliasEntry } from './alias-registry.js';

export async function openServingTables(kind: TableKind, nc: NatsConnection, settings: TableSettings): Promise<ServingTables> {
  switch (kind) {
    case 'kv':
      return new KvTables(nc);
    default:
      throw new ConfigError(`serving tables of kind '${kind}' are not available`);
  }
}
