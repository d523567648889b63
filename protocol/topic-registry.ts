// The topic registry (KV bucket `buckets.topics`): topic name → partition count, replicas. Every
// process (producer, worker, coordinator) learns P from here, so its shape lives in protocol/.
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ArchivePolicySchema } from './archive-policy.js';
import { KappaError } from './errors.js';
import { buckets } from './names.js';

export const TopicConfigSchema = z.object({
  partitions: z.number().int().positive(),
  replicas: z.number().int().positive(),
  /** ISO-8601. */
  createdAt: z.string(),
  /**
   * The field of the events' values the topic is partitioned by (`kappa topic create --key`, or
   * the first `kappa produce --key`); absent when unknown. A job keyed by this field reads the
   * topic directly; any other key goes through a repartition stage (job-plan.ts).
   */
  key: z.string().optional(),
  /**
   * When the archiver seals the topic's partitions and how much the streams keep
   * (archive-policy.ts); absent: archived only on demand (`kappa topic archive`), never purged.
   * Optional, so entries written before it and readers built before it agree.
   */
  archive: ArchivePolicySchema.optional(),
});
export type TopicConfig = z.infer<typeof TopicConfigSchema>;

/** The registry entry of a topic, or undefined when the topic does not exist. */
export async function readTopicConfig(nc: NatsConnection, topic: string): Promise<TopicConfig | undefined> {
  let entry;
  try {
    entry = await (await new Kvm(nc).open(buckets.topics)).get(topic);
  } catch {
    return undefined;
  }
  if (!entry || entry.operation !== 'PUT') return undefined;
  const parsed = TopicConfigSchema.safeParse(entry.json());
  if (!parsed.success) {
    throw new KappaError(
      'TOPIC_NOT_FOUND',
      `topic '${topic}' has a malformed registry entry: ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data;
}

/** The partition count of a topic; a clear error when it does not exist. */
export async function topicPartitions(nc: NatsConnection, topic: string): Promise<number> {
  const config = await readTopicConfig(nc, topic);
  if (!config) {
    throw new KappaError(
      'TOPIC_NOT_FOUND',
      `topic '${topic}' does not exist (create it with 'kappa topic create ${topic} --partitions P')`,
    );
  }
  return config.partitions;
}
