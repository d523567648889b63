// Reading a partition's archive back: its segments in sequence order, each checked against the
// checksum the catalog recorded and decoded whole. What `kappa run --from-archive` reads, and
// what hybrid replay reads up to the catalog's hand-over sequence (worker/archive-source.ts).
import { ArchiveCatalog, assertContiguous, type PartitionCatalog } from './catalog.js';
import {
  checksumOf,
  decodeSegment,
  REPLAY_COLUMNS,
  SegmentCorruptError,
  type SegmentEvents,
  type SegmentIndex,
} from './segment-format.js';
import type { SegmentStore } from './segment-store.js';
import { KappaError } from '../protocol/index.js';

/** A partition's archived messages, one decoded segment at a time, oldest first. */
export async function* readPartitionArchive(
  store: SegmentStore,
  catalog: PartitionCatalog,
): AsyncGenerator<SegmentEvents> {
  assertContiguous(catalog.topic, catalog.partition, catalog.segments);
  for (const segment of catalog.segments) yield await readSegment(store, catalog.topic, catalog.partition, segment);
}

/** One segment's messages, checked against the checksum the catalog recorded. */
export async function readSegment(
  store: SegmentStore,
  topic: string,
  partition: number,
  segment: SegmentIndex,
): Promise<SegmentEvents> {
  const bytes = await store.get(segment.name);
  if (!bytes)
    throw new KappaError(
      'ARCHIVE_INVALID',
      `archive segment ${segment.name} (${topic} partition ${partition}, sequences ${segment.firstSequence}–${segment.lastSequence}) is in the catalog but not in the store`,
    );
  const checksum = checksumOf(bytes);
  if (checksum !== segment.checksum) throw new SegmentCorruptError(segment.name, segment.checksum, checksum);
  // The messages as the stream held them: the key and event-time columns are for other readers.
  return decodeSegment(bytes, REPLAY_COLUMNS);
}

/** An archived message as a task reads it. */
export interface ArchivedMessage {
  data: Uint8Array;
  sequence: number;
  logTimeMs: number;
}

/** The messages of a decoded segment from index `from` up to `to` (excluded). */
export function messagesOf(events: SegmentEvents, from: number, to: number): ArchivedMessage[] {
  const { data, sequences, logTimes } = events;
  const messages = new Array<ArchivedMessage>(to - from);
  for (let index = from; index < to; index++)
    messages[index - from] = { data: data[index]!, sequence: sequences[index]!, logTimeMs: logTimes[index]! };
  return messages;
}

/** A partition's archived messages (data, sequence, log time) as a task reads them, a segment at a time. */
export async function* readPartitionMessages(
  store: SegmentStore,
  catalog: PartitionCatalog,
): AsyncGenerator<ArchivedMessage[]> {
  for await (const events of readPartitionArchive(store, catalog)) yield messagesOf(events, 0, events.data.length);
}

/** Every partition's archived messages of a topic (data, sequence, log time), in sequence order. */
export async function readTopicArchive(
  store: SegmentStore,
  catalog: ArchiveCatalog,
  topic: string,
  partitions: number,
): Promise<{ data: Uint8Array; sequence: number; logTimeMs: number }[][]> {
  const out: { data: Uint8Array; sequence: number; logTimeMs: number }[][] = [];
  for (const partitionCatalog of await catalog.readTopic(topic, partitions)) {
    const messages: { data: Uint8Array; sequence: number; logTimeMs: number }[] = [];
    for await (const chunk of readPartitionMessages(store, partitionCatalog))
      for (const message of chunk) messages.push(message);
    out.push(messages);
  }
  return out;
}
