// The baseline every bench compares against: the raw NATS AckNone consumer, one per stream, in
// callback mode with batches of 10k, all streams read concurrently (the fastest way this client
// reads JetStream, see ../shared/FACTS.md). Also used to read a whole stream quickly (a KV table).
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

export interface RawReadOptions {
  /** Messages expected over all streams; the read ends when this many have arrived. */
  expected: number;
  /** Called for every message (keep it cheap: it is inside the timed loop). */
  onMessage?: (message: JsMsg) => void;
  batchMessages?: number;
  timeoutMs?: number;
}

/**
 * Reads every stream from its first message until `expected` messages have arrived in total and
 * returns the seconds it took, consumer creation included. The consumers are stopped afterwards.
 */
export async function readRaw(
  nc: NatsConnection,
  streamNames: readonly string[],
  options: RawReadOptions,
): Promise<number> {
  const { expected, onMessage, batchMessages = 10_000, timeoutMs = 300_000 } = options;
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stops: (() => void)[] = [];
  const startedAt = performance.now();
  let received = 0;
  let timer: NodeJS.Timeout | undefined;
  try {
    if (expected > 0) {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`raw consumer: ${received} of ${expected} messages within ${timeoutMs} ms`)),
          timeoutMs,
        );
        for (const stream of streamNames) {
          void (async () => {
            const info = await jsm.consumers.add(stream, {
              ack_policy: AckPolicy.None,
              deliver_policy: DeliverPolicy.All,
              mem_storage: true,
              inactive_threshold: 10_000_000_000,
            });
            const consumer = await js.consumers.get(stream, info.name);
            const messages = await consumer.consume({
              max_messages: batchMessages,
              callback: (message) => {
                onMessage?.(message);
                if (++received === expected) resolve();
              },
            });
            stops.push(() => messages.stop());
            void messages.closed();
          })().catch(reject);
        }
      });
    }
    return (performance.now() - startedAt) / 1000;
  } finally {
    clearTimeout(timer);
    for (const stop of stops) stop();
  }
}
