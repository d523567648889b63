// Reads a topic's partition count from the topic registry (KV), so a worker learns P.
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, KappaError } from '../protocol/index.js';

export async function topicPartitions(nc: NatsConnection, topic: string): Promise<number> {
  let entry;
  try {
    const kv = await new Kvm(nc).open(buckets.topics);
    entry = await kv.get(topic);
  } catch {
    entry = null;
  }
  if (!entry || entry.operation !== 'PUT') {
    throw new KappaError('TOPIC_NOT_FOUND', `topic '${topic}' does not exist (create it with 'kappa topic create ${topic} --partitions P')`);
  }
  const record = entry.json<{ partitions?: unknown }>();
  if (typeof record.partitions !== 'number') {
    throw new KappaError('TOPIC_NOT_FOUND', `topic '${topic}' has a registry entry without a partition count`);
  }
  return record.partitions;
}
