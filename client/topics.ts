// Topics: create, list, describe and delete. A topic of P partitions is P JetStream streams
// (`streams.partition(topic, p)` holding `subjects.partition(topic, p)`), so a stream sequence is
// a partition offset (see README.md for the measured reason), plus one entry in the registry
// bucket `buckets.topics` from which every process learns P and the field the events are
// partitioned by (`key`), from which the leader decides whether a job reads the topic directly.
// Names starting `rp_` belong to the job versions' repartition topics (protocol/job-plan.ts),
// which the coordinator creates (`internal`, with an age limit) and deletes when it retires them.
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
  isRepartitionTopic,
  KappaError,
  streams,
  subjects,
  TopicConfigSchema,
  type ArchivePolicy,
  type TopicConfig,
} from '../protocol/index.js';

export const DEFAULT_PARTITIONS = 64;
export const DEFAULT_REPLICAS = 1;
/** Window in which the server drops a second message with the same Nats-Msg-Id. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60_000;
/**
 * How long a repartition topic keeps a routed event unless a keyed task purged it sooner (after
 * its checkpoint): a bound on the disk a version whose keyed tasks stall can fill.
 */
export const DEFAULT_REPARTITION_MAX_AGE_MS = 7 * 24 * 3_600_000;
/** Partition numbers become subject tokens and stream names; beyond this, creation takes minutes. */
const MAX_PARTITIONS = 4096;
/** The namespace of repartition topics: only Kappa (`internal`) creates topics in it. */
const INTERNAL_PREFIX = 'rp_';
/** A key field is a (dotted) path into the event's value; longer than this is a mistake. */
const MAX_KEY_FIELD_CHARS = 256;

export interface TopicSpec {
  name: string;
  partitions?: number;
  replicas?: number;
  duplicateWindowMs?: number;
  /** The field of the events' values the topic is partitioned by, recorded in the registry. */
  key?: string;
  /** Kappa's own topic (a job version's repartition topic): the only way to a name starting `rp_`. */
  internal?: boolean;
  /** Age limit of each partition stream (JetStream max_age); default none, 7 days for a repartition topic. */
  maxAgeMs?: number;
  /** When the archiver seals the partitions and what the streams keep (`--archive-after`, `--hot-retention`). */
  archive?: ArchivePolicy;
}

/** What the registry holds for a topic (shape defined in protocol/topic-registry.ts). */
export type { TopicConfig } from '../protocol/index.js';

export interface TopicSummary extends TopicConfig {
  name: string;
  /** A job version's repartition topic (`rp_…`), created and deleted by the coordinator. */
  internal: boolean;
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
 * The producer's key disagrees with the field the topic records: jobs reading the topic directly
 * by the recorded field would find events in partitions they do not own. A usage error (exit 2).
 */
export class TopicKeyMismatchError extends ConfigError {
  constructor(topic: string, recorded: string, requested: string) {
    super(
      `topic ${topic} is partitioned by '${recorded}'; events keyed by '${requested}' would land in partitions that jobs keyed by '${recorded}' read directly. Key by '${recorded}', or produce to another topic ('kappa topic create <name> --key ${requested}')`,
    );
  }
}

/**
 * Creates the topic's partition streams, then its registry entry (last, so a registry entry
 * means every stream exists; a creation interrupted half-way is completed by running it again).
 * Creating an existing topic with the same partition count does nothing, except record `key`
 * when the topic has none (a different recorded key is a TopicKeyMismatchError).
 */
export async function createTopic(nc: NatsConnection, spec: TopicSpec): Promise<TopicSummary> {
  const partitions = spec.partitions ?? DEFAULT_PARTITIONS;
  const replicas = spec.replicas ?? DEFAULT_REPLICAS;
  assertName('topic', spec.name);
  assertCount('partitions', partitions, MAX_PARTITIONS);
  assertCount('replicas', replicas, 5);
  if (spec.name.startsWith(INTERNAL_PREFIX) && !spec.internal) {
    throw new ConfigError(
      `topic name ${JSON.stringify(spec.name)} starts with '${INTERNAL_PREFIX}', the namespace of the repartition topics Kappa creates for job versions; choose another name`,
    );
  }
  if (spec.key !== undefined) assertKeyField(spec.key);
  const maxAgeMs = spec.maxAgeMs ?? (isRepartitionTopic(spec.name) ? DEFAULT_REPARTITION_MAX_AGE_MS : 0);
  if (!Number.isInteger(maxAgeMs) || maxAgeMs < 0)
    throw new ConfigError(`maxAgeMs must be a whole number of ms ≥ 0 (0: no limit), found ${maxAgeMs}`);

  const registry = await openRegistry(nc, replicas);
  const existing = await readConfig(registry, spec.name);
  if (existing) return existingTopic(nc, spec, existing, partitions);

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
      max_age: nanos(maxAgeMs),
    });
  }

  const config: TopicConfig = {
    partitions,
    replicas,
    createdAt: new Date().toISOString(),
    ...(spec.key === undefined ? {} : { key: spec.key }),
    ...(spec.archive === undefined ? {} : { archive: spec.archive }),
  };
  try {
    await registry.create(spec.name, JSON.stringify(config));
  } catch (error) {
    // Another process registered the topic between our read and our write.
    const winner = await readConfig(registry, spec.name);
    if (!winner) throw error;
    return existingTopic(nc, spec, winner, partitions);
  }
  return summary(spec.name, config);
}

/** `createTopic` of a topic that exists: the same partition count, and its key recorded if asked. */
async function existingTopic(
  nc: NatsConnection,
  spec: TopicSpec,
  existing: TopicConfig,
  partitions: number,
): Promise<TopicSummary> {
  if (existing.partitions !== partitions) throw new TopicExistsError(spec.name, existing.partitions, partitions);
  let config = existing;
  if (spec.key !== undefined && existing.key !== spec.key) config = await recordTopicKey(nc, spec.name, spec.key);
  if (spec.archive !== undefined) config = await recordArchivePolicy(nc, spec.name, spec.archive);
  return summary(spec.name, config);
}

/**
 * Records (or replaces) a topic's archive policy: compare-and-set on the entry's revision, read
 * again when another writer came first. Returns the entry as written.
 */
export async function recordArchivePolicy(
  nc: NatsConnection,
  topic: string,
  policy: ArchivePolicy,
): Promise<TopicConfig> {
  assertName('topic', topic);
  const registry = await openRegistry(nc);
  for (let attempt = 0; ; attempt++) {
    const entry = await registry.get(topic);
    if (!entry || entry.operation !== 'PUT') throw new TopicNotFoundError(topic);
    const config: TopicConfig = { ...parseConfig(topic, entry.json()), archive: policy };
    try {
      await registry.update(topic, JSON.stringify(config), entry.revision);
      return config;
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
}

/**
 * Records the field a topic is partitioned by when the registry has none (compare-and-set on the
 * entry's revision, so two producers racing to record different keys cannot both win); returns the
 * entry. A topic that records another key refuses with TopicKeyMismatchError.
 */
export async function recordTopicKey(nc: NatsConnection, topic: string, key: string): Promise<TopicConfig> {
  assertName('topic', topic);
  assertKeyField(key);
  const registry = await openRegistry(nc);
  for (let attempt = 0; ; attempt++) {
    const entry = await registry.get(topic);
    if (!entry || entry.operation !== 'PUT') throw new TopicNotFoundError(topic);
    const config = parseConfig(topic, entry.json());
    if (config.key === key) return config;
    if (config.key !== undefined) throw new TopicKeyMismatchError(topic, config.key, key);
    const keyed: TopicConfig = { ...config, key };
    try {
      await registry.update(topic, JSON.stringify(keyed), entry.revision);
      return keyed;
    } catch (error) {
      // Someone wrote the entry since we read it: read it again (a bounded number of times).
      if (attempt >= 5) throw error;
    }
  }
}

/** The partition count and replicas of a topic, as every process must agree on them. */
export async function getTopic(nc: NatsConnection, name: string): Promise<TopicConfig> {
  assertName('topic', name);
  const registry = await openRegistry(nc);
  const config = await readConfig(registry, name);
  if (!config) throw new TopicNotFoundError(name);
  return config;
}

/** Whether a topic is registered (every stream of it was created). */
export async function topicExists(nc: NatsConnection, name: string): Promise<boolean> {
  assertName('topic', name);
  return (await readConfig(await openRegistry(nc), name)) !== undefined;
}

export async function listTopics(nc: NatsConnection): Promise<TopicSummary[]> {
  const registry = await openRegistry(nc);
  const names: string[] = [];
  for await (const key of await registry.keys()) names.push(key);
  const topics: TopicSummary[] = [];
  for (const name of names.sort()) {
    const config = await readConfig(registry, name);
    if (config) topics.push(summary(name, config));
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
  return { ...summary(name, config), partitionStates, totals };
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

function summary(name: string, config: TopicConfig): TopicSummary {
  return { name, ...config, internal: isRepartitionTopic(name) };
}

async function readConfig(registry: KV, name: string): Promise<TopicConfig | undefined> {
  const entry = await registry.get(name);
  if (!entry || entry.operation !== 'PUT') return undefined;
  return parseConfig(name, entry.json());
}

function parseConfig(name: string, value: unknown): TopicConfig {
  const parsed = TopicConfigSchema.safeParse(value);
  if (!parsed.success) {
    throw new KappaError(
      'PROTOCOL_SCHEMA',
      `registry entry of topic ${JSON.stringify(name)} in bucket ${buckets.topics} is not a topic config: ${parsed.error.message}`,
    );
  }
  return parsed.data;
}

function assertKeyField(key: string): void {
  if (key.length === 0 || key.length > MAX_KEY_FIELD_CHARS || key.trim() !== key) {
    throw new ConfigError(
      `a topic's key must be the name (or dotted path) of a field, 1–${MAX_KEY_FIELD_CHARS} characters without surrounding spaces, found ${JSON.stringify(key)}`,
    );
  }
}

function assertCount(field: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(`${field} must be an integer from 1 to ${max}, found ${value}`);
  }
}

function isStreamNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}
