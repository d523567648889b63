// Where segment objects live, behind one small interface: the NATS Object Store by default
// (nothing more to run). An S3-compatible store is the next implementation (issue 17, part 2).
import { Objm, type ObjectStore } from '@nats-io/obj';
import { StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets } from '../protocol/index.js';

export interface SegmentStore {
  /** Writes (or overwrites) an object; resolves once it is durable in the store. */
  put(name: string, bytes: Uint8Array): Promise<void>;
  /** The object's bytes, or undefined when there is none. */
  get(name: string): Promise<Uint8Array | undefined>;
  /** Names of the objects starting with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Deletes an object; nothing when it does not exist. */
  delete(name: string): Promise<void>;
}

/** Segments as objects of one NATS Object Store bucket (`buckets.archive`). */
export class NatsObjectSegmentStore implements SegmentStore {
  private constructor(private readonly objects: ObjectStore) {}

  /** Opens (creating if missing) the archive bucket. */
  static async open(nc: NatsConnection, options: { replicas?: number } = {}): Promise<NatsObjectSegmentStore> {
    const objects = await new Objm(nc).create(buckets.archive, {
      replicas: options.replicas ?? 1,
      storage: StorageType.File,
    });
    return new NatsObjectSegmentStore(objects);
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    await this.objects.putBlob({ name }, bytes);
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    return (await this.objects.getBlob(name)) ?? undefined;
  }

  async list(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for (const info of await this.objects.list())
      if (!info.deleted && info.name.startsWith(prefix)) names.push(info.name);
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    if ((await this.objects.info(name)) === null) return;
    await this.objects.delete(name);
  }
}
