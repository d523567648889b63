// A job version may be started before anyone names its topic (`kappa start` without --topic) and
// before its table kind is known: both come from the workers that carry it (their registration
// lists each carried version's topic and sink). The partition count comes from the topic's config.
import type { Logger } from 'pino';
import { jobVersionKey, ServingTableKind, type JobVersionKey } from '../protocol/index.js';
import type { JobVersionRecord } from './cluster-state.js';
import type { VersionRecords } from './leader-state.js';
import type { Member } from './membership.js';

/** What the live carriers of a job version say about it. */
export interface Carrier {
  /** The topic the first live carrier reads. */
  topic: string | undefined;
  /** The serving-table kind its carriers write, if they write one (`stream`/`none` write none). */
  table: ServingTableKind | undefined;
  /** The topic its `topic` sink writes (sink-topics.ts checks that no two versions of a job share one). */
  sinkTopic?: string;
}

/** Pure: `members` are the live workers, sorted by id, so the first carrier is always the same one. */
export function carrierOf(members: readonly Member[], key: JobVersionKey): Carrier {
  return {
    topic: carrierTopic(members, key),
    table: carrierTable(members, key),
    sinkTopic: carrierSinkTopic(members, key),
  };
}

function carrierSinkTopic(members: readonly Member[], key: JobVersionKey): string | undefined {
  for (const member of members) {
    const carried = member.registration.carries.find((carry) => jobVersionKey(carry) === key);
    if (carried) return carried.sinkTopic;
  }
  return undefined;
}

function carrierTopic(members: readonly Member[], key: JobVersionKey): string | undefined {
  for (const member of members) {
    const carried = member.registration.carries.find((carry) => jobVersionKey(carry) === key);
    if (carried) return carried.topic;
  }
  return undefined;
}

function carrierTable(members: readonly Member[], key: JobVersionKey): ServingTableKind | undefined {
  for (const member of members) {
    const sink = member.registration.carries.find((carry) => jobVersionKey(carry) === key)?.sink;
    if (sink !== undefined) return ServingTableKind.safeParse(sink).data;
  }
  return undefined;
}

export interface TopicResolution {
  state: VersionRecords;
  carrier: (key: JobVersionKey) => Carrier;
  /** The topic's partition count, or undefined when the topic does not exist (yet). */
  partitionsOf: (topic: string) => Promise<number | undefined>;
  logger: Logger;
}

/** Fills in the topic (from a carrier), partition count and table kind of versions that lack them. */
export async function resolveTopics({ state, carrier, partitionsOf, logger }: TopicResolution): Promise<void> {
  for (const known of state.versions.values()) {
    let version = known;
    const table = version.table === undefined ? carrier(jobVersionKey(version)).table : undefined;
    if (table !== undefined) {
      version = { ...version, table };
      await state.putVersion(version);
    }
    if (version.partitions !== null) continue;
    const topic = version.topic ?? carrier(jobVersionKey(version)).topic;
    if (topic === undefined) continue;
    const partitions = await partitionsOf(topic);
    if (partitions === undefined) {
      logger.warn({ job: version.job, version: version.version, topic }, 'topic of job version does not exist yet');
      continue;
    }
    const resolved: JobVersionRecord = { ...version, topic, partitions };
    await state.putVersion(resolved);
  }
}
