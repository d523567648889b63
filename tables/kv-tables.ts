// The NATS KV backend (the default): one bucket per job version, `buckets.servingTable(job, v)`,
// rows under `<key>[.<start>.<end>]` as JSON (protocol/serving-table.ts). Its alias is the alias
// registry itself (tables/alias-registry.ts), so setAlias has nothing more to do.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { buckets, decodeRow, encodeRow, internalReplicas, KappaError, kvKeyToken, liveRow, servingTableRowKey, type ServingTableRow } from '../protocol/index.js';
import { sortRows, type ServingTables, type TableOutput, type TableWriter } from './types.js';

export class KvTables implements ServingTables {
  readonly kind = 'kv';
  private readonly kvm: Kvm;

  constructor(nc: NatsConnection) {
    this.kvm = new Kvm(nc);
  }

  async writer(job: string, version: string): Promise<TableWriter> {
    return new RevisionGuardedTable(await this.kvm.create(buckets.servingTable(job, version), { history: 1, replicas: internalReplicas() }));
  }

  async exists(job: string, version: string): Promise<boolean> {
    return (await this.open(job, version)) !== undefined;
  }

  async read(job: string, version: string, key?: string): Promise<ServingTableRow[]> {
    const kv = await this.open(job, version);
    if (!kv) throw new KappaError('TOPIC_NOT_FOUND', `job '${job}' version '${version}' has no serving table (bucket ${buckets.servingTable(job, version)})`);
    // One filter subject per listing: nats-server 2.9 has no multi-filter consumers.
    const names: string[] = key === undefined ? [] : [kvKeyToken(key)];
    for await (const name of await kv.keys(key === undefined ? '>' : `${kvKeyToken(key)}.>`)) names.push(name);
    const rows: ServingTableRow[] = [];
    // Reads in parallel, a bounded number at a time.
    for (let start = 0; start < names.length; start += 256) {
      const entries = await Promise.all(names.slice(start, start + 256).map((name) => kv.get(name)));
      for (const entry of entries) {
        const row = liveRow(entry);
        if (row) rows.push(row);
      }
    }
    return sortRows(rows);
  }

  async setAlias(): Promise<void> {
    // The alias registry is the KV backend's alias.
  }

  async drop(job: string, version: string): Promise<void> {
    await (await this.open(job, version))?.destroy();
  }

  async close(): Promise<void> {}

  private async open(job: string, version: string): Promise<KV | undefined> {
    try {
      const kv = await this.kvm.open(buckets.servingTable(job, version));
      await kv.status();
      return kv;
    } catch {
      return undefined;
    }
  }
}

/**
 * A serving table in NATS KV where an older revision never overwrites a newer one: every write is
 * a compare-and-set on the KV revision last seen for the row, and on a conflict (another owner,
 * a replay after a restore, a resumed zombie wrote it) the stored output revision decides.
 * A retraction is a tombstone row with its revision, for the same reason.
 */
export class RevisionGuardedTable implements TableWriter {
  /** Per row: the KV revision of our last write and the output revision it holds. */
  private readonly known = new Map<string, { kvRevision: number; revision: number }>();

  constructor(readonly kv: KV) {}

  async write(outputs: readonly TableOutput[]): Promise<void> {
    await Promise.all(outputs.map((output) => this.writeOne(output)));
  }

  async writeOne(output: TableOutput): Promise<void> {
    const rowKey = servingTableRowKey(output.key, output.window);
    let known = this.known.get(rowKey);
    if (known !== undefined && known.revision >= output.revision) return;
    const body = encodeRow({
      key: output.key,
      start: output.window?.start,
      end: output.window?.end,
      value: output.kind === 'retract' ? null : output.value,
      revision: output.revision,
      ...(output.kind === 'retract' ? { retracted: true } : {}),
    });
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        const kvRevision = known === undefined ? await this.kv.create(rowKey, body) : await this.kv.update(rowKey, body, known.kvRevision);
        this.remember(rowKey, kvRevision, output.revision);
        return;
      } catch (error) {
        // The row is not what we last saw: read it and let the output revision decide.
        const entry = await this.kv.get(rowKey);
        if (entry === null) {
          if (known === undefined) throw error; // create failed on an absent row: not a conflict
          known = undefined;
          continue;
        }
        const stored = entry.operation === 'PUT' ? decodeRow(entry.value).revision : -1;
        if (stored >= output.revision) {
          this.remember(rowKey, entry.revision, stored);
          return;
        }
        known = { kvRevision: entry.revision, revision: stored };
      }
    }
    throw new KappaError('PUBLISH_FAILED', `serving table row ${rowKey} kept changing; output revision ${output.revision} not written`);
  }

  private remember(rowKey: string, kvRevision: number, revision: number): void {
    // Bounded: a forgotten row costs one extra read on its next write, nothing more.
    if (this.known.size >= 500_000) this.known.clear();
    this.known.set(rowKey, { kvRevision, revision });
  }
}
