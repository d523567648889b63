// What `kappa status` (and `/v1/status`, and the admin verbs' replies) show: a pure function of
// the leader's cluster state. The leader passes a snapshot; tests build one by hand.
//
// A task's state comes from its holder's latest heartbeat, and only when that heartbeat is at the
// task's current epoch: a report from before a move says nothing about the new assignment.
import {
  jobVersionKey,
  plannedStages,
  taskKey,
  type ClusterStatus,
  type JobVersionKey,
  type JobVersionStatusView,
  type StageStatusView,
  type TaskKey,
  type TaskStatus,
  type TaskStatusView,
  type VersionDiffSummary,
} from '../protocol/index.js';
import type { WorkerId } from './assignment.js';
import { desiredTasks, versionStatus, type JobVersionRecord, type TaskRecord } from './cluster-state.js';
import type { Member } from './membership.js';
import type { VersionProgress } from './version-progress.js';

/** A running version's progress with its ETA (reprocessing.ts), as the leader last computed it. */
export type ProgressWithEta = VersionProgress & { etaSeconds: number | undefined };

export interface ClusterSnapshot {
  nowMs: number;
  leader: ClusterStatus['leader'];
  versions: ReadonlyMap<JobVersionKey, JobVersionRecord>;
  tasks: ReadonlyMap<TaskKey, TaskRecord>;
  /** Live workers, sorted by id (`Membership.live()`). */
  workers: readonly Member[];
  progress: ReadonlyMap<JobVersionKey, ProgressWithEta>;
  /** Job → the version its alias points at. */
  aliases: ReadonlyMap<string, string>;
  /** The latest diff of each `--max-changed` replay against the served version (version-diff.ts). */
  diffs?: ReadonlyMap<JobVersionKey, { summary: VersionDiffSummary }>;
}

export interface StatusFilter {
  /** Only this job's versions and tasks (`status.request.job`); every worker is listed still. */
  job?: string;
}

/** One job version's line in the status, also the body of the start, stop and retire replies. */
export function versionView(
  snapshot: Omit<ClusterSnapshot, 'nowMs' | 'leader'>,
  version: JobVersionRecord,
): JobVersionStatusView {
  const key = jobVersionKey(version);
  const reports = reportsOf(snapshot.workers);
  let tasksAssigned = 0;
  let lagMessages = 0;
  let tasksInArchive = 0;
  /** Stage ('' for the keyed one) → the lag its tasks' holders report. */
  const reportedLag = new Map<string, number>();
  for (const record of snapshot.tasks.values()) {
    if (jobVersionKey(record.task) !== key || record.worker === null) continue;
    tasksAssigned++;
    const reported = reports.get(record.worker)?.get(taskKey(record.task));
    const lag = reported?.lagMessages ?? 0;
    if (reported?.phase === 'archive') tasksInArchive++;
    lagMessages += lag;
    const stage = record.task.stage ?? '';
    reportedLag.set(stage, (reportedLag.get(stage) ?? 0) + lag);
  }
  const progress = snapshot.progress.get(key);
  const diff = snapshot.diffs?.get(key)?.summary;
  // Each stage's lag against its own topic's ends, or what its workers report until those are read.
  const stages: StageStatusView[] | undefined = version.plan
    ? plannedStages(version.plan).map((planned) => ({
        ...(planned.stage === undefined ? {} : { stage: planned.stage }),
        topic: planned.topic,
        partitions: planned.partitions,
        lagMessages:
          progress?.stages.find((measured) => measured.stage === planned.stage)?.lagMessages ??
          reportedLag.get(planned.stage ?? '') ??
          0,
      }))
    : undefined;
  return {
    job: version.job,
    version: version.version,
    topic: version.topic,
    partitions: version.partitions,
    from: version.from,
    state: versionStatus(
      version,
      snapshot.workers.map((member) => member.slot),
    ),
    tasksAssigned,
    lagMessages: progress?.lagMessages ?? lagMessages,
    progress: progress?.ratio ?? null,
    etaSeconds: progress?.etaSeconds ?? null,
    table: version.table ?? null,
    served: snapshot.aliases.get(version.job) === version.version,
    ...(version.autoCutover ? { autoCutover: version.autoCutover } : {}),
    ...(diff ? { diff } : {}),
    ...(tasksInArchive > 0 ? { tasksInArchive } : {}),
    ...(stages ? { stages } : {}),
  };
}

/** The whole cluster as the leader sees it: workers, job versions and every task. */
export function clusterStatus(snapshot: ClusterSnapshot, filter: StatusFilter = {}): ClusterStatus {
  const shown = (job: string) => filter.job === undefined || job === filter.job;
  const reports = reportsOf(snapshot.workers);
  const assignedTo = new Map<WorkerId, number>();
  for (const record of snapshot.tasks.values())
    if (record.worker !== null) assignedTo.set(record.worker, (assignedTo.get(record.worker) ?? 0) + 1);

  const tasks: TaskStatusView[] = [];
  const listed = new Set<TaskKey>();
  // Stopped versions keep their task records (their epochs): only versions still known are shown.
  const records = [...snapshot.tasks.values()].filter((record) => snapshot.versions.has(jobVersionKey(record.task)));
  for (const task of desiredTasks(snapshot.versions))
    if (!snapshot.tasks.has(taskKey(task))) records.push({ task, worker: null, epoch: 0 });
  for (const record of records) {
    const key = taskKey(record.task);
    if (listed.has(key) || !shown(record.task.job)) continue;
    listed.add(key);
    const reported = record.worker === null ? undefined : reports.get(record.worker)?.get(key);
    const current = reported !== undefined && reported.epoch === record.epoch ? reported : undefined;
    tasks.push({
      ...record.task,
      worker: record.worker,
      epoch: record.epoch,
      state: record.worker === null ? 'waiting' : (current?.state ?? 'assigning'),
      sequence: current?.sequence ?? null,
      lagMessages: current?.lagMessages ?? null,
      watermark: current?.watermark ?? null,
      ...(current?.phase === 'archive' ? { phase: 'archive' as const } : {}),
      ...(current?.state === 'failed' && current.error !== undefined ? { error: current.error } : {}),
    });
  }
  tasks.sort((a, b) =>
    a.job < b.job
      ? -1
      : a.job > b.job
        ? 1
        : a.version < b.version
          ? -1
          : a.version > b.version
            ? 1
            : compareStages(a.stage, b.stage) || a.partition - b.partition,
  );

  return {
    leader: snapshot.leader,
    workers: snapshot.workers.map((member) => ({
      workerId: member.slot.id,
      capacity: member.registration.capacity,
      carries: member.registration.carries,
      httpUrl: member.registration.httpUrl,
      tasksAssigned: assignedTo.get(member.slot.id) ?? 0,
      lastHeartbeatAgoMs: snapshot.nowMs - member.lastHeardMs,
    })),
    versions: [...snapshot.versions.values()]
      .filter((version) => shown(version.job))
      .map((version) => versionView(snapshot, version)),
    tasks,
  };
}

/** Route stages (by name) before the keyed stage, as the events flow. */
function compareStages(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  return a < b ? -1 : 1;
}

/** Each live worker's latest heartbeat, by task. */
function reportsOf(workers: readonly Member[]): Map<WorkerId, ReadonlyMap<TaskKey, TaskStatus> | undefined> {
  return new Map(workers.map((member) => [member.slot.id, member.reported]));
}
