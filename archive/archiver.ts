// The archiver: seals closed ranges of each partition of a topic into segments, records them in
// the catalog, and lets hot retention remove archived ranges from the stream. Run by the
// coordinator leader (fenced by its token) for topics with a policy, and by `kappa topic archive`.
//
// One partition, one step (sealNext):
//   1. read the catalog: the archive ends at L (its revision R);
//   2. read the stream from L + 1 with an ordered (AckNone) consumer: the closed range the policy
//      allows (a full segment of `afterMessages`, or what the log received before now − afterMs,
//      or everything there now when forced), at most maxSegmentEvents;
//   3. write the segment object (its name is its range: a retry of the same range overwrites it);
//   4. append it to the catalog with compare-and-set on R: a second archiver, or a leader that
//      lost its lease to a higher token, is refused. A crash between 3 and 4 leaves an object no
//      catalog entry lists: the next step either overwrites it (same range) or, once the catalog
//      has moved past its start, collects it. Never two recorded copies of a range.
// Then hot retention purges from the stream whole archived segments older than the policy keeps,
// read back from the catalog, so nothing leaves the stream before its segment is recorded.
import {
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, FencedError, readTopicConfig, streams, type ArchivePolicy, type Clock } from '../protocol/index.js';
import { ArchiveCatalog, lastArchivedSequence, type PartitionCatalog } from './catalog.js';
import {
  checksumOf,
  encodeSegment,
  partitionPrefix,
  segmentEventsOf,
  segmentName,
  type SegmentIndex,
} from './segment-format.js';
import type { SegmentStore } from './segment-store.js';

/** A segment's size when the policy does not set one (`afterMessages`). */
export const DEFAULT_SEGMENT_EVENTS = 200_000;
/** An upper bound on JetStream's per-message overhead in a file store (its record header is 22–30 bytes). */
const STREAM_OVERHEAD_BYTES = 64;
/** A read that hears nothing for this long has read everything there is. */
const READ_IDLE_MS = 5_000;

export interface ArchiverOptions {
  nc: NatsConnection;
  store: SegmentStore;
  catalog: ArchiveCatalog;
  clock: Clock;
  /**
   * The fencing token to write under, read before each write; undefined when this process may
   * no longer archive (the coordinator lost its lease): the step stops with a FencedError.
   * Absent (`kappa topic archive`): writes rely on the catalog's compare-and-set alone.
   */
  fencingToken?: () => number | undefined;
  maxSegmentEvents?: number;
  /** Test seam: runs after a segment object is written, before it is recorded (a crash there). */
  afterWrite?: (segment: SegmentIndex) => void | Promise<void>;
}

export interface PartitionArchiveReport {
  topic: string;
  partition: number;
  sealed: SegmentIndex[];
  /** The stream's messages below this sequence were purged by hot retention in this run. */
  purgedBelow?: number;
  orphansDeleted: string[];
  /** The partition's archive after the run: its segments and where it ends (0: nothing archived). */
  archive: { segments: number; bytes: number; events: number; lastSequence: number };
  /** The stream's last sequence when the run began. */
  streamLastSequence: number;
  /** JetStream's timestamp (ms) of the first message past the archive, when the stream holds one. */
  firstUnsealedLogTimeMs?: number;
}

interface ReadMessage {
  sequence: number;
  logTimeMs: number;
  data: Uint8Array;
  streamBytes: number;
}

export class Archiver {
  private readonly maxSegmentEvents: number;
  private jsPromise: Promise<{ js: JetStreamClient; jsm: JetStreamManager }> | undefined;

  constructor(private readonly options: ArchiverOptions) {
    this.maxSegmentEvents = options.maxSegmentEvents ?? DEFAULT_SEGMENT_EVENTS;
  }

  /** Every registered topic with an archive policy, by its policy (the leader's periodic run); `policies` is told each one. */
  async archivePolicyTopics(policies?: Map<string, ArchivePolicy>): Promise<PartitionArchiveReport[]> {
    const registry = await new Kvm(this.options.nc).open(buckets.topics);
    const topics: string[] = [];
    for await (const topic of await registry.keys()) topics.push(topic);
    const reports: PartitionArchiveReport[] = [];
    for (const topic of topics.sort()) {
      const config = await readTopicConfig(this.options.nc, topic);
      if (!config?.archive) continue;
      policies?.set(topic, config.archive);
      reports.push(...(await this.archiveTopic(topic, { policy: config.archive })));
    }
    return reports;
  }

  /**
   * Seals a topic's partitions by its policy (or `force`: everything the streams hold now, in
   * segments of the count policy's size or at most maxSegmentEvents), then applies hot retention.
   */
  async archiveTopic(
    topic: string,
    options: { force?: boolean; policy?: ArchivePolicy } = {},
  ): Promise<PartitionArchiveReport[]> {
    const config = await readTopicConfig(this.options.nc, topic);
    if (!config) throw new FencedError(`topic ${topic} is no longer registered`);
    const policy = options.policy ?? config.archive ?? {};
    const reports: PartitionArchiveReport[] = [];
    for (let partition = 0; partition < config.partitions; partition++)
      reports.push(await this.archivePartition(topic, partition, policy, options.force ?? false));
    return reports;
  }

  async archivePartition(
    topic: string,
    partition: number,
    policy: ArchivePolicy,
    force: boolean,
  ): Promise<PartitionArchiveReport> {
    const { jsm } = await this.jetstream();
    const stream = streams.partition(topic, partition);
    const streamLast = (await jsm.streams.info(stream)).state.last_seq;
    const report: PartitionArchiveReport = {
      topic,
      partition,
      sealed: [],
      orphansDeleted: [],
      archive: { segments: 0, bytes: 0, events: 0, lastSequence: 0 },
      streamLastSequence: streamLast,
    };
    for (;;) {
      const sealed = await this.sealNext(topic, partition, policy, force, streamLast);
      if (!sealed) break;
      report.sealed.push(sealed);
    }
    const catalog = await this.options.catalog.read(topic, partition);
    report.orphansDeleted = await this.collectOrphans(catalog);
    const purgedBelow = await this.applyHotRetention(catalog, policy);
    if (purgedBelow !== undefined) report.purgedBelow = purgedBelow;
    const end = lastArchivedSequence(catalog);
    report.archive = {
      segments: catalog.segments.length,
      bytes: catalog.segments.reduce((sum, segment) => sum + segment.bytes, 0),
      events: catalog.segments.reduce((sum, segment) => sum + segment.count, 0),
      lastSequence: end,
    };
    if (end < streamLast) {
      // For the archiver's lag behind a duration policy: how old the oldest unsealed message is.
      const first = await jsm.streams.getMessage(stream, { seq: end + 1 }).catch(() => null);
      if (first) report.firstUnsealedLogTimeMs = first.time.getTime();
    }
    return report;
  }

  /** One segment sealed and recorded, or undefined when the policy allows nothing more. */
  private async sealNext(
    topic: string,
    partition: number,
    policy: ArchivePolicy,
    force: boolean,
    streamLast: number,
  ): Promise<SegmentIndex | undefined> {
    const fencingToken = this.currentToken();
    const catalog = await this.options.catalog.read(topic, partition);
    const from = lastArchivedSequence(catalog) + 1;
    if (from > streamLast) return undefined;
    // A count policy sizes the segments, also when sealing now; else maxSegmentEvents does.
    const segmentEvents = Math.min(policy.afterMessages ?? this.maxSegmentEvents, 1_000_000);
    const before = !force && policy.afterMs !== undefined ? this.options.clock.now() - policy.afterMs : Infinity;
    if (!force && policy.afterMessages === undefined && policy.afterMs === undefined) return undefined;
    const messages = await this.readRange(streams.partition(topic, partition), from, streamLast, segmentEvents, before);
    if (messages.length === 0) return undefined;
    // A count policy seals full segments only: a partial one is not closed yet.
    if (!force && policy.afterMessages !== undefined && messages.length < segmentEvents) return undefined;

    const last = messages.at(-1)!.sequence;
    const events = segmentEventsOf(messages);
    let minEventTimeMs: number | null = null;
    let maxEventTimeMs: number | null = null;
    let maxLogTimeMs = 0;
    let streamBytes = 0;
    for (let index = 0; index < messages.length; index++) {
      const time = events.times[index]!;
      if (!Number.isNaN(time)) {
        if (minEventTimeMs === null || time < minEventTimeMs) minEventTimeMs = time;
        if (maxEventTimeMs === null || time > maxEventTimeMs) maxEventTimeMs = time;
      }
      maxLogTimeMs = Math.max(maxLogTimeMs, messages[index]!.logTimeMs);
      streamBytes += messages[index]!.streamBytes;
    }
    const range = {
      topic,
      partition,
      firstSequence: from,
      lastSequence: last,
      count: messages.length,
      minEventTimeMs,
      maxEventTimeMs,
      maxLogTimeMs,
      streamBytes,
    };
    const bytes = encodeSegment(events, range);
    const segment: SegmentIndex = {
      ...range,
      name: segmentName(topic, partition, from, last),
      bytes: bytes.length,
      checksum: checksumOf(bytes),
      sealedAt: new Date(this.options.clock.now()).toISOString(),
    };
    await this.options.store.put(segment.name, bytes);
    await this.options.afterWrite?.(segment);
    await this.options.catalog.append(
      catalog,
      segment,
      this.options.fencingToken ? this.currentToken(fencingToken) : undefined,
    );
    return segment;
  }

  /**
   * Objects under the partition's prefix that the catalog does not list and that start at or
   * below its end: no append can ever record them (an append starts after the end), so they are
   * leftovers of a step that crashed or lost its compare-and-set.
   */
  private async collectOrphans(catalog: PartitionCatalog): Promise<string[]> {
    const listed = new Set(catalog.segments.map((segment) => segment.name));
    const end = lastArchivedSequence(catalog);
    const deleted: string[] = [];
    for (const name of await this.options.store.list(partitionPrefix(catalog.topic, catalog.partition))) {
      const first = Number(/\/(\d+)-\d+\.parquet$/.exec(name)?.[1]);
      if (listed.has(name) || !(first <= end)) continue;
      this.currentToken();
      await this.options.store.delete(name);
      deleted.push(name);
    }
    return deleted;
  }

  /** Purges the archived ranges hot retention no longer keeps; returns the purge sequence, if any. */
  private async applyHotRetention(catalog: PartitionCatalog, policy: ArchivePolicy): Promise<number | undefined> {
    if (policy.hotRetentionMs === undefined && policy.hotRetentionBytes === undefined) return undefined;
    const { jsm } = await this.jetstream();
    const stream = streams.partition(catalog.topic, catalog.partition);
    const { state } = await jsm.streams.info(stream);
    const below = hotRetentionPurge(
      catalog.segments,
      { firstSequence: state.messages === 0 ? state.last_seq + 1 : state.first_seq, bytes: state.bytes },
      policy,
      this.options.clock.now(),
    );
    if (below === undefined) return undefined;
    this.currentToken();
    // JetStream: purge with `seq` removes every message below it — except that nats-server 2.9
    // takes `seq` 0 or 1 as a purge of the whole stream; `below` is always ≥ 2 here.
    await jsm.streams.purge(stream, { seq: below });
    return below;
  }

  /**
   * Up to `limit` messages from `from` (inclusive) to `last`, stopping at the first the log
   * received at or after `beforeLogMs`.
   */
  private async readRange(
    stream: string,
    from: number,
    last: number,
    limit: number,
    beforeLogMs: number,
  ): Promise<ReadMessage[]> {
    const { js } = await this.jetstream();
    const consumer = await js.consumers.get(stream, { opt_start_seq: from });
    const messages = await consumer.consume({ max_messages: Math.min(limit, 10_000) });
    const read: ReadMessage[] = [];
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => void messages.stop(), READ_IDLE_MS);
    };
    armIdle();
    try {
      for await (const message of messages) {
        armIdle();
        if (message.seq > last) break;
        const logTimeMs = Math.floor(message.info.timestampNanos / 1_000_000);
        if (logTimeMs >= beforeLogMs) break;
        read.push({
          sequence: message.seq,
          logTimeMs,
          data: message.data,
          streamBytes:
            message.data.length +
            message.subject.length +
            (message.headers ? message.headers.toString().length : 0) +
            STREAM_OVERHEAD_BYTES,
        });
        if (read.length >= limit || message.seq >= last || message.info.pending === 0) break;
      }
    } finally {
      clearTimeout(idle);
      await messages.close().catch(() => undefined);
    }
    return read;
  }

  private currentToken(expected?: number): number {
    const token = this.options.fencingToken ? this.options.fencingToken() : 0;
    if (token === undefined || (expected !== undefined && token !== expected))
      throw new FencedError('the archiver no longer holds the coordinator lease (its fencing token changed)');
    return token;
  }

  private jetstream(): Promise<{ js: JetStreamClient; jsm: JetStreamManager }> {
    this.jsPromise ??= (async () => ({
      js: jetstream(this.options.nc),
      jsm: await jetstreamManager(this.options.nc),
    }))();
    return this.jsPromise;
  }
}

/**
 * Hot retention, pure: the sequence to purge the stream below (every message under it goes), or
 * undefined to purge nothing. Only whole recorded segments go, oldest first and without skipping
 * one, each only if the stream still keeps what the policy says without it: by age, the segment's
 * newest message is older than `hotRetentionMs`; by size, the stream's bytes less (an upper bound
 * of) the segment's stay at least `hotRetentionBytes`. With both, both must hold.
 */
export function hotRetentionPurge(
  segments: readonly SegmentIndex[],
  stream: { firstSequence: number; bytes: number },
  policy: ArchivePolicy,
  nowMs: number,
): number | undefined {
  if (policy.hotRetentionMs === undefined && policy.hotRetentionBytes === undefined) return undefined;
  let bytes = stream.bytes;
  let below: number | undefined;
  for (const segment of segments) {
    if (segment.lastSequence < stream.firstSequence) continue; // already gone from the stream
    if (policy.hotRetentionMs !== undefined && segment.maxLogTimeMs >= nowMs - policy.hotRetentionMs) break;
    if (policy.hotRetentionBytes !== undefined && bytes - segment.streamBytes < policy.hotRetentionBytes) break;
    bytes -= segment.streamBytes;
    below = segment.lastSequence + 1;
  }
  return below;
}

/** Whether an error is JetStream saying the stream is gone (a topic deleted while archiving). */
export function isStreamGone(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === 10059;
}
