// Task assignment: which live worker runs each task. A pure function of membership, tasks and
// the previous assignment, so the leader can recompute it on every change and a test can
// simulate 1,000 workers. The shell around it turns `moves` into revoke → checkpoint → assign.
//
// What it guarantees (checked by test/assignment.test.ts):
//
// 1. Ownership: every task whose job version some live worker carries gets exactly one owner,
//    and that owner carries the version. The rest are `waiting`.
// 2. Per-version balance: for each job version v with n tasks and carriers of total capacity C,
//    a carrier w of capacity c gets floor(n·c/C) or ceil(n·c/C) of v's tasks. So a replaying v2
//    spreads over every worker that carries it, and equal capacities end within one task of
//    each other. A version with several stages (route and keyed, TaskId.stage) is balanced
//    stage by stage, each stage as a version of its own, so no worker ends up with all the
//    route tasks and another with all the keyed ones.
// 3. Overall balance: a worker's ideal is the sum of its per-version ideals. When every worker
//    carries every version and capacities are equal, each worker's total is floor or ceil of its
//    ideal (provable for the greedy below). With mixed capacities the rounding is steered by
//    each worker's running deficit and then repaired by swapping round-ups, which keeps totals
//    within one task of ideal in every case the property tests have found; with uneven carries
//    it is best effort. Per-version balance (2) always wins over this.
// 4. Stickiness: a previous owner that is alive, still carries the version and is not over its
//    rounded quota keeps the task. Which carriers get the rounded-up share is chosen to favour
//    those that already hold that many, so an unchanged input moves nothing, and a join or
//    leave moves the minimum (the joiner's floor share, or the leaver's tasks) plus the tasks
//    of workers whose rounding flips: none for one version at equal capacities, at most a
//    couple per version otherwise (tested: ≤ 2 per version on random clusters, ≤ 1% at scale).
// 5. Determinism: the output depends only on the contents of the input, never on the order of
//    arrays, Map or Set iteration: workers, versions and tasks are sorted before use.
//
// Cost: O(T log T + V·W log W) for T tasks, W workers, V job versions; no task × worker loop.
import {
  ConfigError,
  jobVersionKey,
  taskKey,
  type JobVersionKey,
  type TaskId,
  type TaskKey,
} from '../protocol/index.js';

export type WorkerId = string;

export interface WorkerSlot {
  id: WorkerId;
  /** Threads: how many tasks the worker runs at full speed at once (≥ 1). */
  capacity: number;
  /** Job versions whose code this worker has loaded, as `${job}/${version}`. */
  carries: ReadonlySet<JobVersionKey>;
}

export interface AssignmentInput {
  tasks: readonly TaskId[];
  /** Live workers only: the shell drops a worker once its session times out. */
  workers: readonly WorkerSlot[];
  /** The assignment in force: task key → worker id. Owners may be dead or stale. */
  previous: ReadonlyMap<TaskKey, WorkerId>;
}

/** A change of owner. `from` is null for a task that had no owner before. */
export interface TaskMove {
  task: TaskKey;
  from: WorkerId | null;
  to: WorkerId;
}

export interface Assignment {
  /** Task key → owner for every task some live worker carries, in task order (job, version, partition). */
  owners: Map<TaskKey, WorkerId>;
  /** Tasks whose job version no live worker carries, in task order (job, version, partition). */
  waiting: TaskKey[];
  /**
   * Tasks whose owner changed, in task order (job, version, partition). The shell must also revoke a task whose
   * previous owner is alive but which is now `waiting` or absent from `tasks`.
   */
  moves: TaskMove[];
}

/** Code-unit order, not locale order: the same on every machine. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Task order: job, version, stage (the keyed stage, without one, first), partition. */
function compareTasks(a: TaskId, b: TaskId): number {
  return (
    compareStrings(a.job, b.job) ||
    compareStrings(a.version, b.version) ||
    compareStrings(a.stage ?? '', b.stage ?? '') ||
    a.partition - b.partition
  );
}

// Floating-point slack when comparing accumulated fractions against 0 and 1.
const EPSILON = 1e-9;

/** The tasks of one stage of one job version: the unit that is balanced over its carriers. */
interface VersionTasks {
  /** `job/version[/stage]`. */
  key: string;
  /** The job version, which carriers name. */
  version: JobVersionKey;
  /** Sorted by partition. */
  tasks: { key: TaskKey; previousOwner: WorkerId | undefined }[];
}

/** One carrier's share of one version's tasks. */
interface Share {
  worker: number;
  /** floor(n·c/C). */
  floor: number;
  /** (n·c mod C) / C: the fractional part of the ideal; 0 means the ideal is whole. */
  fraction: number;
  /** 1 if this carrier gets the rounded-up share. */
  extra: number;
  /** Tasks of this version the worker held before (it is alive and carries the version). */
  held: number;
  /** Rank for the rounded-up share; see `roundUpRank`. */
  rank: number;
  /** deficit + fraction: how far below its overall ideal the worker would be without an extra task. */
  need: number;
}

export function assignTasks(input: AssignmentInput): Assignment {
  const workers = [...input.workers].sort((a, b) => compareStrings(a.id, b.id));
  const workerIndex = new Map<WorkerId, number>();
  for (const [index, worker] of workers.entries()) {
    if (workerIndex.has(worker.id)) {
      throw new ConfigError(`assignment input lists worker '${worker.id}' twice; expected each live worker once`);
    }
    if (!Number.isInteger(worker.capacity) || worker.capacity < 1) {
      throw new ConfigError(`worker '${worker.id}' has capacity ${worker.capacity}; expected an integer ≥ 1`);
    }
    workerIndex.set(worker.id, index);
  }

  const versions = groupByVersion(input.tasks, input.previous);

  // Round the largest versions first: their rounding is the most constrained, and the small
  // ones that follow have the freedom to even out each worker's total.
  const roundingOrder = [...versions].sort((a, b) => b.tasks.length - a.tasks.length || compareStrings(a.key, b.key));
  // deficit[w] = Σ over versions rounded so far of (ideal share − tasks given). Steering the
  // rounded-up shares by it keeps each worker's total near the sum of its ideals (guarantee 3).
  const deficit = new Float64Array(workers.length);
  const sharesOf = new Map<string, Share[]>();
  for (const version of roundingOrder) {
    const shares = versionShares(version, workers, workerIndex, deficit);
    if (shares.length > 0) sharesOf.set(version.key, shares);
  }
  evenOutTotals(sharesOf, deficit);

  const owners = new Map<TaskKey, WorkerId>();
  const waiting: TaskKey[] = [];
  const moves: TaskMove[] = [];
  for (const version of versions) {
    const shares = sharesOf.get(version.key);
    if (shares === undefined) {
      for (const task of version.tasks) waiting.push(task.key);
      continue;
    }
    const quota = new Map(shares.map((share) => [share.worker, share.floor + share.extra]));
    placeVersion(version, quota, workers, workerIndex, owners, moves);
  }
  return { owners, waiting, moves };
}

function groupByVersion(tasks: readonly TaskId[], previous: ReadonlyMap<TaskKey, WorkerId>): VersionTasks[] {
  const sorted = [...tasks].sort(compareTasks);
  const versions: VersionTasks[] = [];
  let current: VersionTasks | undefined;
  let lastKey: TaskKey | undefined;
  for (const task of sorted) {
    const key = taskKey(task);
    if (key === lastKey) continue; // the same task listed twice is one task
    lastKey = key;
    const version = jobVersionKey(task);
    const groupKey = task.stage === undefined ? version : `${version}/${task.stage}`;
    if (current?.key !== groupKey) {
      current = { key: groupKey, version, tasks: [] };
      versions.push(current);
    }
    current.tasks.push({ key, previousOwner: previous.get(key) });
  }
  return versions;
}

/**
 * How many of a version's tasks each carrier gets: floor(n·c/C), plus one for the `n − Σ floor`
 * carriers chosen by `roundUpRank`. Updates `deficit` with what was given. No carriers: [].
 */
function versionShares(
  version: VersionTasks,
  workers: readonly WorkerSlot[],
  workerIndex: ReadonlyMap<WorkerId, number>,
  deficit: Float64Array,
): Share[] {
  const carriers: number[] = [];
  let carriedCapacity = 0;
  for (const [index, worker] of workers.entries()) {
    if (worker.carries.has(version.version)) {
      carriers.push(index);
      carriedCapacity += worker.capacity;
    }
  }
  if (carriers.length === 0) return [];

  const held = new Map<number, number>();
  for (const task of version.tasks) {
    const owner = task.previousOwner === undefined ? undefined : workerIndex.get(task.previousOwner);
    if (owner !== undefined && workers[owner]!.carries.has(version.version)) {
      held.set(owner, (held.get(owner) ?? 0) + 1);
    }
  }

  const taskCount = version.tasks.length;
  const shares: Share[] = [];
  let floors = 0;
  for (const worker of carriers) {
    // Integer arithmetic for the split, so the rounding is exact and the same everywhere.
    const scaled = taskCount * workers[worker]!.capacity;
    const floor = Math.floor(scaled / carriedCapacity);
    const fraction = (scaled - floor * carriedCapacity) / carriedCapacity;
    const share: Share = {
      worker,
      floor,
      fraction,
      extra: 0,
      held: held.get(worker) ?? 0,
      rank: 0,
      need: deficit[worker]! + fraction,
    };
    share.rank = roundUpRank(share);
    shares.push(share);
    floors += floor;
  }
  const roundUps = taskCount - floors;

  // Within a rank the neediest first, then worker id order (workers are sorted by id).
  shares.sort((a, b) => a.rank - b.rank || b.need - a.need || a.worker - b.worker);
  for (const [position, share] of shares.entries()) {
    share.extra = position < roundUps ? 1 : 0;
    deficit[share.worker] = deficit[share.worker]! + share.fraction - share.extra;
  }
  return shares;
}

/**
 * The greedy rounding can leave a worker a whole task off its overall ideal when a late version
 * has too few round-ups for the workers that need one. Repair by handing a round-up of some
 * version from a worker that can spare it to one that needs it (both stay within one task of
 * their ideal for that version). Rarely runs; each swap fixes one worker's total.
 */
function evenOutTotals(sharesOf: ReadonlyMap<string, Share[]>, deficit: Float64Array): void {
  for (let worker = 0; worker < deficit.length; worker++) {
    if (deficit[worker]! >= 1 - EPSILON) swapRoundUp(sharesOf, deficit, worker, 'take');
    else if (deficit[worker]! <= -1 + EPSILON) swapRoundUp(sharesOf, deficit, worker, 'give');
  }
}

function swapRoundUp(
  sharesOf: ReadonlyMap<string, Share[]>,
  deficit: Float64Array,
  worker: number,
  direction: 'take' | 'give',
): void {
  // Map iteration here is over versions in rounding order, which is itself deterministic.
  for (const shares of sharesOf.values()) {
    const own = shares.find((share) => share.worker === worker);
    if (own === undefined || own.fraction === 0 || own.extra !== (direction === 'take' ? 0 : 1)) continue;
    // The partner gives up (or takes) the round-up and must stay strictly within one task.
    const partner = shares.find((share) =>
      direction === 'take'
        ? share.extra === 1 && deficit[share.worker]! < -EPSILON
        : share.extra === 0 && share.fraction > 0 && deficit[share.worker]! > EPSILON,
    );
    if (partner === undefined) continue;
    const delta = direction === 'take' ? 1 : -1;
    own.extra += delta;
    partner.extra -= delta;
    deficit[worker] = deficit[worker]! - delta;
    deficit[partner.worker] = deficit[partner.worker]! + delta;
    return;
  }
}

/**
 * Who gets a rounded-up share, lowest rank first:
 *   0  would fall a whole task below its overall ideal without it (must take it);
 *   1  may take it either way and already holds floor + 1 or more (taking it moves nothing);
 *   2  may take it either way;
 *   3  would rise a whole task above its overall ideal with it;
 *   4  has a whole-number ideal for this version: one more would break per-version balance.
 * Ranks 0–2 keep the overall deficit within (−1, 1); ranks 3–4 are used only when the
 * per-version count leaves no other choice, and 4 never is (Σ fractions = round-ups).
 */
function roundUpRank(share: Share): number {
  if (share.fraction === 0) return 4;
  if (share.need >= 1 - EPSILON) return 0;
  if (share.need <= EPSILON) return 3;
  return share.held > share.floor ? 1 : 2;
}

/**
 * Keeps each task with its previous owner while that owner is under quota (lowest partitions
 * first), then fills the remaining room in worker order. Records owners and moves in partition
 * order, so the whole output is in task order (job, version, partition).
 */
function placeVersion(
  version: VersionTasks,
  quota: ReadonlyMap<number, number>,
  workers: readonly WorkerSlot[],
  workerIndex: ReadonlyMap<WorkerId, number>,
  owners: Map<TaskKey, WorkerId>,
  moves: TaskMove[],
): void {
  const ownerOf = new Int32Array(version.tasks.length).fill(-1);
  const kept = new Map<number, number>();
  for (const [position, task] of version.tasks.entries()) {
    const owner = task.previousOwner === undefined ? undefined : workerIndex.get(task.previousOwner);
    if (owner === undefined) continue;
    // quota has entries only for carriers, so a previous owner that no longer carries has no room.
    const keptSoFar = kept.get(owner) ?? 0;
    if (keptSoFar < (quota.get(owner) ?? 0)) {
      kept.set(owner, keptSoFar + 1);
      ownerOf[position] = owner;
    }
  }

  // Σ quota = task count, so the room left equals the number of tasks not kept.
  let position = 0;
  const receivers = [...quota.keys()].sort((a, b) => a - b);
  for (const worker of receivers) {
    let room = quota.get(worker)! - (kept.get(worker) ?? 0);
    while (room > 0) {
      while (ownerOf[position] !== -1) position++;
      ownerOf[position] = worker;
      room--;
    }
  }

  for (const [position, task] of version.tasks.entries()) {
    const to = workers[ownerOf[position]!]!.id;
    owners.set(task.key, to);
    if (task.previousOwner !== to) moves.push({ task: task.key, from: task.previousOwner ?? null, to });
  }
}
