// Where a route task's results go: each keyed event to the partition of the version's repartition
// topic its key hashes to, then (when the processor says the watermark moved) a watermark mark to
// every partition, so a keyed task that gets no events from this upstream still sees time pass.
// Pipelined through the client's producer (one ack wait per batch, not per event). Message ids are
// the upstream position (`<source>/<partition>/<sequence>`), so a route task re-publishing after a
// restart is dropped by the server within its duplicate window, and by the keyed task (which
// remembers each upstream's last sequence) after it.
import type { NatsConnection } from '@nats-io/transport-node';
import { Producer } from '../client/producer.js';
import { encodeRoutedEvent, encodeWatermarkMark } from '../protocol/index.js';
import type { BatchResult } from './task-processor.js';

/** Marks have no key of their own; this token keeps their subjects apart from any event's. */
const MARK_SUBJECT_KEY = '_watermark';

export class RouteSink {
  private constructor(
    private readonly producer: Producer,
    private readonly targetPartitions: number,
  ) {}

  static async open(nc: NatsConnection, targetTopic: string): Promise<RouteSink> {
    const producer = await Producer.forTopic(nc, targetTopic, { maxInFlight: 16_384, retryForMs: 120_000 });
    return new RouteSink(producer, producer.partitions);
  }

  /** Publishes a batch's routed events and mark; resolves when the server has acknowledged all. */
  async write(result: BatchResult): Promise<void> {
    const producer = this.producer;
    for (const event of result.routed) {
      const payload = encodeRoutedEvent(event);
      const id = `${event.source}/${event.partition}/${event.sequence}`;
      if (!producer.publishEncoded(event.target, event.key, payload, id)) await producer.ready();
    }
    const mark = result.mark;
    if (mark) {
      const payload = encodeWatermarkMark(mark);
      const id = `${mark.source}/${mark.partition}/w/${mark.sequence}/${mark.watermarkMs}/${mark.idle ? 1 : 0}`;
      for (let target = 0; target < this.targetPartitions; target++) {
        // One id per stream: each partition is its own stream, so the same id in each is no repeat.
        if (!producer.publishEncoded(target, MARK_SUBJECT_KEY, payload, id)) await producer.ready();
      }
    }
    await producer.flush();
  }

  async close(): Promise<void> {
    await this.producer.close().catch(() => undefined);
  }
}
