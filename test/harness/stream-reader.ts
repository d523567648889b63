// Reads every message stored under one subject of a stream (for checking dead-letter, late-data
// and output subjects). A single filter subject, so it works on nats-server 2.9.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

export async function readSubject(nc: NatsConnection, stream: string, subject: string): Promise<JsMsg[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.consumers.add(stream, {
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    filter_subject: subject,
    inactive_threshold: 10_000_000_000,
  });
  const messages: JsMsg[] = [];
  if (info.num_pending === 0) return messages;
  const consumer = await jetstream(nc).consumers.get(stream, info.name);
  const batch = await consumer.fetch({ max_messages: info.num_pending, expires: 5_000 });
  for await (const message of batch) {
    messages.push(message);
    if (messages.length === info.num_pending) break;
  }
  return messages;
}
