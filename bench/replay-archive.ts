// bench/replay.ts with REPLAY_ARCHIVE=1: the topic sealed whole into the archive (NATS Object
// Store, segments of 100k events), then removed from its streams, so a fresh version replays it
// from the archive; the segment objects are also written to files for DuckDB. Not timed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Archiver } from '../archive/archiver.js';
import { ArchiveCatalog, handOverSequence } from '../archive/catalog.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { streams, systemClock } from '../protocol/index.js';

const SEGMENT_EVENTS = 100_000;

/** Seals every partition of `topic`, purges the sealed ranges from the streams; returns the segment files written into `dir`. */
export async function archiveWholeTopic(
  nc: NatsConnection,
  topic: string,
  partitions: number,
  dir: string,
): Promise<string[]> {
  const store = await NatsObjectSegmentStore.open(nc);
  const catalog = await ArchiveCatalog.open(nc);
  const startedAt = performance.now();
  await new Archiver({ nc, store, catalog, clock: systemClock, maxSegmentEvents: SEGMENT_EVENTS }).archiveTopic(topic, {
    force: true,
  });
  const jsm = await jetstreamManager(nc);
  const files: string[] = [];
  for (const entry of await catalog.readTopic(topic, partitions)) {
    // Nothing archived, nothing to purge: nats-server 2.9 takes a purge below sequence 1 for the whole stream.
    if (handOverSequence(entry) > 1)
      await jsm.streams.purge(streams.partition(topic, entry.partition), { seq: handOverSequence(entry) });
    for (const segment of entry.segments) {
      const file = join(dir, segment.name.replaceAll('/', '_'));
      writeFileSync(file, (await store.get(segment.name))!);
      files.push(file);
    }
  }
  console.error(
    `archived ${topic}: ${files.length} segments in ${((performance.now() - startedAt) / 1000).toFixed(1)} s, the streams emptied`,
  );
  return files;
}
