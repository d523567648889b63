// How a job version reads its topics: directly, or through a repartition stage. A worker carrying
// the job declares how each source is keyed (JobDeclaration, in its registration); the leader
// plans the stages once, when the topics exist, keeps the plan in the version's record and sends
// it with every assignment, so every worker runs the same stages even if a topic's recorded key
// changes later (DESIGN "Keys, stages and several inputs").
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { NAME_PATTERN } from './names.js';
import type { TopicConfig } from './topic-registry.js';

const name = z.string().regex(NAME_PATTERN, "expected 1–64 characters of letters, digits, '_' or '-'");
const partitions = z.number().int().positive();

/**
 * How a job keys one source's events: by the key the producer gave (`event`: the job has no `key`),
 * by a named field of the value (`field`), or by a function whose relation to the producer's key
 * nobody can know (`function`).
 */
export const SourceKeying = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('event') }),
  z.object({ kind: z.literal('field'), field: z.string().min(1) }),
  z.object({ kind: z.literal('function') }),
]);
export type SourceKeying = z.infer<typeof SourceKeying>;

/** What a worker's copy of a job says about its inputs (the job code stays on the worker). */
export const JobDeclaration = z.object({
  sources: z.array(z.object({ name, topic: name, keying: SourceKeying })).min(1),
  /** Partitions of the keyed stage when it is repartitioned (default: the most any source has). */
  partitions: partitions.optional(),
});
export type JobDeclaration = z.infer<typeof JobDeclaration>;

/**
 * The stages of a job version. With `repartition` null the keyed stage reads the single source's
 * topic directly, one task per partition. Otherwise one route task per source partition computes
 * each event's key and publishes it to the version's repartition topic, and the keyed stage reads
 * that topic, one task per partition of it.
 */
export const JobPlan = z.object({
  sources: z.array(z.object({ name, topic: name, partitions })).min(1),
  repartition: z.object({ topic: name, partitions }).nullable(),
});
export type JobPlan = z.infer<typeof JobPlan>;

/** One stage of a plan: its tasks are partitions 0 … partitions − 1 of `topic`. */
export interface PlannedStage {
  /** undefined for the keyed stage, `route-<source>` for a repartition stage. */
  stage: string | undefined;
  topic: string;
  partitions: number;
  /** The source a route stage reads (index into plan.sources); undefined for the keyed stage. */
  sourceIndex: number | undefined;
}

const ROUTE_STAGE_PREFIX = 'route-';

/** The stage name of the route tasks reading `source`. */
export function routeStage(source: string): string {
  return `${ROUTE_STAGE_PREFIX}${source}`;
}

/** Why a declaration cannot be planned yet (a topic missing), or the plan. */
export type PlanOutcome = { plan: JobPlan } | { missingTopic: string };

/**
 * Pure: the plan of a job version. A single source keyed by the producer's key, or by the field the
 * topic records as its key, is read directly (unless the job asks for another partition count);
 * anything else is repartitioned: a key whose relation to the partitioning nobody can vouch for is
 * never trusted to be co-partitioned.
 */
export function planJob(
  job: string,
  version: string,
  declaration: JobDeclaration,
  topicConfig: (topic: string) => TopicConfig | undefined,
): PlanOutcome {
  const sources: JobPlan['sources'] = [];
  for (const source of declaration.sources) {
    const config = topicConfig(source.topic);
    if (!config) return { missingTopic: source.topic };
    sources.push({ name: source.name, topic: source.topic, partitions: config.partitions });
  }
  const only = declaration.sources.length === 1 ? declaration.sources[0]! : undefined;
  if (only) {
    const recordedKey = topicConfig(only.topic)?.key;
    const keyedAsTopic =
      only.keying.kind === 'event' || (only.keying.kind === 'field' && only.keying.field === recordedKey);
    const samePartitions = declaration.partitions === undefined || declaration.partitions === sources[0]!.partitions;
    if (keyedAsTopic && samePartitions) return { plan: { sources, repartition: null } };
  }
  const keyedPartitions = declaration.partitions ?? Math.max(...sources.map((source) => source.partitions));
  return { plan: { sources, repartition: { topic: repartitionTopic(job, version), partitions: keyedPartitions } } };
}

/** The plan of a version that predates plans: its one topic, read directly. */
export function directPlan(source: string, topic: string, topicPartitions: number): JobPlan {
  return { sources: [{ name: source, topic, partitions: topicPartitions }], repartition: null };
}

/** Every stage of a plan, route stages first. */
export function plannedStages(plan: JobPlan): PlannedStage[] {
  if (plan.repartition === null) {
    const source = plan.sources[0]!;
    return [{ stage: undefined, topic: source.topic, partitions: source.partitions, sourceIndex: undefined }];
  }
  return [
    ...plan.sources.map((source, sourceIndex) => ({
      stage: routeStage(source.name),
      topic: source.topic,
      partitions: source.partitions,
      sourceIndex,
    })),
    {
      stage: undefined,
      topic: plan.repartition.topic,
      partitions: plan.repartition.partitions,
      sourceIndex: undefined,
    },
  ];
}

/** The stage of a plan a task belongs to; undefined when the plan has no such stage. */
export function stageOf(plan: JobPlan, stage: string | undefined): PlannedStage | undefined {
  return plannedStages(plan).find((planned) => planned.stage === stage);
}

/**
 * The repartition topic of a job version: `rp_<length of job>_<job>_<version>` (the length keeps
 * `a_b`/`c` and `a`/`b_c` apart, as serving-table buckets do), or a digest of both when that
 * would pass the 64 characters of a topic name. It belongs to the version: a v2 replay writes its
 * own, and retiring the version deletes it.
 */
export function repartitionTopic(job: string, version: string): string {
  const readable = `rp_${job.length}_${job}_${version}`;
  if (readable.length <= 64) return readable;
  return `rp_${createHash('sha256').update(`${job}/${version}`).digest('hex').slice(0, 40)}`;
}

/** Whether a topic is some job version's repartition topic (internal: `kappa topic list` marks it). */
export function isRepartitionTopic(topic: string): boolean {
  return /^rp_(\d+_|[0-9a-f]{40}$)/.test(topic);
}
