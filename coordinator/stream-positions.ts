// The last sequence of every partition stream the running job versions read, polled from
// JetStream: the "end of the log" that replay progress is measured against. Workers report how
// far they got; only the coordinator sees every partition, so it reads the ends itself (one
// stream-info request per partition per poll, outside the reconciliation queue).
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { streams } from '../protocol/index.js';

export class StreamPositions {
  private readonly lastSequences = new Map<string, number[]>();
  private timer: NodeJS.Timeout | undefined;
  private jsm: Promise<JetStreamManager> | undefined;
  private polling = false;
  private failureLogged = false;

  constructor(
    private readonly nc: NatsConnection,
    /** Topic → partition count of the versions to watch; asked on every poll. */
    private readonly topics: () => Map<string, number>,
    private readonly logger: Logger,
    private readonly intervalMs = 2_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    void this.poll();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Last sequence per partition of `topic` (index = partition), or undefined before the first read. */
  of(topic: string | null): readonly number[] | undefined {
    return topic === null ? undefined : this.lastSequences.get(topic);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      this.jsm ??= jetstreamManager(this.nc);
      const jsm = await this.jsm;
      const wanted = this.topics();
      for (const topic of this.lastSequences.keys()) if (!wanted.has(topic)) this.lastSequences.delete(topic);
      let failure: unknown;
      for (const [topic, partitions] of wanted) {
        // One topic at a time: a topic deleted meanwhile (a retired version's repartition topic)
        // leaves the others' positions fresh.
        try {
          const infos = await Promise.all(
            Array.from({ length: partitions }, (_, partition) => jsm.streams.info(streams.partition(topic, partition))),
          );
          this.lastSequences.set(
            topic,
            infos.map((info) => info.state.last_seq),
          );
        } catch (error) {
          failure ??= error;
        }
      }
      if (failure !== undefined) throw failure;
      this.failureLogged = false;
    } catch (error) {
      // Keep the previous positions; say so once per outage rather than every poll.
      if (!this.failureLogged)
        this.logger.warn({ err: error }, 'cannot read partition stream positions; replay progress is stale');
      this.failureLogged = true;
      this.jsm = undefined;
    } finally {
      this.polling = false;
    }
  }
}
