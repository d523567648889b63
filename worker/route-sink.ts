// Where a route task's results go: a batch's keyed events for each partition of the version's
// repartition topic, and (when the processor says the watermark moved) a watermark mark to every
// partition, so a keyed task that gets no events from this upstream still sees time pass. Each
// partition's records of a batch go as bundles (protocol/routed-event.ts): one stored message per
// batch and partition, not per event, since a JetStream publish costs nats-server about as much as
// the route task's whole work on the event (bench/README.md "Repartition hop").
//
// Message ids are upstream positions: `<source>/<partition>/b/<first>-<last>` (the upstream
// sequences of the bundle's first and last record; `/w/<watermark>/<idle>` when it ends with a
// mark). A route task re-publishing after a restart may cut its bundles elsewhere, so the server
// drops only exact repeats; the keyed task, which remembers each upstream's last sequence, drops
// every event it has already taken. An id never names two different bundles: the events of a
// partition between two upstream sequences are the same whatever batch they were read in.
import type { NatsConnection } from '@nats-io/transport-node';
import { Producer } from '../client/producer.js';
import { encodeRoutedBundle, encodeWatermarkMark } from '../protocol/index.js';
import type { TaskInput } from './task-input.js';
import type { BatchResult } from './task-processor.js';

/** Bundles have no key of their own; this token keeps their subjects apart from any event's. */
const BUNDLE_SUBJECT_KEY = '_bundle';
/** A bundle's records take at most this many bytes (well under the server's max_payload, 1 MiB by default). */
const BUNDLE_MAX_BYTES = 256 * 1024;
/** What a bundle of one record adds to it at most: its message-id header and the bundle's framing. */
const BUNDLE_OVERHEAD_BYTES = 256;
/** Bundles a route task has published and not yet had acknowledged, at most. */
const BUNDLES_IN_FLIGHT = 64;

/** A message of the repartition topic: records for one keyed partition. */
interface Bundle {
  target: number;
  id: string;
  payload: Uint8Array;
}

/** One partition's records of a batch, being gathered into bundles. */
interface PartitionRecords {
  records: Uint8Array[];
  bytes: number;
  firstSequence: number;
  lastSequence: number;
}

/**
 * A route task's input with the largest record its bundles can carry on this connection's server:
 * a larger event is dead-lettered `too-large` by the route task (a publish past max_payload would
 * fail its batch again on every retry).
 */
export function withRecordLimit(input: TaskInput, nc: NatsConnection): TaskInput {
  if (input.kind !== 'route') return input;
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  return { ...input, maxRecordBytes: maxPayload - BUNDLE_OVERHEAD_BYTES };
}

export class RouteSink {
  private readonly pending: PartitionRecords[];

  private constructor(
    private readonly producer: Producer,
    private readonly source: { index: number; partition: number },
  ) {
    this.pending = Array.from({ length: producer.partitions }, () => ({
      records: [],
      bytes: 0,
      firstSequence: 0,
      lastSequence: 0,
    }));
  }

  static async open(
    nc: NatsConnection,
    targetTopic: string,
    source: { index: number; partition: number },
  ): Promise<RouteSink> {
    // At most BUNDLES_IN_FLIGHT × BUNDLE_MAX_BYTES (16 MiB) of a task's bundles await their acks.
    const producer = await Producer.forTopic(nc, targetTopic, { maxInFlight: BUNDLES_IN_FLIGHT, retryForMs: 120_000 });
    return new RouteSink(producer, source);
  }

  /** Publishes a batch's routed events and mark; resolves when the server has acknowledged all. */
  async write(result: BatchResult): Promise<void> {
    const bundles = this.bundlesOf(result);
    for (const { target, id, payload } of bundles) {
      if (!this.producer.publishEncoded(target, BUNDLE_SUBJECT_KEY, payload, id)) await this.producer.ready();
    }
    await this.producer.flush();
  }

  /** The batch's records, cut into bundles per keyed partition, each with its id. */
  private bundlesOf(result: BatchResult): Bundle[] {
    const bundles: Bundle[] = [];
    for (const records of this.pending) {
      records.records = [];
      records.bytes = 0;
    }
    for (const event of result.routed) {
      const records = this.pending[event.target]!;
      const record = event.record;
      if (records.records.length > 0 && records.bytes + record.length > BUNDLE_MAX_BYTES) {
        bundles.push(this.cut(event.target, ''));
      }
      if (records.records.length === 0) records.firstSequence = event.sequence;
      records.records.push(record);
      records.bytes += record.length;
      records.lastSequence = event.sequence;
    }
    const mark = result.mark;
    const markRecord = mark ? encodeWatermarkMark(mark) : undefined;
    const markId = mark ? `/w/${mark.watermarkMs}/${mark.idle ? 1 : 0}` : '';
    for (let target = 0; target < this.pending.length; target++) {
      const records = this.pending[target]!;
      if (mark && markRecord) {
        if (records.records.length === 0) records.firstSequence = mark.sequence;
        records.records.push(markRecord);
        records.lastSequence = mark.sequence;
      }
      if (records.records.length > 0) bundles.push(this.cut(target, markId));
    }
    return bundles;
  }

  /** One bundle of `target`'s gathered records; its list starts over. */
  private cut(target: number, idSuffix: string): Bundle {
    const records = this.pending[target]!;
    const { index, partition } = this.source;
    const id = `${index}/${partition}/b/${records.firstSequence}-${records.lastSequence}${idSuffix}`;
    const payload = encodeRoutedBundle(records.records);
    records.records = [];
    records.bytes = 0;
    return { target, id, payload };
  }

  async close(): Promise<void> {
    await this.producer.close().catch(() => undefined);
  }
}
