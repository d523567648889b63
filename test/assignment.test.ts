import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assignTasks,
  type Assignment,
  type AssignmentInput,
  type WorkerId,
  type WorkerSlot,
} from '../coordinator/assignment.js';
import { ConfigError, jobVersionKey, taskKey, type TaskId, type TaskKey } from '../protocol/index.js';

function partitions(job: string, version: string, count: number): TaskId[] {
  return Array.from({ length: count }, (_, partition) => ({ job, version, partition }));
}

function worker(id: string, capacity: number, carries: Iterable<string>): WorkerSlot {
  return { id, capacity, carries: new Set(carries) };
}

function equalWorkers(count: number, carries: string[], capacity = 1): WorkerSlot[] {
  return Array.from({ length: count }, (_, i) => worker(`w${String(i).padStart(4, '0')}`, capacity, carries));
}

function tasksOf(result: Assignment, workerId: WorkerId, version?: string): number {
  let count = 0;
  for (const [task, owner] of result.owners) {
    if (owner === workerId && (version === undefined || task.startsWith(`${version}/`))) count++;
  }
  return count;
}

function versionsOf(tasks: readonly TaskId[]): string[] {
  return [...new Set(tasks.map(jobVersionKey))].sort();
}

/** Ideal share of a version for each of its carriers: n·c / C. */
function idealShares(input: AssignmentInput, version: string): Map<WorkerId, number> {
  const count = new Set(input.tasks.filter((t) => jobVersionKey(t) === version).map(taskKey)).size;
  const carriers = input.workers.filter((w) => w.carries.has(version));
  const capacity = carriers.reduce((sum, w) => sum + w.capacity, 0);
  return new Map(carriers.map((w) => [w.id, (count * w.capacity) / capacity]));
}

/** Rules that hold for every input: ownership, per-version balance, stickiness, moves. */
function expectValid(input: AssignmentInput, result: Assignment): void {
  const live = new Map(input.workers.map((w) => [w.id, w]));
  const allTasks = new Set(input.tasks.map(taskKey));
  const waiting = new Set(result.waiting);
  expect(waiting.size).toBe(result.waiting.length);
  expect(result.owners.size + waiting.size).toBe(allTasks.size);
  for (const task of input.tasks) {
    const key = taskKey(task);
    const owner = result.owners.get(key);
    const carried = input.workers.some((w) => w.carries.has(jobVersionKey(task)));
    if (carried) {
      expect(owner, `${key} has an owner`).toBeDefined();
      expect(live.get(owner!)?.carries.has(jobVersionKey(task)), `${key} owned by a live carrier`).toBe(true);
    } else {
      expect(waiting.has(key), `${key} waits for a carrier`).toBe(true);
    }
  }

  for (const version of versionsOf(input.tasks)) {
    for (const [id, ideal] of idealShares(input, version)) {
      const count = tasksOf(result, id, version);
      expect(count, `${id} share of ${version}`).toBeGreaterThanOrEqual(Math.floor(ideal));
      expect(count, `${id} share of ${version}`).toBeLessThanOrEqual(Math.ceil(ideal));
    }
  }

  const expectedMoves = [...result.owners]
    .filter(([task, owner]) => input.previous.get(task) !== owner)
    .map(([task, to]) => ({ task, from: input.previous.get(task) ?? null, to }));
  expect(result.moves).toEqual(expectedMoves);

  // Sticky: a task leaves a live previous owner that still carries it only when that owner
  // is full with tasks it already had (so it was at or over its quota).
  for (const move of result.moves) {
    const from = move.from === null ? undefined : live.get(move.from);
    const version = move.task.slice(0, move.task.lastIndexOf('/'));
    if (from === undefined || !from.carries.has(version)) continue;
    for (const [task, owner] of result.owners) {
      if (owner === from.id && task.startsWith(`${version}/`)) {
        expect(input.previous.get(task), `${from.id} kept ${task} rather than ${move.task}`).toBe(from.id);
      }
    }
  }
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const copy = [...items];
  let state = seed >>> 0 || 1;
  for (let i = copy.length - 1; i > 0; i--) {
    state = (state * 1664525 + 1013904223) >>> 0;
    const j = state % (i + 1);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

const VERSIONS = ['orders/v1', 'orders/v2', 'clicks/v7'];

/** Random clusters: capacities 1–8, random carries, previous owners alive, dead or stale. */
const cluster = fc
  .record({
    taskCounts: fc.tuple(fc.nat(96), fc.nat(96), fc.nat(32)),
    workers: fc.array(
      fc.record({
        capacity: fc.integer({ min: 1, max: 8 }),
        carries: fc.oneof(fc.constant(VERSIONS), fc.subarray(VERSIONS)),
      }),
      { maxLength: 16 },
    ),
    previousSeed: fc.array(fc.nat(40), { maxLength: 224 }),
    orderSeed: fc.nat(),
  })
  .map(({ taskCounts, workers, previousSeed, orderSeed }): AssignmentInput & { orderSeed: number } => {
    const tasks = VERSIONS.flatMap((version, i) => {
      const [job, name] = version.split('/') as [string, string];
      return partitions(job, name, taskCounts[i]!);
    });
    const slots = workers.map((w, i) => worker(`w${i}`, w.capacity, w.carries));
    // Ids past the live workers are dead owners; live ones may no longer carry the version.
    const previous = new Map<TaskKey, WorkerId>();
    for (const [i, owner] of previousSeed.entries()) {
      const task = tasks[i];
      if (task !== undefined && owner < 24) previous.set(taskKey(task), `w${owner}`);
    }
    return { tasks, workers: slots, previous, orderSeed };
  });

/** The same cluster with every worker carrying every version. */
function carryingAll(input: AssignmentInput): AssignmentInput {
  return { ...input, workers: input.workers.map((w) => worker(w.id, w.capacity, VERSIONS)) };
}

describe('assignTasks', () => {
  it('assigns every carried task once to a live carrier, balanced per version and sticky, for random clusters', () => {
    fc.assert(
      fc.property(cluster, (input) => {
        expectValid(input, assignTasks(input));
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same answer whatever the order of workers, tasks, previous owners and carries', () => {
    fc.assert(
      fc.property(cluster, (input) => {
        const reordered: AssignmentInput = {
          tasks: shuffled(input.tasks, input.orderSeed),
          workers: shuffled(input.workers, input.orderSeed + 1).map((w) =>
            worker(w.id, w.capacity, shuffled([...w.carries], input.orderSeed + 2)),
          ),
          previous: new Map(shuffled([...input.previous], input.orderSeed + 3)),
        };
        const a = assignTasks(input);
        const b = assignTasks(reordered);
        expect([...b.owners]).toEqual([...a.owners]);
        expect(b.waiting).toEqual(a.waiting);
        expect(b.moves).toEqual(a.moves);
      }),
      { numRuns: 200 },
    );
  });

  it('moves nothing when assigning again with no change', () => {
    fc.assert(
      fc.property(cluster, (input) => {
        const first = assignTasks(input);
        const second = assignTasks({ ...input, previous: first.owners });
        expect(second.moves).toEqual([]);
        expect([...second.owners]).toEqual([...first.owners]);
      }),
      { numRuns: 200 },
    );
  });

  it('keeps every worker within one task of its overall ideal when all carry every version', () => {
    fc.assert(
      fc.property(cluster.map(carryingAll), (uniform) => {
        const result = assignTasks(uniform);
        const total = new Set(uniform.tasks.map(taskKey)).size;
        const capacity = uniform.workers.reduce((sum, w) => sum + w.capacity, 0);
        for (const w of uniform.workers) {
          const ideal = (total * w.capacity) / capacity;
          expect(tasksOf(result, w.id)).toBeGreaterThanOrEqual(Math.floor(ideal));
          expect(tasksOf(result, w.id)).toBeLessThanOrEqual(Math.ceil(ideal));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('balances equal-capacity workers within one task of each other per version and overall', () => {
    fc.assert(
      fc.property(cluster, fc.integer({ min: 1, max: 8 }), (input, capacity) => {
        const equal = { ...input, workers: input.workers.map((w) => worker(w.id, capacity, VERSIONS)) };
        if (equal.workers.length === 0) return;
        const result = assignTasks(equal);
        for (const version of [undefined, ...VERSIONS]) {
          const counts = equal.workers.map((w) => tasksOf(result, w.id, version));
          expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('moves at most the minimum plus two tasks per version when a worker joins', () => {
    fc.assert(
      fc.property(cluster.map(carryingAll), fc.integer({ min: 1, max: 8 }), (input, joinerCapacity) => {
        const before = assignTasks({ ...input, previous: new Map() });
        const joiner = worker('joiner', joinerCapacity, VERSIONS);
        const after = assignTasks({ ...input, workers: [...input.workers, joiner], previous: before.owners });
        const capacity = input.workers.reduce((sum, w) => sum + w.capacity, 0) + joinerCapacity;
        // The joiner must receive at least floor(n·c/C) of each version: those moves are unavoidable.
        const minimum = VERSIONS.reduce(
          (sum, v) =>
            sum + Math.floor((input.tasks.filter((t) => jobVersionKey(t) === v).length * joinerCapacity) / capacity),
          0,
        );
        expect(after.moves.length).toBeLessThanOrEqual(minimum + 2 * VERSIONS.length);
      }),
      { numRuns: 300 },
    );
  });

  it('moves the leaver’s tasks plus at most two per version when a worker leaves', () => {
    fc.assert(
      fc.property(cluster.map(carryingAll), fc.nat(), (input, pick) => {
        if (input.workers.length < 2) return;
        const before = assignTasks({ ...input, previous: new Map() });
        const leaver = input.workers[pick % input.workers.length]!;
        const after = assignTasks({
          ...input,
          workers: input.workers.filter((w) => w !== leaver),
          previous: before.owners,
        });
        const orphans = [...before.owners].filter(([, owner]) => owner === leaver.id).map(([task]) => task);
        const moved = new Set(after.moves.map((m) => m.task));
        for (const task of orphans) expect(moved.has(task)).toBe(true);
        expect(after.moves.length).toBeLessThanOrEqual(orphans.length + 2 * VERSIONS.length);
      }),
      { numRuns: 300 },
    );
  });

  it('never gives a task to a worker that does not carry its version', () => {
    const input: AssignmentInput = {
      tasks: [...partitions('orders', 'v1', 8), ...partitions('orders', 'v2', 8)],
      workers: [worker('old', 4, ['orders/v1']), worker('new', 4, ['orders/v2'])],
      previous: new Map([['orders/v2/0', 'old']]),
    };
    const result = assignTasks(input);
    expect(tasksOf(result, 'old', 'orders/v1')).toBe(8);
    expect(tasksOf(result, 'new', 'orders/v2')).toBe(8);
    expect(result.owners.get('orders/v2/0')).toBe('new');
    expect(result.moves).toContainEqual({ task: 'orders/v2/0', from: 'old', to: 'new' });
  });

  it('lists tasks of a version no live worker carries as waiting', () => {
    const result = assignTasks({
      tasks: [...partitions('orders', 'v1', 2), ...partitions('orders', 'v3', 2)],
      workers: [worker('a', 1, ['orders/v1'])],
      previous: new Map([['orders/v3/1', 'gone']]),
    });
    expect(result.waiting).toEqual(['orders/v3/0', 'orders/v3/1']);
    expect([...result.owners.keys()]).toEqual(['orders/v1/0', 'orders/v1/1']);
  });

  it('spreads a replaying v2 over every worker while v1 keeps its owners', () => {
    const workers = equalWorkers(8, ['orders/v1'], 2);
    const v1 = partitions('orders', 'v1', 64);
    const live = assignTasks({ tasks: v1, workers, previous: new Map() });
    const withV2 = workers.map((w) => worker(w.id, w.capacity, ['orders/v1', 'orders/v2']));
    const replay = assignTasks({
      tasks: [...v1, ...partitions('orders', 'v2', 64)],
      workers: withV2,
      previous: live.owners,
    });
    expect(replay.moves.every((m) => m.from === null && m.task.startsWith('orders/v2/'))).toBe(true);
    for (const w of withV2) expect(tasksOf(replay, w.id, 'orders/v2')).toBe(8);
  });

  it('gives a worker a share proportional to its capacity', () => {
    const result = assignTasks({
      tasks: partitions('orders', 'v1', 64),
      workers: [worker('small', 1, ['orders/v1']), worker('large', 3, ['orders/v1'])],
      previous: new Map(),
    });
    expect(tasksOf(result, 'small')).toBe(16);
    expect(tasksOf(result, 'large')).toBe(48);
  });

  it('rejects a worker listed twice', () => {
    expect(() =>
      assignTasks({ tasks: [], workers: [worker('a', 1, []), worker('a', 2, [])], previous: new Map() }),
    ).toThrow(ConfigError);
  });

  describe('at 1,000 workers and 4,096 partitions', () => {
    const tasks = partitions('orders', 'v1', 4096);
    const workers = equalWorkers(1000, ['orders/v1']);
    const margin = Math.ceil(tasks.length * 0.01);
    const fresh = assignTasks({ tasks, workers, previous: new Map() });

    it('balances within one task of ideal', () => {
      expectValid({ tasks, workers, previous: new Map() }, fresh);
      const counts = workers.map((w) => tasksOf(fresh, w.id));
      expect(Math.min(...counts)).toBe(4);
      expect(Math.max(...counts)).toBe(5);
    });

    it('moves no more than the minimum plus 1% when one worker joins', () => {
      const joined = [...workers, worker('joiner', 1, ['orders/v1'])];
      const after = assignTasks({ tasks, workers: joined, previous: fresh.owners });
      expectValid({ tasks, workers: joined, previous: fresh.owners }, after);
      expect(after.moves.length).toBeLessThanOrEqual(Math.floor(tasks.length / joined.length) + margin);
      expect(after.moves.every((m) => m.to === 'joiner')).toBe(true);
    });

    it('moves no more than the leaver’s tasks plus 1% when one worker leaves', () => {
      for (const leaver of [workers[0]!, workers[999]!]) {
        const remaining = workers.filter((w) => w !== leaver);
        const after = assignTasks({ tasks, workers: remaining, previous: fresh.owners });
        expectValid({ tasks, workers: remaining, previous: fresh.owners }, after);
        expect(after.moves.length).toBeLessThanOrEqual(tasksOf(fresh, leaver.id) + margin);
        expect(after.moves.every((m) => m.from === leaver.id)).toBe(true);
      }
    });

    it('stays proportional within one task with mixed capacities through a join and a leave', () => {
      const mixed = workers.map((w, i) => worker(w.id, 1 + (i % 8), ['orders/v1']));
      const first = assignTasks({ tasks, workers: mixed, previous: new Map() });
      expectValid({ tasks, workers: mixed, previous: new Map() }, first);
      const joined = [...mixed, worker('joiner', 4, ['orders/v1'])];
      const afterJoin = assignTasks({ tasks, workers: joined, previous: first.owners });
      expectValid({ tasks, workers: joined, previous: first.owners }, afterJoin);
      const capacity = joined.reduce((sum, w) => sum + w.capacity, 0);
      expect(afterJoin.moves.length).toBeLessThanOrEqual(Math.floor((tasks.length * 4) / capacity) + margin);
      const remaining = mixed.slice(1);
      const afterLeave = assignTasks({ tasks, workers: remaining, previous: first.owners });
      expectValid({ tasks, workers: remaining, previous: first.owners }, afterLeave);
      expect(afterLeave.moves.length).toBeLessThanOrEqual(tasksOf(first, mixed[0]!.id) + margin);
    });
  });
});
