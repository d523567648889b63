// Is a partition's stream there at all? Asked after a publish to it got "no responders": a stream
// electing a leader answers that too, and is waited for, but a deleted topic never will be.
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { streams } from '../protocol/index.js';

export class PartitionStreamCheck {
  /** Partitions whose stream is being looked up (one lookup at a time). */
  private readonly inProgress = new Set<number>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly topic: string,
  ) {}

  /** Looks the partition's stream up and calls `onMissing` when the server says it does not exist. */
  check(partition: number, onMissing: (error: Error) => void): void {
    // One lookup per partition at a time: during an election thousands of publishes get a 503.
    if (this.inProgress.has(partition)) return;
    this.inProgress.add(partition);
    void jetstreamManager(this.nc)
      .then((jsm) => jsm.streams.info(streams.partition(this.topic, partition)))
      .catch((error: Error) => {
        // Anything else (a timeout during the election) is what the retries are for.
        if (/not found/i.test(error.message)) onMissing(error);
      })
      .finally(() => this.inProgress.delete(partition));
  }
}
