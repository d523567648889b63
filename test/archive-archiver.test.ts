// The archiver against a real nats-server: it seals closed ranges into segments the catalog lists
// in order without gaps or overlaps, a crash between the object write and the catalog record
// leaves no duplicated range, a fenced archiver records nothing, and hot retention removes only
// archived ranges from the stream. Expected contents come from reading the streams directly.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { Archiver, hotRetentionPurge } from '../archive/archiver.js';
import { ArchiveCatalog, assertContiguous, handOverSequence } from '../archive/catalog.js';
import { checksumOf, decodeSegment, type SegmentIndex } from '../archive/segment-format.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { createTopic, Producer } from '../client/index.js';
import { FencedError, ManualClock, streams, type ArchivePolicy } from '../protocol/index.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();

interface StreamMessage {
  sequence: number;
  data: string;
}

/** Every message a partition stream holds now, read with an ordered consumer of the test's own. */
async function streamMessages(nc: NatsConnection, topic: string, partition: number): Promise<StreamMessage[]> {
  const stream = streams.partition(topic, partition);
  const { state } = await (await jetstreamManager(nc)).streams.info(stream);
  const out: StreamMessage[] = [];
  if (state.messages === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream);
  const batch = await consumer.fetch({ max_messages: state.messages, expires: 5_000 });
  for await (const message of batch) {
    out.push({ sequence: message.seq, data: Buffer.from(message.data).toString('hex') });
    if (out.length === state.messages) break;
  }
  return out;
}

async function produce(nc: NatsConnection, topic: string, count: number, offset = 0): Promise<void> {
  const producer = await Producer.forTopic(nc, topic);
  for (let index = offset; index < offset + count; index++) {
    const user = `user-${(index * 7919) % 101}`;
    if (!producer.publish({ key: user, time: 1_767_225_600_000 + index * 10, value: { user, n: index } }))
      await producer.ready();
  }
  await producer.close();
}

async function archiveParts(nc: NatsConnection) {
  return { store: await NatsObjectSegmentStore.open(nc), catalog: await ArchiveCatalog.open(nc) };
}

/** What the segments of a partition hold, read back from the store and checked against the catalog. */
async function archivedMessages(
  store: NatsObjectSegmentStore,
  segments: readonly SegmentIndex[],
): Promise<StreamMessage[]> {
  const out: StreamMessage[] = [];
  for (const segment of segments) {
    const bytes = (await store.get(segment.name))!;
    expect(checksumOf(bytes)).toBe(segment.checksum);
    const events = await decodeSegment(bytes);
    expect(events.sequences.length).toBe(segment.count);
    for (let index = 0; index < segment.count; index++) {
      const sequence = events.sequences[index]!;
      expect(sequence).toBeGreaterThanOrEqual(segment.firstSequence);
      expect(sequence).toBeLessThanOrEqual(segment.lastSequence);
      out.push({ sequence, data: Buffer.from(events.data[index]!).toString('hex') });
    }
  }
  return out;
}

describe('archiver', () => {
  it('seals full segments of each partition, listed in order without gaps or overlaps, holding the stream exactly', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_seal', partitions: 3 });
    await produce(nc, 'arch_seal', 6_000);
    const { store, catalog } = await archiveParts(nc);
    const archiver = new Archiver({ nc, store, catalog, clock: new ManualClock(Date.now()) });
    const policy: ArchivePolicy = { afterMessages: 500 };
    await archiver.archiveTopic('arch_seal', { policy });
    // Again: nothing new is closed, nothing changes.
    const again = await archiver.archiveTopic('arch_seal', { policy });
    expect(again.flatMap((report) => report.sealed)).toEqual([]);

    for (let partition = 0; partition < 3; partition++) {
      const stream = await streamMessages(nc, 'arch_seal', partition);
      const { segments } = await catalog.read('arch_seal', partition);
      expect(segments.length).toBe(Math.floor(stream.length / 500));
      expect(() => assertContiguous('arch_seal', partition, segments)).not.toThrow();
      expect(segments.every((segment) => segment.count === 500)).toBe(true);
      expect(await archivedMessages(store, segments)).toEqual(stream.slice(0, segments.length * 500));
      expect(handOverSequence({ segments })).toBe(stream[segments.length * 500]?.sequence ?? stream.length + 1);
      expect(await store.list(`arch_seal/${partition}/`)).toEqual(segments.map((segment) => segment.name));
    }

    // Sealing now (kappa topic archive) takes the partial tails too: the archive is the whole stream.
    await archiver.archiveTopic('arch_seal', { force: true });
    for (let partition = 0; partition < 3; partition++) {
      const { segments } = await catalog.read('arch_seal', partition);
      assertContiguous('arch_seal', partition, segments);
      expect(await archivedMessages(store, segments)).toEqual(await streamMessages(nc, 'arch_seal', partition));
    }
  });

  it('a crash after the object write and before the catalog record leaves no duplicated range on the next run', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_crash', partitions: 1 });
    await produce(nc, 'arch_crash', 2_500);
    const { store, catalog } = await archiveParts(nc);
    const clock = new ManualClock(Date.now());
    let writes = 0;
    const crashing = new Archiver({
      nc,
      store,
      catalog,
      clock,
      maxSegmentEvents: 1_000,
      afterWrite: () => {
        if (++writes === 2) throw new Error('crash between write and record');
      },
    });
    await expect(crashing.archiveTopic('arch_crash', { force: true })).rejects.toThrow(
      'crash between write and record',
    );
    expect((await catalog.read('arch_crash', 0)).segments.map((segment) => segment.lastSequence)).toEqual([1_000]);
    // The second segment's object was written, not recorded.
    expect(await store.list('arch_crash/0/')).toHaveLength(2);

    // More events arrive; the next run (another segment size, so another range and object name).
    await produce(nc, 'arch_crash', 700, 2_500);
    const next = new Archiver({ nc, store, catalog, clock, maxSegmentEvents: 1_500 });
    const [report] = await next.archiveTopic('arch_crash', { force: true });
    expect(report!.orphansDeleted).toEqual(['arch_crash/0/00000000000000001001-00000000000000002000.parquet']);

    const { segments } = await catalog.read('arch_crash', 0);
    assertContiguous('arch_crash', 0, segments);
    expect(segments.map((segment) => [segment.firstSequence, segment.lastSequence])).toEqual([
      [1, 1_000],
      [1_001, 2_500],
      [2_501, 3_200],
    ]);
    expect(await store.list('arch_crash/0/')).toEqual(segments.map((segment) => segment.name));
    expect(await archivedMessages(store, segments)).toEqual(await streamMessages(nc, 'arch_crash', 0));
  });

  it('a crash on a full segment is healed by overwriting the same range', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_redo', partitions: 1 });
    await produce(nc, 'arch_redo', 1_000);
    const { store, catalog } = await archiveParts(nc);
    const clock = new ManualClock(Date.now());
    const policy: ArchivePolicy = { afterMessages: 400 };
    const crashing = new Archiver({
      nc,
      store,
      catalog,
      clock,
      afterWrite: () => {
        throw new Error('crash');
      },
    });
    await expect(crashing.archiveTopic('arch_redo', { policy })).rejects.toThrow('crash');
    await new Archiver({ nc, store, catalog, clock }).archiveTopic('arch_redo', { policy });
    const { segments } = await catalog.read('arch_redo', 0);
    expect(segments.map((segment) => [segment.firstSequence, segment.lastSequence])).toEqual([
      [1, 400],
      [401, 800],
    ]);
    expect(await store.list('arch_redo/0/')).toEqual(segments.map((segment) => segment.name));
  });

  it('an archiver holding a lower fencing token, or none, records nothing', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_fence', partitions: 1 });
    await produce(nc, 'arch_fence', 300);
    const { store, catalog } = await archiveParts(nc);
    const clock = new ManualClock(Date.now());
    const leader = new Archiver({ nc, store, catalog, clock, fencingToken: () => 7, maxSegmentEvents: 100 });
    const deposed = new Archiver({ nc, store, catalog, clock, fencingToken: () => 5, maxSegmentEvents: 100 });
    const stepped = new Archiver({ nc, store, catalog, clock, fencingToken: () => undefined, maxSegmentEvents: 100 });
    await leader.archivePartition('arch_fence', 0, { afterMessages: 100 }, false);
    await produce(nc, 'arch_fence', 100, 300);
    const before = await catalog.read('arch_fence', 0);
    expect(before.segments).toHaveLength(3);
    await expect(deposed.archivePartition('arch_fence', 0, {}, true)).rejects.toBeInstanceOf(FencedError);
    await expect(stepped.archivePartition('arch_fence', 0, {}, true)).rejects.toBeInstanceOf(FencedError);
    expect((await catalog.read('arch_fence', 0)).revision).toBe(before.revision);

    // Compare-and-set: a writer that read the entry before another recorded is refused.
    const stale = await catalog.read('arch_fence', 0);
    await leader.archivePartition('arch_fence', 0, {}, true);
    const late = { ...before.segments[0]!, firstSequence: 301, lastSequence: 400, name: 'x' };
    await expect(catalog.append(stale, late, 7)).rejects.toBeInstanceOf(FencedError);
    assertContiguous('arch_fence', 0, (await catalog.read('arch_fence', 0)).segments);
  });

  it('hot retention purges only archived ranges, and only those the policy no longer keeps', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_hot', partitions: 2 });
    await produce(nc, 'arch_hot', 3_000);
    const { store, catalog } = await archiveParts(nc);
    const clock = new ManualClock(Date.now());
    const archiver = new Archiver({ nc, store, catalog, clock });
    const jsm = await jetstreamManager(nc);
    const before = await Promise.all([0, 1].map((partition) => streamMessages(nc, 'arch_hot', partition)));

    // Within the retention: archived, nothing purged.
    await archiver.archiveTopic('arch_hot', { policy: { afterMessages: 400, hotRetentionMs: 3_600_000 } });
    for (const partition of [0, 1])
      expect((await jsm.streams.info(streams.partition('arch_hot', partition))).state.messages).toBe(
        before[partition]!.length,
      );

    // A day later: every archived range is older than the retention and goes; the unarchived tail stays.
    clock.advance(86_400_000);
    await archiver.archiveTopic('arch_hot', { policy: { afterMessages: 400, hotRetentionMs: 3_600_000 } });
    for (const partition of [0, 1]) {
      const { segments } = await catalog.read('arch_hot', partition);
      const archived = segments.length * 400;
      expect(archived).toBeGreaterThan(0);
      const { state } = await jsm.streams.info(streams.partition('arch_hot', partition));
      expect(state.first_seq).toBe(handOverSequence({ segments }));
      expect(await streamMessages(nc, 'arch_hot', partition)).toEqual(before[partition]!.slice(archived));
      // What left the stream is in the archive.
      expect(await archivedMessages(store, segments)).toEqual(before[partition]!.slice(0, archived));
    }
  });

  it('a duration policy seals only what the log received longer ago than it', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_age', partitions: 1 });
    await produce(nc, 'arch_age', 500);
    const { store, catalog } = await archiveParts(nc);
    const stream = await streamMessages(nc, 'arch_age', 0);
    const jsm = await jetstreamManager(nc);
    // The log time of the 300th message: with the clock an hour after it, an hour's policy closes 1..299 and the equal-or-newer rest stays open.
    const cut = (await jsm.streams.getMessage(streams.partition('arch_age', 0), { seq: 300 }))!;
    const cutMs = cut.time.getTime();
    const clock = new ManualClock(cutMs + 3_600_000);
    const archiver = new Archiver({ nc, store, catalog, clock });
    await archiver.archivePartition('arch_age', 0, { afterMs: 3_600_000 }, false);
    const { segments } = await catalog.read('arch_age', 0);
    const archived = await archivedMessages(store, segments);
    expect(archived.length).toBeGreaterThan(0);
    expect(archived).toEqual(stream.slice(0, archived.length));
    for (const segment of segments) expect(segment.maxLogTimeMs).toBeLessThan(cutMs);
    expect(archived.length).toBeLessThan(300);
    // An hour later still, everything is closed.
    clock.advance(86_400_000);
    await archiver.archivePartition('arch_age', 0, { afterMs: 3_600_000 }, false);
    expect(await archivedMessages(store, (await catalog.read('arch_age', 0)).segments)).toEqual(stream);
  });

  it('hot retention by size keeps at least that many bytes in the stream', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 'arch_bytes', partitions: 1 });
    await produce(nc, 'arch_bytes', 2_000);
    const { store, catalog } = await archiveParts(nc);
    const jsm = await jetstreamManager(nc);
    const stream = streams.partition('arch_bytes', 0);
    const total = (await jsm.streams.info(stream)).state.bytes;
    const keep = Math.floor(total / 2);
    await new Archiver({ nc, store, catalog, clock: new ManualClock(Date.now()) }).archiveTopic('arch_bytes', {
      policy: { afterMessages: 200, hotRetentionBytes: keep },
    });
    const { state } = await jsm.streams.info(stream);
    expect(state.bytes).toBeGreaterThanOrEqual(keep);
    expect(state.first_seq).toBeGreaterThan(1);
  });
});

describe('hotRetentionPurge', () => {
  const segment = (first: number, last: number, maxLogTimeMs: number, streamBytes = 100): SegmentIndex => ({
    name: `t/0/${first}-${last}`,
    topic: 't',
    partition: 0,
    firstSequence: first,
    lastSequence: last,
    count: last - first + 1,
    minEventTimeMs: 0,
    maxEventTimeMs: 0,
    maxLogTimeMs,
    bytes: 1,
    streamBytes,
    checksum: '',
    sealedAt: '',
  });
  const segments = [segment(1, 10, 1_000), segment(11, 20, 2_000), segment(21, 30, 3_000)];

  it('purges whole segments older than the retention, oldest first, never past the archive', () => {
    expect(hotRetentionPurge(segments, { firstSequence: 1, bytes: 1_000 }, { hotRetentionMs: 500 }, 2_600)).toBe(21);
    expect(hotRetentionPurge(segments, { firstSequence: 1, bytes: 1_000 }, { hotRetentionMs: 500 }, 9_999)).toBe(31);
    expect(hotRetentionPurge(segments, { firstSequence: 1, bytes: 1_000 }, { hotRetentionMs: 500 }, 1_200)).toBe(
      undefined,
    );
    expect(hotRetentionPurge(segments, { firstSequence: 1, bytes: 1_000 }, {}, 9_999)).toBe(undefined);
  });

  it('keeps at least the retained bytes, counting only segments still in the stream', () => {
    expect(hotRetentionPurge(segments, { firstSequence: 1, bytes: 350 }, { hotRetentionBytes: 150 }, 0)).toBe(21);
    expect(hotRetentionPurge(segments, { firstSequence: 11, bytes: 250 }, { hotRetentionBytes: 150 }, 0)).toBe(21);
    expect(
      hotRetentionPurge(
        segments,
        { firstSequence: 1, bytes: 350 },
        { hotRetentionBytes: 150, hotRetentionMs: 10 },
        1_500,
      ),
    ).toBe(11);
  });
});
