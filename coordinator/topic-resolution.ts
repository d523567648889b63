// A job version may be started before anyone names its topic (`kappa start` without --topic) and
// before its table kind is known: both come from the workers that carry it (their registration
// lists each carried version's topic, sink and declaration). Here the leader also plans the
// version's stages, once (protocol/job-plan.ts `planJob`): from its first live carrier's
// declaration and the topics' registry entries, or, for a carrier from before declarations, its
// one topic read directly. A repartitioned plan's topic is created before the plan is stored, so
// a stored plan means its topic exists and every assign of its tasks can carry it.
import type { Logger } from 'pino';
import {
  directPlan,
  jobVersionKey,
  planJob,
  repartitionTopic,
  plannedStages,
  ServingTableKind,
  type JobDeclaration,
  type JobPlan,
  type JobVersionKey,
  type TopicConfig,
} from '../protocol/index.js';
import type { JobVersionRecord } from './cluster-state.js';
import type { VersionRecords } from './leader-state.js';
import type { Member } from './membership.js';

/** What the live carriers of a job version say about it. */
export interface Carrier {
  /** The topic the first live carrier reads (its first source's). */
  topic: string | undefined;
  /** The serving-table kind its carriers write, if they write one (`stream`/`none` write none). */
  table: ServingTableKind | undefined;
  /** How the first live carrier's job reads its topics; undefined for a worker from before plans. */
  declaration: JobDeclaration | undefined;
  /** The topic its `topic` sink writes (sink-topics.ts checks that no two versions of a job share one). */
  sinkTopic?: string;
}

/** Pure: `members` are the live workers, sorted by id, so the first carrier is always the same one. */
export function carrierOf(members: readonly Member[], key: JobVersionKey): Carrier {
  const first = firstCarried(members, key);
  return {
    topic: first?.topic,
    table: carrierTable(members, key),
    declaration: first?.declaration,
    sinkTopic: first?.sinkTopic,
  };
}

function firstCarried(members: readonly Member[], key: JobVersionKey) {
  for (const member of members) {
    const carried = member.registration.carries.find((carry) => jobVersionKey(carry) === key);
    if (carried) return carried;
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

/** What planning a version reads and creates. */
export interface VersionPlanning {
  carrier: (key: JobVersionKey) => Carrier;
  /** The topic's registry entry, or undefined when the topic does not exist (yet). */
  topicConfig: (topic: string) => Promise<TopicConfig | undefined>;
  /** Creates (or finds, with the same partitions) a plan's repartition topic. */
  createRepartitionTopic: (repartition: NonNullable<JobPlan['repartition']>) => Promise<void>;
  /**
   * True when the version's tasks ran before, all in the keyed stage (task records without a
   * stage: a leader from before plans, or a direct plan before a stop and start): their
   * checkpoints are positions in the source topic, so the version is read directly again.
   */
  ranDirect: (key: JobVersionKey) => boolean;
  /**
   * The keyed stage's partition count when the version's tasks ran before behind a repartition
   * topic (task records with a route stage), else undefined: their checkpoints are positions in
   * that topic, so the version keeps it even if a topic has since recorded the job's key.
   */
  ranRepartitioned: (key: JobVersionKey) => number | undefined;
  logger: Logger;
}

export interface TopicResolution extends VersionPlanning {
  state: VersionRecords;
}

/** Fills in the table kind of versions that lack it, and plans every running version that has no plan. */
export async function resolveTopics(resolution: TopicResolution): Promise<void> {
  const { state, carrier } = resolution;
  for (const known of state.versions.values()) {
    let version = known;
    const table = version.table === undefined ? carrier(jobVersionKey(version)).table : undefined;
    if (table !== undefined) {
      version = { ...version, table };
      await state.putVersion(version);
    }
    const planned = await planVersion(resolution, version);
    if (planned !== version) await state.putVersion(planned);
  }
}

/** Whether a version still waits for its plan (topic resolution runs until it has one). */
export function needsPlan(version: JobVersionRecord): boolean {
  return version.state === 'running' && version.plan === undefined;
}

/**
 * The version with its plan (and topic and keyed-stage partitions from it), or the version itself
 * while it cannot be planned yet: no live carrier, a topic missing, or its repartition topic not
 * created. Only running versions are planned.
 */
export async function planVersion(planning: VersionPlanning, version: JobVersionRecord): Promise<JobVersionRecord> {
  if (!needsPlan(version)) return version;
  const fields = { job: version.job, version: version.version };
  const plan = await planOf(planning, version);
  if (plan === undefined) return version;
  if (plan.repartition !== null) {
    try {
      await planning.createRepartitionTopic(plan.repartition);
    } catch (error) {
      planning.logger.error(
        { err: error, ...fields, topic: plan.repartition.topic },
        'cannot create the repartition topic of job version; its tasks wait',
      );
      return version;
    }
  }
  const stages = plannedStages(plan);
  planning.logger.info(
    { ...fields, stages: stages.map((stage) => `${stage.stage ?? 'keyed'}:${stage.topic}/${stage.partitions}`) },
    plan.repartition === null ? 'job version planned: read directly' : 'job version planned: repartitioned',
  );
  const keyed = stages.at(-1)!;
  return { ...version, topic: plan.sources[0]!.topic, partitions: keyed.partitions, plan };
}

async function planOf(planning: VersionPlanning, version: JobVersionRecord): Promise<JobPlan | undefined> {
  const key = jobVersionKey(version);
  const fields = { job: version.job, version: version.version };
  const carrier = planning.carrier(key);
  const declared = carrier.declaration?.sources;
  // A worker from before declarations reads its one topic directly; so does a version that ran
  // directly before (its checkpoints are positions in that topic), whatever its key is now.
  if (declared === undefined || (declared.length === 1 && planning.ranDirect(key))) {
    const topic = declared?.[0]?.topic ?? version.topic ?? carrier.topic;
    if (topic === undefined) return undefined;
    const partitions = (await planning.topicConfig(topic))?.partitions;
    if (partitions === undefined) {
      planning.logger.warn({ ...fields, topic }, 'topic of job version does not exist yet');
      return undefined;
    }
    return directPlan(declared?.[0]?.name ?? topic, topic, partitions);
  }
  const configs = new Map<string, TopicConfig | undefined>();
  for (const source of declared)
    if (!configs.has(source.topic)) configs.set(source.topic, await planning.topicConfig(source.topic));
  const outcome = planJob(version.job, version.version, carrier.declaration!, (topic) => configs.get(topic));
  if ('missingTopic' in outcome) {
    planning.logger.warn({ ...fields, topic: outcome.missingTopic }, 'topic of job version does not exist yet');
    return undefined;
  }
  const keyedBefore = planning.ranRepartitioned(key);
  if (outcome.plan.repartition === null && keyedBefore !== undefined) {
    planning.logger.warn(
      { ...fields, partitions: keyedBefore },
      'job version ran repartitioned before: kept behind its repartition topic, whose positions its checkpoints hold',
    );
    return {
      sources: outcome.plan.sources,
      repartition: { topic: repartitionTopic(version.job, version.version), partitions: keyedBefore },
    };
  }
  if (version.topic !== null && !outcome.plan.sources.some((source) => source.topic === version.topic)) {
    planning.logger.warn(
      { ...fields, topic: version.topic, reads: outcome.plan.sources.map((source) => source.topic) },
      'the topic given at start is not one the job reads; planned from what its workers declare',
    );
  }
  return outcome.plan;
}
