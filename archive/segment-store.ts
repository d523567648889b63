// Where segment objects live, behind one small interface: the NATS Object Store by default
// (nothing more to run). An S3-compatible store is the next implementation (issue 17, part 2).
import { Objm, type ObjectStore } from '@nats-io/obj';
import { jetstream, StorageType, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, KappaError } from '../protocol/index.js';

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
  private constructor(
    private readonly objects: ObjectStore,
    private readonly js: JetStreamClient,
  ) {}

  /** Opens (creating if missing) the archive bucket. */
  static async open(nc: NatsConnection, options: { replicas?: number } = {}): Promise<NatsObjectSegmentStore> {
    const objects = await new Objm(nc).create(buckets.archive, {
      replicas: options.replicas ?? 1,
      storage: StorageType.File,
    });
    return new NatsObjectSegmentStore(objects, jetstream(nc));
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    await this.objects.putBlob({ name }, bytes);
  }

  /**
   * The object's chunks read straight from the bucket's stream into one array. The client's own
   * get() hashes every chunk with a SHA-256 written in JavaScript (≈ 7% of a thread replaying from
   * the archive, bench/README.md); a segment's reader checks the whole object against the
   * catalog's checksum anyway (archive/reader.ts), with Node's native hash.
   */
  async get(name: string): Promise<Uint8Array | undefined> {
    const info = await this.objects.info(name);
    if (info === null || info.deleted) return undefined;
    const bytes = new Uint8Array(info.size);
    if (info.size === 0) return bytes;
    const consumer = await this.js.consumers.getPushConsumer(`OBJ_${buckets.archive}`, {
      filter_subjects: `$O.${buckets.archive}.C.${info.nuid}`,
    });
    let offset = 0;
    for await (const chunk of await consumer.consume()) {
      if (offset + chunk.data.length > bytes.length) break;
      bytes.set(chunk.data, offset);
      offset += chunk.data.length;
      if (chunk.info.pending === 0) break;
    }
    if (offset !== bytes.length)
      throw new KappaError('ARCHIVE_INVALID', `object ${name} has ${info.size} bytes; its chunks held ${offset}`);
    return bytes;
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
