// How far each job version has got through its topics, and where its tasks are: the numbers
// behind the coordinator's per-version metrics (replay progress, lag, tasks by state). Pure: the
// caller passes what the workers reported and the partitions' last sequences.
//
// Progress of a version = Σ processed sequence / Σ last sequence over the partitions of every
// stage of its plan, where a partition's processed sequence is what its current holder reported
// at the current epoch (0 when nobody has reported it yet). Partitions with no events count as
// done. The ratio is 1 exactly when every task's reported sequence reached its stream's last
// sequence: the version has caught up (DESIGN, replay step 4: "when v2's lag is 0 it is live").
import { plannedStages, taskKey, TaskViewState, type TaskKey, type TaskStatus } from '../protocol/index.js';
import type { JobVersionRecord, TaskRecord } from './cluster-state.js';

/** A task's state as the leader sees it: its holder's report, or why there is none yet. */
export type VersionTaskState = TaskViewState;

export const versionTaskStates: readonly VersionTaskState[] = TaskViewState.options;

/** One stage's share of a version's progress: its tasks against its own topic's partitions. */
export interface StageProgress {
  /** undefined for the keyed stage, `route-<source>` for a route stage (protocol/job-plan.ts). */
  stage: string | undefined;
  /** The topic its tasks read: a source topic, or the version's repartition topic. */
  topic: string;
  partitions: number;
  /** Like the version's, over this stage's partitions only. */
  ratio: number | undefined;
  lagMessages: number | undefined;
  processedMessages: number | undefined;
}

export interface VersionProgress {
  job: string;
  version: string;
  /** 0..1; 1 when every task of every stage is caught up; undefined while a stage's partition ends are unknown. */
  ratio: number | undefined;
  /** Σ (last sequence − processed sequence) over every stage's partitions; undefined like `ratio`. */
  lagMessages: number | undefined;
  /** Σ processed sequence over every stage's partitions; undefined like `ratio`. */
  processedMessages: number | undefined;
  tasks: Record<VersionTaskState, number>;
  /** How many tasks its plan has, over every stage (0 while not planned). */
  taskCount: number;
  /** Each stage of its plan, route stages first; [] while not planned. */
  stages: StageProgress[];
}

export interface VersionProgressInput {
  version: JobVersionRecord;
  tasks: ReadonlyMap<TaskKey, TaskRecord>;
  /** The status the task's current holder reported at the current epoch, if any. */
  reported: (record: TaskRecord) => TaskStatus | undefined;
  /** Last sequence of each partition stream of a topic (index = partition), or undefined when not read yet. */
  lastSequences: (topic: string) => readonly number[] | undefined;
}

/**
 * A version's progress over every stage of its plan. A stage's tasks are measured against their
 * own topic: a route stage's against its source topic, the keyed stage's against the repartition
 * topic (whose end moves while the route tasks write), so the version has caught up only when
 * every stage has.
 */
export function versionProgress({ version, tasks, reported, lastSequences }: VersionProgressInput): VersionProgress {
  const counts = Object.fromEntries(versionTaskStates.map((state) => [state, 0])) as Record<VersionTaskState, number>;
  const stages: StageProgress[] = [];
  let taskCount = 0;
  for (const planned of version.plan === undefined ? [] : plannedStages(version.plan)) {
    const last = lastSequences(planned.topic);
    const known = last !== undefined && last.length >= planned.partitions;
    let processed = 0;
    let total = 0;
    for (let partition = 0; partition < planned.partitions; partition++) {
      taskCount++;
      const task = { job: version.job, version: version.version, partition, stage: planned.stage };
      const record = tasks.get(taskKey(task));
      const status = record === undefined || record.worker === null ? undefined : reported(record);
      counts[record === undefined || record.worker === null ? 'waiting' : (status?.state ?? 'assigning')]++;
      if (!known) continue;
      const end = last[partition]!;
      // A restoring or failed task reports no position of its own yet: it counts as not started.
      const sequence =
        status !== undefined && (status.state === 'running' || status.state === 'releasing') ? status.sequence : 0;
      processed += Math.min(sequence, end);
      total += end;
    }
    stages.push({
      stage: planned.stage,
      topic: planned.topic,
      partitions: planned.partitions,
      ratio: known ? (total === 0 ? 1 : processed / total) : undefined,
      lagMessages: known ? total - processed : undefined,
      processedMessages: known ? processed : undefined,
    });
  }
  const known = stages.length > 0 && stages.every((stage) => stage.ratio !== undefined);
  const processed = stages.reduce((sum, stage) => sum + (stage.processedMessages ?? 0), 0);
  const lag = stages.reduce((sum, stage) => sum + (stage.lagMessages ?? 0), 0);
  return {
    job: version.job,
    version: version.version,
    ratio: known ? (processed + lag === 0 ? 1 : processed / (processed + lag)) : undefined,
    lagMessages: known ? lag : undefined,
    processedMessages: known ? processed : undefined,
    tasks: counts,
    taskCount,
    stages,
  };
}

/** The topics of the running versions' stages, with their partition counts: what to read stream ends for. */
export function topicsOf(versions: Iterable<JobVersionRecord>): Map<string, number> {
  const topics = new Map<string, number>();
  for (const version of versions) {
    // A retired version's repartition topic is deleted; only running versions' progress is shown.
    if (version.state !== 'running' || version.plan === undefined) continue;
    for (const stage of plannedStages(version.plan))
      topics.set(stage.topic, Math.max(topics.get(stage.topic) ?? 0, stage.partitions));
  }
  return topics;
}
