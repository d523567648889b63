// Hybrid replay's source (worker/archive-source.ts) against a real nats-server: whatever the
// hand-over point, the start position, the batch sizes, the partition and what hot retention has
// removed from the stream, a task reads exactly the log — every message once, in order, with the
// bytes, sequence and log time the stream held — first from the archive, then from the stream.
// Also when the archive grows and the stream is trimmed while the task is still behind it (read
// from the archive again, never skipped), and when messages are really gone (skipped once checked).
// Expected logs are read from the streams directly before anything is removed.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../archive/archiver.js';
import { ArchiveCatalog, handOverSequence } from '../archive/catalog.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { createTopic, Producer } from '../client/index.js';
import { ManualClock, streams } from '../protocol/index.js';
import { ArchiveThenLiveSource, firstArchivedSequenceAtOrAfter } from '../worker/archive-source.js';
import type { RawMessage } from '../worker/task-processor.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();

interface LogEntry {
  sequence: number;
  logTimeMs: number;
  data: string;
}

/** Every message a partition stream holds now, with its log time, read with the test's own consumer. */
async function streamLog(nc: NatsConnection, topic: string, partition: number): Promise<LogEntry[]> {
  const stream = streams.partition(topic, partition);
  const { state } = await (await jetstreamManager(nc)).streams.info(stream);
  const out: LogEntry[] = [];
  if (state.messages === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream);
  const batch = await consumer.fetch({ max_messages: state.messages, expires: 5_000 });
  for await (const message of batch) {
    out.push({
      sequence: message.seq,
      logTimeMs: Math.floor(message.info.timestampNanos / 1_000_000),
      data: Buffer.from(message.data).toString('hex'),
    });
    if (out.length === state.messages) break;
  }
  return out;
}

function entryOf(message: RawMessage): LogEntry {
  return {
    sequence: message.sequence,
    logTimeMs: message.logTimeMs ?? -1,
    data: Buffer.from(message.data).toString('hex'),
  };
}

async function produce(nc: NatsConnection, topic: string, count: number, offset: number): Promise<void> {
  const producer = await Producer.forTopic(nc, topic);
  for (let index = offset; index < offset + count; index++) {
    const user = `user-${(index * 7919) % 37}`;
    if (!producer.publish({ key: user, time: 1_767_225_600_000 + index * 10, value: { user, n: index } }))
      await producer.ready();
  }
  await producer.close();
}

async function archiveParts(nc: NatsConnection) {
  return { store: await NatsObjectSegmentStore.open(nc), catalog: await ArchiveCatalog.open(nc) };
}

/** Reads through the source until `count` messages came or nothing came for a while; records the phases seen. */
async function readAll(
  source: ArchiveThenLiveSource,
  count: number,
  takeAtMost: () => number,
  between?: (read: number) => Promise<void>,
): Promise<{ read: LogEntry[]; phases: string[] }> {
  const read: LogEntry[] = [];
  const phases: string[] = [source.phase];
  let quietSince = Date.now();
  while (read.length < count && Date.now() - quietSince < 8_000) {
    await source.waitForMessages(200);
    if (phases.at(-1) !== source.phase) phases.push(source.phase);
    const batch = source.take(takeAtMost());
    if (batch.length > 0) quietSince = Date.now();
    for (const message of batch) read.push(entryOf(message));
    if (between) await between(read.length);
  }
  return { read, phases };
}

/** Purges a partition stream below `keepFrom`, as hot retention does. */
async function trim(nc: NatsConnection, topic: string, partition: number, keepFrom: number): Promise<void> {
  // Below 1 there is nothing to trim, and nats-server 2.9 takes a purge with seq 1 for a purge of all.
  if (keepFrom <= 1) return;
  await (await jetstreamManager(nc)).streams.purge(streams.partition(topic, partition), { seq: keepFrom });
}

let topicCount = 0;

describe('archive-then-live source', () => {
  it('reads the log exactly, for any hand-over point, start, batch sizes and trimmed stream', async () => {
    const { store, catalog } = await archiveParts(nats.nc);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          partitions: fc.integer({ min: 1, max: 3 }),
          archived: fc.integer({ min: 0, max: 900 }),
          live: fc.integer({ min: 0, max: 400 }),
          segmentEvents: fc.integer({ min: 1, max: 300 }),
          trimmed: fc.boolean(),
          /** Where the task starts, in percent of the log (fc.double would favour 0 and 1). */
          startPercent: fc.integer({ min: 0, max: 100 }),
          takes: fc.array(fc.integer({ min: 1, max: 250 }), { minLength: 1, maxLength: 5 }),
        }),
        async ({ partitions, archived, live, segmentEvents, trimmed, startPercent, takes }) => {
          const topic = `hybrid_${++topicCount}`;
          await createTopic(nats.nc, { name: topic, partitions });
          await produce(nats.nc, topic, archived, 0);
          const archiver = new Archiver({
            nc: nats.nc,
            store,
            catalog,
            clock: new ManualClock(Date.now()),
            maxSegmentEvents: segmentEvents,
          });
          await archiver.archiveTopic(topic, { force: true });
          await produce(nats.nc, topic, live, archived);
          for (let partition = 0; partition < partitions; partition++) {
            const log = await streamLog(nats.nc, topic, partition);
            const handOver = handOverSequence(await catalog.read(topic, partition));
            if (trimmed) await trim(nats.nc, topic, partition, handOver);
            const start = 1 + Math.floor((startPercent * log.length) / 100);
            const expected = log.filter((entry) => entry.sequence >= start);
            let turn = 0;
            const source = new ArchiveThenLiveSource(
              nats.nc,
              { store, catalog, topic, partition },
              { stream: streams.partition(topic, partition), startSequence: start, batchMessages: 100 },
            );
            await source.start();
            const { read, phases } = await readAll(source, expected.length, () => takes[turn++ % takes.length]!);
            await source.stop();
            expect(read).toEqual(expected);
            // The archive phase comes first, and only when the archive holds something from the start on.
            expect(phases[0]).toBe(start < handOver ? 'archive' : 'live');
          }
        },
      ),
      { numRuns: 40 },
    );
  }, 240_000);

  it('a task behind hot retention reads the trimmed range from the archive, never skips it', async () => {
    const { store, catalog } = await archiveParts(nats.nc);
    const topic = 'hybrid_behind';
    await createTopic(nats.nc, { name: topic, partitions: 1 });
    const archiver = new Archiver({
      nc: nats.nc,
      store,
      catalog,
      clock: new ManualClock(Date.now()),
      maxSegmentEvents: 250,
    });
    await produce(nats.nc, topic, 1_000, 0);
    await archiver.archiveTopic(topic, { force: true });
    await produce(nats.nc, topic, 3_000, 1_000);
    const log = await streamLog(nats.nc, topic, 0);
    expect(log.length).toBe(4_000);
    await trim(nats.nc, topic, 0, 1_001);

    const source = new ArchiveThenLiveSource(
      nats.nc,
      { store, catalog, topic, partition: 0 },
      // Small buffers: the live cursor pauses far behind the end while the task is slow.
      { stream: streams.partition(topic, 0), startSequence: 1, batchMessages: 50 },
    );
    await source.start();
    let archivedAgain = false;
    const { read, phases } = await readAll(
      source,
      log.length,
      () => 40,
      async (count) => {
        // Once the task reads the live stream, the archive grows past it and the stream is trimmed
        // past its position: what it had not read yet is only in the archive now.
        if (!archivedAgain && source.phase === 'live' && count >= 1_100) {
          archivedAgain = true;
          await archiver.archiveTopic(topic, { force: true });
          await trim(nats.nc, topic, 0, 3_901);
        }
      },
    );
    await source.stop();
    expect(archivedAgain).toBe(true);
    expect(read.map((entry) => entry.sequence)).toEqual(log.map((entry) => entry.sequence));
    expect(read).toEqual(log);
    // The second archive run sealed the whole log: the rest came from the archive.
    expect(phases).toEqual(['archive', 'live', 'archive']);
  }, 60_000);

  it('skips, once checked, messages neither the stream nor the archive holds', async () => {
    const { store, catalog } = await archiveParts(nats.nc);
    const topic = 'hybrid_deleted';
    await createTopic(nats.nc, { name: topic, partitions: 1 });
    await produce(nats.nc, topic, 600, 0);
    const log = await streamLog(nats.nc, topic, 0);
    // Nothing archived; the first 200 purged and a message in the middle deleted.
    await trim(nats.nc, topic, 0, 201);
    await (await jetstreamManager(nats.nc)).streams.deleteMessage(streams.partition(topic, 0), 400);
    const source = new ArchiveThenLiveSource(
      nats.nc,
      { store, catalog, topic, partition: 0 },
      { stream: streams.partition(topic, 0), startSequence: 1 },
    );
    await source.start();
    const expected = log.filter((entry) => entry.sequence > 200 && entry.sequence !== 400);
    const { read } = await readAll(source, expected.length, () => 1_000);
    await source.stop();
    expect(read).toEqual(expected);
  }, 60_000);

  it('finds where a start time falls inside the archive by the log times it recorded', async () => {
    const { store, catalog } = await archiveParts(nats.nc);
    const topic = 'hybrid_from_time';
    await createTopic(nats.nc, { name: topic, partitions: 1 });
    await produce(nats.nc, topic, 300, 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await produce(nats.nc, topic, 300, 300);
    const log = await streamLog(nats.nc, topic, 0);
    const archiver = new Archiver({
      nc: nats.nc,
      store,
      catalog,
      clock: new ManualClock(Date.now()),
      maxSegmentEvents: 100,
    });
    await archiver.archiveTopic(topic, { force: true });
    await trim(nats.nc, topic, 0, log.length + 1);
    const access = { store, catalog, topic, partition: 0 };
    // Every log time: the first message stored at or after it, as the stream answered before the trim.
    for (const probe of [log[0]!, log[150]!, log[299]!, log[300]!, log[599]!]) {
      const expected = log.find((entry) => entry.logTimeMs >= probe.logTimeMs)!.sequence;
      expect(await firstArchivedSequenceAtOrAfter(access, probe.logTimeMs)).toBe(expected);
    }
    expect(await firstArchivedSequenceAtOrAfter(access, log[299]!.logTimeMs + 1)).toBe(
      log.find((entry) => entry.logTimeMs > log[299]!.logTimeMs)!.sequence,
    );
    expect(await firstArchivedSequenceAtOrAfter(access, 0)).toBe(1);
    expect(await firstArchivedSequenceAtOrAfter(access, log[599]!.logTimeMs + 1)).toBeUndefined();
  }, 60_000);

  it('refuses a segment whose bytes are not what the catalog recorded, naming it, and replays nothing of it', async () => {
    const { store, catalog } = await archiveParts(nats.nc);
    const topic = 'hybrid_corrupt';
    await createTopic(nats.nc, { name: topic, partitions: 1 });
    await produce(nats.nc, topic, 300, 0);
    await new Archiver({
      nc: nats.nc,
      store,
      catalog,
      clock: new ManualClock(Date.now()),
      maxSegmentEvents: 100,
    }).archiveTopic(topic, { force: true });
    const { segments } = await catalog.read(topic, 0);
    // The second segment's object replaced (a damaged or tampered object store).
    const second = (await store.get(segments[1]!.name))!;
    const damaged = new Uint8Array(second);
    const middle = damaged.length >> 1;
    damaged[middle] = damaged[middle]! ^ 0xff;
    await store.put(segments[1]!.name, damaged);
    const source = new ArchiveThenLiveSource(
      nats.nc,
      { store, catalog, topic, partition: 0 },
      { stream: streams.partition(topic, 0), startSequence: 1 },
    );
    await source.start();
    const read: number[] = [];
    let failure: unknown;
    for (let turn = 0; turn < 50 && failure === undefined; turn++) {
      try {
        await source.waitForMessages(200);
        for (const message of source.take(1_000)) read.push(message.sequence);
      } catch (error) {
        failure = error;
      }
    }
    await source.stop();
    expect((failure as Error).message).toContain(segments[1]!.name);
    expect((failure as Error).message).toMatch(/checksum/);
    // The first segment was read; nothing of the damaged one or after it.
    expect(read).toEqual(Array.from({ length: 100 }, (_, index) => index + 1));
  }, 60_000);
});
