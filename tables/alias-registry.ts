// The alias registry: which version of a job apps read, and in which kind of table, in the KV
// bucket `buckets.aliases` (job → JSON). It is the source of truth for `kappa view`, the
// coordinator's query API and cutover; PostgreSQL and Redis also get a native alias (a view, a
// key) so their own clients can read without Kappa.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { z } from 'zod';
import { buckets, ServingTableKind } from '../protocol/index.js';

export const AliasEntry = z.object({
  version: z.string(),
  table: ServingTableKind,
  /** When the alias last moved (ISO). */
  since: z.string(),
  /** The version it pointed at before, if any. */
  previous: z.string().optional(),
});
export type AliasEntry = z.infer<typeof AliasEntry>;

export class AliasRegistry {
  private constructor(private readonly kv: KV) {}

  /** Opens the registry, creating its bucket with `replicas` copies if it does not exist. */
  static async open(nc: NatsConnection, replicas = 1): Promise<AliasRegistry> {
    return new AliasRegistry(await new Kvm(nc).create(buckets.aliases, { history: 5, replicas }));
  }

  async get(job: string): Promise<AliasEntry | undefined> {
    const entry = await this.kv.get(job);
    if (!entry || entry.operation !== 'PUT') return undefined;
    return AliasEntry.parse(JSON.parse(entry.string()));
  }

  async set(job: string, version: string, table: AliasEntry['table']): Promise<AliasEntry> {
    const previous = await this.get(job);
    const entry: AliasEntry = {
      version,
      table,
      since: new Date().toISOString(),
      ...(previous && previous.version !== version ? { previous: previous.version } : {}),
    };
    await this.kv.put(job, JSON.stringify(entry));
    return entry;
  }
}
