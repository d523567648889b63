// What the leader wants the cluster to run, and the pure step that moves the cluster towards it.
//
// Durable (in KV `buckets.cluster`, see cluster-store.ts): job versions and, per task, its owner
// and epoch. Volatile (leader memory only): which commands were sent when, and which revokes the
// owner has answered. A new leader starts with empty volatile state and the reconcile below
// re-derives everything from heartbeats, so lost messages and leader changes heal by themselves.
//
// Epoch rules (DESIGN: a move is revoke → checkpoint → assign with epoch + 1):
// - A task's epoch increments on every change of holder; a new task starts at epoch 1.
// - A live owner keeps the task until it reports `task.released` at the current epoch, or a
//   heartbeat sent after our revoke no longer lists the task; only then is it assigned on.
// - A dead owner cannot flush, so its tasks are assigned on at once with epoch + 1: its stale
//   epoch keeps it from committing a checkpoint should it come back.
// - Epochs only grow per task, because a checkpoint refuses any epoch below the one it was
//   committed under. A stopped version's task records stay (holder null, epoch kept), so a start
//   continues above them. Where the records were lost (a wiped bucket) or fall behind the
//   checkpoint for any other reason, the holder's claim is fenced and its heartbeat reports
//   `fencedBy` (the checkpoint's epoch): the task is assigned again, to the same holder, above it.
import {
  jobVersionKey,
  plannedStages,
  type AutoCutover,
  taskKey,
  type JobPlan,
  type JobVersionKey,
  type ServingTableKind,
  type StartPosition,
  type TaskId,
  type TaskKey,
  type TaskStatus,
} from '../protocol/index.js';
import { assignTasks, type WorkerId, type WorkerSlot } from './assignment.js';

/** A job version as stored: `running` until `kappa stop`, then `stopping` until its tasks are released. */
export interface JobVersionRecord {
  job: string;
  version: string;
  /** The topic it reads (its first source's); null until the start request or a carrier names it. */
  topic: string | null;
  /** Partitions of its keyed stage (the topic's, or its repartition topic's); null until known. */
  partitions: number | null;
  /**
   * Its stages, decided once by the leader (topic-resolution.ts) and sent with every assign;
   * absent until planned (records from before plans get one on load). No task runs before it.
   */
  plan?: JobPlan;
  from: StartPosition;
  /** `retired`: stopped by `kappa retire`, its table and checkpoints dropped at `retireAtMs`. */
  state: 'running' | 'stopping' | 'retired';
  startedAtMs: number;
  /** The kind of serving table its carriers write (learned from their registration). */
  table?: ServingTableKind;
  /** Set by `kappa replay --cutover auto` until the alias has been flipped to this version. */
  autoCutover?: AutoCutover;
  /** Set by `kappa retire`: when to drop the table and checkpoints once every task is released. */
  retireAtMs?: number;
}

/** Reported state of a version: `waiting-for-capacity` when no live worker carries it (or its topic is unknown). */
export type VersionStatus = 'running' | 'stopping' | 'retired' | 'waiting-for-capacity';

export interface TaskRecord {
  task: TaskId;
  /** Current holder; null when no live worker carries the version. */
  worker: WorkerId | null;
  /** Epoch of the current (or last) holder; 0 for a task never assigned. */
  epoch: number;
}

export interface LiveWorker {
  slot: WorkerSlot;
  /** Tasks in the worker's latest heartbeat; undefined before its first heartbeat. */
  reported: ReadonlyMap<TaskKey, TaskStatus> | undefined;
  reportedAtMs: number;
}

export interface Transit {
  /** `${kind} ${worker} ${task}` → when that command was last sent: resends wait `resendAfterMs`. */
  sentAtMs: Map<string, number>;
  /** Tasks whose holder reported `task.released` at the current epoch. */
  released: Set<TaskKey>;
}

export function emptyTransit(): Transit {
  return { sentAtMs: new Map(), released: new Set() };
}

export type Command =
  | { kind: 'assign'; worker: WorkerId; task: TaskId; epoch: number; from: StartPosition; plan?: JobPlan }
  | { kind: 'revoke'; worker: WorkerId; task: TaskId; epoch: number };

export interface ReconcileInput {
  versions: ReadonlyMap<JobVersionKey, JobVersionRecord>;
  tasks: ReadonlyMap<TaskKey, TaskRecord>;
  workers: readonly LiveWorker[];
  /** Updated in place: sends are recorded, released marks are consumed. */
  transit: Transit;
  nowMs: number;
  resendAfterMs: number;
}

export interface ReconcileResult {
  commands: Command[];
  /** Task records to store (changed owner or epoch; a stopped version's records keep their epoch). */
  puts: TaskRecord[];
  /** Stopping versions with no task held any more: delete them. */
  finishedVersions: JobVersionKey[];
  /** Moves started this round (revokes sent or assignments of a dead owner's tasks). */
  movesStarted: number;
  /** Tasks assigned again to their holder above the epoch that fenced its claim. */
  fencedReassigned: number;
}

/** The tasks of a planned version: one per partition of each of its stages, route stages first. */
export function versionTasks(version: Pick<JobVersionRecord, 'job' | 'version'>, plan: JobPlan): TaskId[] {
  const tasks: TaskId[] = [];
  for (const { stage, partitions } of plannedStages(plan)) {
    for (let partition = 0; partition < partitions; partition++) {
      tasks.push({ job: version.job, version: version.version, partition, ...(stage === undefined ? {} : { stage }) });
    }
  }
  return tasks;
}

/** The tasks the versions should run: every stage's while running and planned, none once stopping. */
export function desiredTasks(versions: ReadonlyMap<JobVersionKey, JobVersionRecord>): TaskId[] {
  const tasks: TaskId[] = [];
  for (const version of versions.values()) {
    if (version.state !== 'running' || version.plan === undefined) continue;
    tasks.push(...versionTasks(version, version.plan));
  }
  return tasks;
}

export function versionStatus(version: JobVersionRecord, workers: readonly WorkerSlot[]): VersionStatus {
  if (version.state !== 'running') return version.state;
  const key = jobVersionKey(version);
  if (version.plan === undefined || !workers.some((worker) => worker.carries.has(key))) return 'waiting-for-capacity';
  return 'running';
}

/**
 * One reconciliation round: compute the target owner of every task with `assignTasks` (sticky:
 * the current holders are `previous`), then emit the commands that move the cluster one step
 * closer, and (re)send what a worker's heartbeat shows it missed. Idempotent: running it again
 * with nothing changed emits only rate-limited resends.
 */
export function reconcile(input: ReconcileInput): ReconcileResult {
  const { tasks, transit, nowMs } = input;
  const result: ReconcileResult = {
    commands: [],
    puts: [],
    finishedVersions: [],
    movesStarted: 0,
    fencedReassigned: 0,
  };
  const workers = new Map(input.workers.map((worker) => [worker.slot.id, worker]));

  const desired = desiredTasks(input.versions);
  const previous = new Map<TaskKey, WorkerId>();
  for (const [key, record] of tasks) if (record.worker !== null) previous.set(key, record.worker);
  const target = assignTasks({ tasks: desired, workers: input.workers.map((worker) => worker.slot), previous }).owners;

  const fromOf = (task: TaskId) => input.versions.get(jobVersionKey(task))?.from ?? { kind: 'earliest' as const };
  // Every assign carries the version's plan: the worker runs the stage the task names from it.
  const assign = (worker: WorkerId, task: TaskId, epoch: number): Command => {
    const plan = input.versions.get(jobVersionKey(task))?.plan;
    return { kind: 'assign', worker, task, epoch, from: fromOf(task), ...(plan ? { plan } : {}) };
  };
  const send = (command: Command, force = false) => {
    const sentKey = `${command.kind} ${command.worker} ${taskKey(command.task)}`;
    const lastSent = transit.sentAtMs.get(sentKey);
    if (!force && lastSent !== undefined && nowMs - lastSent < input.resendAfterMs) return;
    transit.sentAtMs.set(sentKey, nowMs);
    result.commands.push(command);
  };
  const handOver = (record: TaskRecord, to: WorkerId | null, desiredNow: boolean) => {
    const key = taskKey(record.task);
    transit.released.delete(key);
    if (record.worker !== null) transit.sentAtMs.delete(`revoke ${record.worker} ${key}`);
    if (!desiredNow || to === null) {
      // Nobody runs it now; the record keeps its epoch so the next holder goes above it.
      if (record.worker !== null) result.puts.push({ ...record, worker: null });
      return;
    }
    // An earlier revoke of this task on the new holder (a task it ran without a record, revoked
    // by the loop below) is no revoke of this assignment: left in place, revokeAnswered would
    // take the holder's next heartbeat for its answer and move the task to it again at epoch + 1.
    transit.sentAtMs.delete(`revoke ${to} ${key}`);
    const epoch = record.epoch + 1;
    result.puts.push({ task: record.task, worker: to, epoch });
    send(assign(to, record.task, epoch), true);
  };

  const desiredByKey = new Map(desired.map((task) => [taskKey(task), task]));
  const allKeys = new Set<TaskKey>([...desiredByKey.keys(), ...tasks.keys()]);
  for (const key of allKeys) {
    const record = tasks.get(key) ?? { task: desiredByKey.get(key)!, worker: null, epoch: 0 };
    const desiredNow = desiredByKey.has(key);
    const to = target.get(key) ?? null;
    const holder = record.worker === null ? undefined : workers.get(record.worker);

    if (holder === undefined) {
      // No holder, or it is dead and cannot flush: hand over at once.
      if (record.worker !== null && to !== null) result.movesStarted++;
      if (record.worker !== null || to !== null) handOver(record, to, desiredNow);
      continue;
    }
    if (transit.released.has(key) || revokeAnswered(holder, key, record, transit)) {
      handOver(record, to, desiredNow);
      continue;
    }
    if (to === holder.slot.id) {
      const reported = holder.reported?.get(key);
      if (reported?.epoch === record.epoch && reported.fencedBy !== undefined && reported.fencedBy >= record.epoch) {
        // Fenced by its own checkpoint, committed under a higher epoch than this record knows:
        // assign it again above that epoch. (Paced by the holder: one claim and heartbeat per round.)
        const epoch = reported.fencedBy + 1;
        result.puts.push({ ...record, epoch });
        send(assign(holder.slot.id, record.task, epoch), true);
        result.fencedReassigned++;
        continue;
      }
      // Steady state: make sure the holder runs it at the current epoch.
      if (holder.reported !== undefined && (reported === undefined || reported.epoch < record.epoch)) {
        send(assign(holder.slot.id, record.task, record.epoch));
      }
      continue;
    }
    // The holder must flush first: revoke, and hand over once it has released.
    if (!transit.sentAtMs.has(`revoke ${holder.slot.id} ${key}`)) result.movesStarted++;
    send({ kind: 'revoke', worker: holder.slot.id, task: record.task, epoch: record.epoch });
  }

  // A worker running a task it does not hold (a dead worker come back, a lost revoke): revoke it.
  for (const worker of input.workers) {
    for (const [key, status] of worker.reported ?? []) {
      const record = tasks.get(key);
      if (record?.worker === worker.slot.id || status.state === 'releasing') continue;
      send({
        kind: 'revoke',
        worker: worker.slot.id,
        task: {
          job: status.job,
          version: status.version,
          partition: status.partition,
          ...(status.stage === undefined ? {} : { stage: status.stage }),
        },
        epoch: status.epoch,
      });
    }
  }

  const after = new Map(tasks);
  for (const record of result.puts) after.set(taskKey(record.task), record);
  for (const [versionKey, version] of input.versions) {
    if (version.state !== 'stopping') continue;
    const held = [...after.values()].some(
      (record) => jobVersionKey(record.task) === versionKey && record.worker !== null,
    );
    if (!held) result.finishedVersions.push(versionKey);
  }
  return result;
}

/** The holder answered our revoke implicitly: a heartbeat sent after the revoke no longer lists the task. */
function revokeAnswered(holder: LiveWorker, key: TaskKey, record: TaskRecord, transit: Transit): boolean {
  const revokedAtMs = transit.sentAtMs.get(`revoke ${holder.slot.id} ${key}`);
  if (revokedAtMs === undefined || holder.reported === undefined || holder.reportedAtMs <= revokedAtMs) return false;
  const reported = holder.reported.get(key);
  return reported === undefined || reported.epoch < record.epoch;
}
