// How far each job version has got through its topic, and where its tasks are: the numbers
// behind the coordinator's per-version metrics (replay progress, lag, tasks by state). Pure: the
// caller passes what the workers reported and the partitions' last sequences.
//
// Progress of a version = Σ processed sequence / Σ last sequence over its partitions, where a
// partition's processed sequence is what its current holder reported at the current epoch
// (0 when nobody has reported it yet). Partitions with no events count as done. The ratio is 1
// exactly when every partition's reported sequence reached the stream's last sequence: the
// version has caught up (DESIGN, replay step 4: "when v2's lag is 0 it is live").
import { taskKey, TaskViewState, type TaskKey, type TaskStatus } from '../protocol/index.js';
import type { JobVersionRecord, TaskRecord } from './cluster-state.js';

/** A task's state as the leader sees it: its holder's report, or why there is none yet. */
export type VersionTaskState = TaskViewState;

export const versionTaskStates: readonly VersionTaskState[] = TaskViewState.options;

export interface VersionProgress {
  job: string;
  version: string;
  /** 0..1; 1 when every partition is caught up; undefined while the partitions' ends are unknown. */
  ratio: number | undefined;
  /** Σ (last sequence − processed sequence) over the partitions; undefined like `ratio`. */
  lagMessages: number | undefined;
  /** Σ processed sequence over the partitions; undefined like `ratio`. */
  processedMessages: number | undefined;
  tasks: Record<VersionTaskState, number>;
}

export interface VersionProgressInput {
  version: JobVersionRecord;
  tasks: ReadonlyMap<TaskKey, TaskRecord>;
  /** The status the task's current holder reported at the current epoch, if any. */
  reported: (record: TaskRecord) => TaskStatus | undefined;
  /** Last sequence of each partition's stream (index = partition), or undefined when not read yet. */
  lastSequences: readonly number[] | undefined;
}

export function versionProgress({ version, tasks, reported, lastSequences }: VersionProgressInput): VersionProgress {
  const counts = Object.fromEntries(versionTaskStates.map((state) => [state, 0])) as Record<VersionTaskState, number>;
  const partitions = version.partitions ?? 0;
  const known = lastSequences !== undefined && lastSequences.length >= partitions && version.partitions !== null;
  let processed = 0;
  let total = 0;
  for (let partition = 0; partition < partitions; partition++) {
    const record = tasks.get(taskKey({ job: version.job, version: version.version, partition }));
    const status = record === undefined || record.worker === null ? undefined : reported(record);
    counts[record === undefined || record.worker === null ? 'waiting' : (status?.state ?? 'assigning')]++;
    if (!known) continue;
    const last = lastSequences[partition]!;
    // A restoring or failed task reports no position of its own yet: it counts as not started.
    const sequence =
      status !== undefined && (status.state === 'running' || status.state === 'releasing') ? status.sequence : 0;
    processed += Math.min(sequence, last);
    total += last;
  }
  return {
    job: version.job,
    version: version.version,
    ratio: known ? (total === 0 ? 1 : processed / total) : undefined,
    lagMessages: known ? total - processed : undefined,
    processedMessages: known ? processed : undefined,
    tasks: counts,
  };
}

/** The versions whose topic and partition count are known, by topic: what to read stream ends for. */
export function topicsOf(versions: Iterable<JobVersionRecord>): Map<string, number> {
  const topics = new Map<string, number>();
  for (const version of versions) {
    if (version.topic !== null && version.partitions !== null)
      topics.set(version.topic, Math.max(topics.get(version.topic) ?? 0, version.partitions));
  }
  return topics;
}
