// The archive catalog (KV bucket `buckets.archiveCatalog`): per topic partition, the ordered list
// of its sealed segments. One key per partition (`<topic>.<partition>`), every write a
// compare-and-set on the revision read, so two archivers can never both append: the loser's
// object is an orphan the next run overwrites or collects, never a second copy of a range.
//
// Ranges are contiguous by construction: a segment covers the previous segment's last sequence
// + 1 (1 for the first) up to its own last message, so the archive ends at `lastArchivedSequence`
// and the live stream takes over at `handOverSequence` (= that + 1): hybrid replay reads
// segments up to there, then the stream from there, with no gap and no overlap.
import { Kvm, type KV } from '@nats-io/kv';
import { StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { buckets, FencedError, KappaError } from '../protocol/index.js';
import { SegmentIndexSchema, type SegmentIndex } from './segment-format.js';

const PartitionEntrySchema = z.object({
  /** The highest fencing token (coordinator leader revision) that wrote the entry; 0 for none. */
  fencingToken: z.number().int().nonnegative(),
  segments: z.array(SegmentIndexSchema),
});

/** One partition's catalog as read, with the revision a write must match. */
export interface PartitionCatalog {
  topic: string;
  partition: number;
  /** Oldest first; contiguous. */
  segments: SegmentIndex[];
  /** KV revision of the entry; 0 when the partition has none yet. */
  revision: number;
  fencingToken: number;
}

/** The last stream sequence the archive holds for the partition (0: nothing archived). */
export function lastArchivedSequence(catalog: Pick<PartitionCatalog, 'segments'>): number {
  return catalog.segments.at(-1)?.lastSequence ?? 0;
}

/** Where the live stream takes over from the archive: its last sequence + 1. */
export function handOverSequence(catalog: Pick<PartitionCatalog, 'segments'>): number {
  return lastArchivedSequence(catalog) + 1;
}

/**
 * The rule every list of segments keeps: in order, each starting right after the previous one
 * ends (the first at 1), none empty-ranged. Throws ARCHIVE_INVALID naming the first break.
 */
export function assertContiguous(topic: string, partition: number, segments: readonly SegmentIndex[]): void {
  let expected = 1;
  for (const segment of segments) {
    if (segment.firstSequence !== expected || segment.lastSequence < segment.firstSequence)
      throw new KappaError(
        'ARCHIVE_INVALID',
        `archive catalog of ${topic} partition ${partition}: segment ${segment.name} covers ${segment.firstSequence}–${segment.lastSequence}, expected one starting at ${expected}`,
      );
    expected = segment.lastSequence + 1;
  }
}

export class ArchiveCatalog {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, options: { replicas?: number } = {}): Promise<ArchiveCatalog> {
    const kv = await new Kvm(nc).create(buckets.archiveCatalog, {
      history: 5,
      replicas: options.replicas ?? 1,
      storage: StorageType.File,
    });
    return new ArchiveCatalog(kv);
  }

  static key(topic: string, partition: number): string {
    return `${topic}.${partition}`;
  }

  async read(topic: string, partition: number): Promise<PartitionCatalog> {
    const entry = await this.kv.get(ArchiveCatalog.key(topic, partition));
    if (!entry || entry.operation !== 'PUT') return { topic, partition, segments: [], revision: 0, fencingToken: 0 };
    const parsed = PartitionEntrySchema.safeParse(entry.json());
    if (!parsed.success)
      throw new KappaError(
        'ARCHIVE_INVALID',
        `archive catalog entry of ${topic} partition ${partition} is malformed: ${parsed.error.issues[0]?.message}`,
      );
    return { topic, partition, ...parsed.data, revision: entry.revision };
  }

  /** Every partition's catalog of a topic of `partitions` partitions. */
  async readTopic(topic: string, partitions: number): Promise<PartitionCatalog[]> {
    return Promise.all(Array.from({ length: partitions }, (_, partition) => this.read(topic, partition)));
  }

  /**
   * Appends `segment` to the partition's list as read in `seen`: refused (FencedError) when the
   * entry changed since, or a writer with a higher fencing token wrote it; ARCHIVE_INVALID when
   * the segment does not start right after the archive's end. Returns the catalog as written.
   * `fencingToken` undefined: a writer outside the leader (`kappa topic archive`), which leaves
   * the entry's token as it is and relies on the compare-and-set alone.
   */
  async append(seen: PartitionCatalog, segment: SegmentIndex, fencingToken?: number): Promise<PartitionCatalog> {
    const { topic, partition } = seen;
    if (fencingToken !== undefined && fencingToken < seen.fencingToken)
      throw new FencedError(
        `archive catalog of ${topic} partition ${partition} was written under fencing token ${seen.fencingToken}; this archiver holds ${fencingToken}`,
      );
    const segments = [...seen.segments, segment];
    assertContiguous(topic, partition, segments);
    const entry = { fencingToken: Math.max(fencingToken ?? 0, seen.fencingToken), segments };
    const key = ArchiveCatalog.key(topic, partition);
    let revision: number;
    try {
      revision =
        seen.revision === 0
          ? await this.kv.create(key, JSON.stringify(entry))
          : await this.kv.update(key, JSON.stringify(entry), seen.revision);
    } catch (error) {
      throw new FencedError(
        `archive catalog of ${topic} partition ${partition} changed since revision ${seen.revision} was read (another archiver recorded first): ${(error as Error).message}`,
      );
    }
    return { topic, partition, ...entry, revision };
  }

  /** Removes a topic's entries (its segments must be deleted by the caller first). */
  async deleteTopic(topic: string, partitions: number): Promise<void> {
    for (let partition = 0; partition < partitions; partition++)
      await this.kv.purge(ArchiveCatalog.key(topic, partition));
  }
}

/** What a partition's archive holds, for `kappa topic describe`. */
export interface ArchiveSummary {
  segments: number;
  /** 0 when nothing is archived. */
  firstSequence: number;
  lastSequence: number;
  events: number;
  minEventTimeMs: number | null;
  maxEventTimeMs: number | null;
  /** Of the segment objects. */
  bytes: number;
}

export function archiveSummary(catalog: Pick<PartitionCatalog, 'segments'>): ArchiveSummary {
  const summary: ArchiveSummary = {
    segments: catalog.segments.length,
    firstSequence: catalog.segments[0]?.firstSequence ?? 0,
    lastSequence: lastArchivedSequence(catalog),
    events: 0,
    minEventTimeMs: null,
    maxEventTimeMs: null,
    bytes: 0,
  };
  for (const segment of catalog.segments) {
    summary.events += segment.count;
    summary.bytes += segment.bytes;
    if (segment.minEventTimeMs !== null)
      summary.minEventTimeMs = Math.min(summary.minEventTimeMs ?? Infinity, segment.minEventTimeMs);
    if (segment.maxEventTimeMs !== null)
      summary.maxEventTimeMs = Math.max(summary.maxEventTimeMs ?? -Infinity, segment.maxEventTimeMs);
  }
  return summary;
}
