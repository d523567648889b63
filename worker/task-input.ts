// What one task reads and how it turns messages into keyed events, derived from the version's plan
// (protocol/job-plan.ts) and the task's stage:
// - direct: a keyed task over a source topic (the job's key is the topic's);
// - route: a repartition task over a source partition, publishing each event to the partition of
//   the repartition topic its key hashes to;
// - merged: a keyed task over a partition of the repartition topic, whose watermark is the minimum
//   of the upstream partitions' (upstream-watermarks.ts).
import { plannedStages, stageOf, KappaError, type JobPlan } from '../protocol/index.js';
import type { JobSpec } from './job.js';

export type TaskInput =
  | {
      kind: 'direct';
      /**
       * Partitions of the topic, for the wrong-partition check (an event whose key hashes to another
       * partition is dead-lettered); undefined turns the check off (the test driver).
       */
      partitions: number | undefined;
    }
  | {
      kind: 'route';
      sourceIndex: number;
      targetTopic: string;
      targetPartitions: number;
      /**
       * The largest repartition record the topic takes (the server's max_payload less a bundle's
       * headers); a larger event is dead-lettered `too-large`. Undefined: no limit (`kappa run`).
       */
      maxRecordBytes?: number;
    }
  | { kind: 'merged'; partitions: number; upstreamPartitions: number[] };

/** The input of the task (stage, partition) of a version planned as `plan`; a clear error when job and plan disagree. */
export function taskInputOf(job: JobSpec, plan: JobPlan, stage: string | undefined): TaskInput {
  const planned = stageOf(plan, stage);
  if (!planned) {
    const stages = plannedStages(plan).map((each) => each.stage ?? '(keyed)');
    throw new KappaError(
      'JOB_INVALID',
      `job ${job.name} ${job.version} has no stage ${stage ?? '(keyed)'}; its plan has ${stages.join(', ')}`,
    );
  }
  const names = job.sources.map((source) => source.name).join(',');
  const planned_ = plan.sources.map((source) => source.name).join(',');
  if (names !== planned_) {
    throw new KappaError(
      'JOB_INVALID',
      `job ${job.name} ${job.version} reads sources ${names}, but the version was planned with ${planned_}: every worker must carry the same code of a version`,
    );
  }
  if (plan.repartition === null) return { kind: 'direct', partitions: planned.partitions };
  if (planned.sourceIndex !== undefined) {
    return {
      kind: 'route',
      sourceIndex: planned.sourceIndex,
      targetTopic: plan.repartition.topic,
      targetPartitions: plan.repartition.partitions,
    };
  }
  return {
    kind: 'merged',
    partitions: plan.repartition.partitions,
    upstreamPartitions: plan.sources.map((source) => source.partitions),
  };
}
