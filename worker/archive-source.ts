// Hybrid replay's source (issue 17, DESIGN.md "Tiers and hybrid replay"): a task whose partition
// has archived segments reads them first, then the live stream from the archive's last sequence
// + 1, with no gap and no overlap. The messages reach the same processor as live ones, with the
// same sequences, bytes and log times the stream held, so the task's state, outputs and late set
// at the hand-over are exactly a streaming run's.
//
// The archive grows while a task reads it, and hot retention removes archived ranges from the
// stream: so the catalog is read again when the archive phase runs out (the hand-over is at the
// newest archive end, not the one seen at start), and a range the live stream no longer holds
// (a task that fell behind hot retention) is read from the archive again, never skipped.
import type { NatsConnection } from '@nats-io/transport-node';
import { handOverSequence, type ArchiveCatalog, type PartitionCatalog } from '../archive/catalog.js';
import { messagesOf, readSegment } from '../archive/reader.js';
import type { SegmentEvents, SegmentIndex } from '../archive/segment-format.js';
import type { SegmentStore } from '../archive/segment-store.js';
import { ArchiveCatalog as Catalog } from '../archive/catalog.js';
import { openSegmentStore } from '../archive/open-segment-store.js';
import { PartitionSource, type PartitionSourceOptions, type TaskSource } from './source.js';
import type { RawMessage } from './task-processor.js';

export interface ArchiveAccess {
  store: SegmentStore;
  catalog: ArchiveCatalog;
  topic: string;
  partition: number;
  /** Told of every segment read, with its object's size. */
  onSegmentRead?: (bytes: number) => void;
}

/** One segment decoded, and the index of the next message to hand out. */
interface LoadedSegment {
  segment: SegmentIndex;
  events: SegmentEvents;
  next: number;
}

export class ArchiveThenLiveSource implements TaskSource {
  private live: PartitionSource | undefined;
  /** A live source given up at a gap the archive holds: what it buffered before the gap is taken first. */
  private retiring: PartitionSource | undefined;
  /** The next sequence to hand out. */
  private nextSequence: number;
  /** The segments still to read, oldest first (archive phase). */
  private pending: SegmentIndex[] = [];
  private current: LoadedSegment | undefined;
  /** The next segment, being fetched and decoded while the current one is read. */
  private prefetched: { segment: SegmentIndex; events: Promise<SegmentEvents> } | undefined;
  private loading: Promise<void> | undefined;
  private failure: unknown;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly archive: ArchiveAccess,
    private readonly liveOptions: PartitionSourceOptions,
    private readonly onHandOver?: (sequence: number) => void,
  ) {
    this.nextSequence = liveOptions.startSequence;
  }

  get phase(): 'archive' | 'live' {
    return this.live ? 'live' : 'archive';
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.enterArchiveOrLive();
  }

  /** Reads the catalog: segments from nextSequence on are read first; with none, the live stream starts. */
  private async enterArchiveOrLive(): Promise<void> {
    const catalog = await this.archive.catalog.read(this.archive.topic, this.archive.partition);
    this.pending = segmentsFrom(catalog, this.nextSequence);
    if (this.pending.length === 0) {
      await this.startLive();
      return;
    }
    this.prefetched = this.fetch(this.pending[0]!);
  }

  private async startLive(): Promise<void> {
    if (this.stopped) return;
    const live = new PartitionSource(this.nc, {
      ...this.liveOptions,
      startSequence: this.nextSequence,
      confirmGap: (from) => this.gapInStream(from),
    });
    this.live = live;
    this.onHandOver?.(this.nextSequence);
    await live.start();
    this.wake?.();
  }

  /**
   * The live stream skips sequences from `from`: when the archive now holds them (hot retention
   * removed what it had archived while this task was behind), the live cursor is dropped and they
   * are read from the archive. Otherwise they are really gone (deleted messages) and skipped.
   */
  private async gapInStream(from: number): Promise<boolean> {
    const catalog = await this.archive.catalog.read(this.archive.topic, this.archive.partition);
    if (handOverSequence(catalog) <= from || this.stopped) return true;
    const live = this.live;
    if (live) {
      // What the live cursor buffered before the gap is still taken (take()); then the archive.
      this.live = undefined;
      this.retiring = live;
      await live.stop();
      this.nextSequence = from;
      this.pending = segmentsFrom(catalog, from);
      this.prefetched = this.fetch(this.pending[0]!);
      this.wake?.();
    }
    return false;
  }

  private fetch(segment: SegmentIndex): { segment: SegmentIndex; events: Promise<SegmentEvents> } {
    const events = readSegment(this.archive.store, this.archive.topic, this.archive.partition, segment).then(
      (decoded) => {
        this.archive.onSegmentRead?.(segment.bytes);
        return decoded;
      },
    );
    events.catch(() => undefined); // awaited in advance(); a stop may leave it unawaited
    return { segment, events };
  }

  /** Makes the next segment current (or hands over when none is left); starts fetching the one after. */
  private advance(): Promise<void> {
    this.loading ??= (async () => {
      try {
        while (!this.stopped && !this.live && (!this.current || this.current.next >= this.current.events.data.length)) {
          if (!this.prefetched) {
            // The segments seen are read: the archive may have grown meanwhile.
            await this.enterArchiveOrLive();
            if (this.live || !this.prefetched) return;
          }
          const { segment, events: decoding } = this.prefetched;
          const events = await decoding;
          this.pending.shift();
          this.prefetched = this.pending.length > 0 ? this.fetch(this.pending[0]!) : undefined;
          let next = 0;
          while (next < events.sequences.length && events.sequences[next]! < this.nextSequence) next++;
          this.current = { segment, events, next };
          // A segment with nothing left to read (deleted messages): the next starts after its range.
          if (next >= events.sequences.length)
            this.nextSequence = Math.max(this.nextSequence, segment.lastSequence + 1);
        }
      } catch (error) {
        this.failure = error;
      } finally {
        this.loading = undefined;
        this.wake?.();
      }
    })();
    return this.loading;
  }

  private hasArchived(): boolean {
    return this.current !== undefined && this.current.next < this.current.events.data.length;
  }

  async waitForMessages(timeoutMs: number): Promise<void> {
    this.throwFailure();
    if ((this.retiring?.buffered ?? 0) > 0) return;
    this.retiring = undefined;
    if (this.live) return this.live.waitForMessages(timeoutMs);
    if (this.hasArchived() || this.stopped) return;
    await Promise.race([
      this.advance(),
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      }),
    ]);
    this.wake = undefined;
    this.throwFailure();
    // advance() may have handed over meanwhile (the compiler cannot see that).
    const live = this.live as PartitionSource | undefined;
    if (live && !this.stopped) await live.waitForMessages(timeoutMs);
  }

  take(max: number): RawMessage[] {
    if (this.retiring && this.retiring.buffered > 0) return this.retiring.take(max);
    if (this.live) return this.live.take(max);
    const current = this.current;
    if (!current || current.next >= current.events.data.length) return [];
    const { data, sequences } = current.events;
    const end = Math.min(data.length, current.next + max);
    const taken: RawMessage[] = messagesOf(current.events, current.next, end);
    current.next = end;
    this.nextSequence = sequences[end - 1]! + 1;
    // The segment's range may end past its last message (deleted messages): the next starts after it.
    if (end === data.length) {
      this.nextSequence = current.segment.lastSequence + 1;
      void this.advance();
    }
    return taken;
  }

  restartIfStalled(endSequence: number, stallMs: number): boolean {
    return this.live?.restartIfStalled(endSequence, stallMs) ?? false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.live?.stop();
  }

  private throwFailure(): void {
    if (this.failure === undefined) return;
    const failure = this.failure;
    this.failure = undefined;
    throw failure;
  }
}

/** The catalog's segments holding sequences from `sequence` on, oldest first. */
function segmentsFrom(catalog: PartitionCatalog, sequence: number): SegmentIndex[] {
  return catalog.segments.filter((segment) => segment.lastSequence >= sequence);
}

/**
 * The first archived sequence JetStream stored at or after `timeMs` (log time, as `--from <time>`
 * means), or undefined when the archive holds nothing that late: the segment index bounds the
 * search by its newest log time, and that one segment is read to find the message.
 */
export async function firstArchivedSequenceAtOrAfter(
  archive: ArchiveAccess,
  timeMs: number,
): Promise<number | undefined> {
  const catalog = await archive.catalog.read(archive.topic, archive.partition);
  const segment = catalog.segments.find((candidate) => candidate.maxLogTimeMs >= timeMs);
  if (!segment) return undefined;
  const events = await readSegment(archive.store, archive.topic, archive.partition, segment);
  for (let index = 0; index < events.sequences.length; index++)
    if (events.logTimes[index]! >= timeMs) return events.sequences[index]!;
  return segment.lastSequence + 1;
}

/** The cold tier a process's tasks read: its segment store and catalog. */
export interface ArchiveParts {
  store: SegmentStore;
  catalog: ArchiveCatalog;
}

/**
 * Opens the segment store (S3 when the environment names a bucket, else the NATS Object Store) and
 * the catalog once, on first use; a failed open is retried by the next call.
 */
export function lazyArchiveParts(nc: NatsConnection, replicas: number): () => Promise<ArchiveParts> {
  let opening: Promise<ArchiveParts> | undefined;
  return () => {
    if (!opening) {
      opening = (async () => ({
        store: await openSegmentStore(nc, { replicas }),
        catalog: await Catalog.open(nc, { replicas }),
      }))();
      opening.catch(() => (opening = undefined));
    }
    return opening;
  };
}
