// Topics: create, list, describe and delete. A topic of P partitions is P JetStream streams
// (`streams.partition(topic, p)` holding `subjects.partition(topic, p)`), so a stream sequence is
// a partition offset (see README.md for the measured reason), plus one entry in the registry
// bucket `buckets.topics` from which every process learns P.
import {
  jetstreamManager,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  assertName,
  buckets,
  ConfigError,
  KappaError,
  streams,
  subjects,
  TopicConfigSchema,
  type TopicConfig,
} from '../protocol/index.js';

export const DEFAULT_PARTITIONS = 64;
export const DEFAULT_REPLICAS = 1;
/** Window in which the server drops a second message with the same Nats-Msg-Id. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60_000;
/** Partition numbers become subject tokens and stream names; beyond this, creation takes minutes. */
const MAX_PARTITIONS = 4096;

export interface TopicSpec {
  name: string;
  partitions?: number;
  replicas?: number;
  duplicateWindowMs?: number;
}

/** What the registry holds for a topic (shape defined in protocol/topic-registry.ts). */
export type { TopicConfig } from '../protocol/index.js';

export interface TopicSummary extends TopicConfig {
  name: string;
}

export interface PartitionState {
  partition: number;
  stream: string;
  /** 0 while the partition is empty. */
  firstSequence: number;
  lastSequence: number;
  messages: number;
  bytes: number;
}

export interface TopicDescription extends TopicSummary {
  partitionStates: PartitionState[];
  totals: { messages: number; bytes: number };
}

export class TopicNotFoundError extends KappaError {
  constructor(topic: string) {
    super(
      'TOPIC_NOT_FOUND',
      `topic ${JSON.stringify(topic)} does not exist (create it with 'kappa topic create ${topic}')`,
    );
  }
}

export class TopicExistsError extends KappaError {
  constructor(topic: string, existing: number, requested: number) {
    super(
      'TOPIC_EXISTS',
      `topic ${JSON.stringify(topic)} already exists with ${existing} partitions, ${requested} were requested (the partition count of a topic is fixed)`,
    );
  }
}

/**
 * Creates the topic's partition streams, then its registry entry (last, so a registry entry
 * means every stream exists; a creation interrupted half-way is completed by running it again).
 * Creating an existing topic with the same partition count does nothing.
 */
export async function createTopic(nc: NatsConnection, spec: TopicSpec): Promise<TopicSummary> {
  const partitions = spec.partitions ?? DEFAULT_PARTITIONS;
  const replicas = spec.replicas ?? DEFAULT_REPLICAS;
  assertName('topic', spec.name);
  assertCount('partitions', partitions, MAX_PARTITIONS);
  assertCount('replicas', replicas, 5);

  const registry = await openRegistry(nc, replicas);
  const existing = await readConfig(registry, spec.name);
  if (existing) {
    if (existing.partitions !== partitions) throw new TopicExistsError(spec.name, existing.partitions, partitions);
    return { name: spec.name, ...existing };
  }

  const jsm = await jetstreamManager(nc);
  const duplicateWindow = nanos(spec.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS);
  // Sequential: the server serialises stream creation anyway, and 64 concurrent requests only
  // risk API timeouts on a loaded server.
  for (let partition = 0; partition < partitions; partition++) {
    await jsm.streams.add({
      name: streams.partition(spec.name, partition),
      subjects: [subjects.partition(spec.name, partition)],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      duplicate_window: duplicateWindow,
    });
  }

  const config: TopicConfig = { partitions, replicas, createdAt: new Date().toISOString() };
  try {
    await registry.create(spec.name, JSON.stringify(config));
  } catch (error) {
    // Another process registered the topic between our read and our write.
    const winner = await readConfig(registry, spec.name);
    if (!winner) throw error;
    if (winner.partitions !== partitions) throw new TopicExistsError(spec.name, winner.partitions, partitions);
    return { name: spec.name, ...winner };
  }
  return { name: spec.name, ...config };
}

/** The partition count and replicas of a topic, as every process must agree on them. */
export async function getTopic(nc: NatsConnection, name: string): Promise<TopicConfig> {
  assertName('topic', name);
  const registry = await openRegistry(nc);
  const config = await readConfig(registry, name);
  if (!config) throw new TopicNotFoundError(name);
  return config;
}

export async function listTopics(nc: NatsConnection): Promise<TopicSummary[]> {
  const registry = await openRegistry(nc);
  const names: string[] = [];
  for await (const key of await registry.keys()) names.push(key);
  const topics: TopicSummary[] = [];
  for (const name of names.sort()) {
    const config = await readConfig(registry, name);
    if (config) topics.push({ name, ...config });
  }
  return topics;
}

export async function describeTopic(nc: NatsConnection, name: string): Promise<TopicDescription> {
  const config = await getTopic(nc, name);
  const jsm = await jetstreamManager(nc);
  const partitionStates = await Promise.all(
    Array.from({ length: config.partitions }, (_, partition) => partitionState(jsm, name, partition)),
  );
  const totals = { messages: 0, bytes: 0 };
  for (const state of partitionStates) {
    totals.messages += state.messages;
    totals.bytes += state.bytes;
  }
  return { name, ...config, partitionStates, totals };
}

/**
 * Deletes the partition streams, then the registry entry: a deletion interrupted half-way
 * leaves the topic registered, so running it again finishes the job.
 */
export async function deleteTopic(nc: NatsConnection, name: string): Promise<void> {
  const config = await getTopic(nc, name);
  const jsm = await jetstreamManager(nc);
  for (let partition = 0; partition < config.partitions; partition++) {
    try {
      await jsm.streams.delete(streams.partition(name, partition));
    } catch (error) {
      if (!isStreamNotFound(error)) throw error;
    }
  }
  const registry = await openRegistry(nc);
  await registry.purge(name);
}

async function partitionState(jsm: JetStreamManager, topic: string, partition: number): Promise<PartitionState> {
  const stream = streams.partition(topic, partition);
  try {
    const { state } = await jsm.streams.info(stream);
    const empty = state.messages === 0;
    return {
      partition,
      stream,
      firstSequence: empty ? 0 : state.first_seq,
      lastSequence: state.last_seq,
      messages: state.messages,
      bytes: state.bytes,
    };
  } catch (error) {
    if (isStreamNotFound(error)) {
      throw new KappaError(
        'TOPIC_NOT_FOUND',
        `topic ${JSON.stringify(topic)} is registered but its stream ${stream} (partition ${partition}) is missing`,
        { cause: error },
      );
    }
    throw error;
  }
}

async function openRegistry(nc: NatsConnection, replicas = DEFAULT_REPLICAS): Promise<KV> {
  // create() binds to the bucket when it exists; reads then work on a fresh server too.
  return new Kvm(nc).create(buckets.topics, { history: 1, replicas, storage: StorageType.File });
}

async function readConfig(registry: KV, name: string): Promise<TopicConfig | undefined> {
  const entry = await registry.get(name);
  if (!entry || entry.operation !== 'PUT') return undefined;
  const parsed = TopicConfigSchema.safeParse(entry.json());
  if (!parsed.success) {
    throw new KappaError(
      'PROTOCOL_SCHEMA',
      `registry entry of topic ${JSON.stringify(name)} in bucket ${buckets.topics} is not a topic config: ${parsed.error.message}`,
    );
  }
  return parsed.data;
}

function assertCount(field: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(`${field} must be an integer from 1 to ${max}, found ${value}`);
  }
}

function isStreamNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}
