// The pure reconciliation step: epoch rules, revoke-before-assign, idempotence, resends.
import { describe, expect, it } from 'vitest';
import { directPlan, taskKey, type TaskKey, type TaskStatus } from '../protocol/index.js';
import {
  emptyTransit,
  reconcile,
  type JobVersionRecord,
  type LiveWorker,
  type ReconcileInput,
  type TaskRecord,
} from '../coordinator/cluster-state.js';

const version: JobVersionRecord = {
  job: 'j',
  version: 'v1',
  topic: 't',
  partitions: 4,
  from: { kind: 'earliest' },
  state: 'running',
  startedAtMs: 0,
  plan: directPlan('t', 't', 4),
};
const versions = new Map([['j/v1', version]]);

function worker(id: string, held: TaskRecord[] | undefined, reportedAtMs = 0): LiveWorker {
  const reported =
    held &&
    new Map<TaskKey, TaskStatus>(
      held.map((record) => [
        taskKey(record.task),
        { ...record.task, epoch: record.epoch, state: 'running', sequence: 0, lagMessages: 0, watermark: null },
      ]),
    );
  return { slot: { id, capacity: 1, carries: new Set(['j/v1']) }, reported, reportedAtMs };
}

function input(
  tasks: Map<TaskKey, TaskRecord>,
  workers: LiveWorker[],
  nowMs: number,
  transit = emptyTransit(),
): ReconcileInput {
  return { versions, tasks, workers, transit, nowMs, resendAfterMs: 1_000 };
}

function apply(tasks: Map<TaskKey, TaskRecord>, puts: TaskRecord[]): Map<TaskKey, TaskRecord> {
  const next = new Map(tasks);
  for (const record of puts) next.set(taskKey(record.task), record);
  return next;
}

describe('reconcile', () => {
  it('assigns every task of a new version at epoch 1', () => {
    const result = reconcile(input(new Map(), [worker('a', undefined), worker('b', undefined)], 0));
    expect(result.puts).toHaveLength(4);
    expect(result.puts.every((record) => record.epoch === 1 && record.worker !== null)).toBe(true);
    expect(result.commands.filter((command) => command.kind === 'assign')).toHaveLength(4);
  });

  it('sends nothing in a steady state that heartbeats confirm', () => {
    let tasks = new Map<TaskKey, TaskRecord>();
    tasks = apply(tasks, reconcile(input(tasks, [worker('a', undefined)], 0)).puts);
    const held = [...tasks.values()];
    const again = reconcile(input(tasks, [worker('a', held, 100)], 200));
    expect(again).toMatchObject({ commands: [], puts: [], movesStarted: 0 });
  });

  it('moves a task only after its holder released it, with epoch + 1', () => {
    const transit = emptyTransit();
    let tasks = new Map<TaskKey, TaskRecord>();
    tasks = apply(tasks, reconcile(input(tasks, [worker('a', undefined)], 0, transit)).puts);
    const held = [...tasks.values()];
    // b joins: two tasks must move from a, which is revoked first.
    const revoking = reconcile(input(tasks, [worker('a', held, 10), worker('b', [], 10)], 20, transit));
    expect(revoking.commands.map((command) => command.kind)).toEqual(['revoke', 'revoke']);
    expect(revoking.puts).toEqual([]);
    const moving = revoking.commands[0]!;
    transit.released.add(taskKey(moving.task));
    const assigned = reconcile(input(tasks, [worker('a', held, 30), worker('b', [], 30)], 40, transit));
    expect(assigned.puts).toEqual([{ task: moving.task, worker: 'b', epoch: 2 }]);
    expect(assigned.commands).toContainEqual({
      kind: 'assign',
      worker: 'b',
      task: moving.task,
      epoch: 2,
      from: { kind: 'earliest' },
      plan: version.plan,
    });
    // The other revoke is answered by a heartbeat (sent after the revoke) that no longer lists the task.
    const stillHeld = held.filter((record) => taskKey(record.task) !== taskKey(revoking.commands[1]!.task));
    const implicit = reconcile(
      input(apply(tasks, assigned.puts), [worker('a', stillHeld, 50), worker('b', [], 50)], 60, transit),
    );
    expect(implicit.puts).toEqual([{ task: revoking.commands[1]!.task, worker: 'b', epoch: 2 }]);
  });

  it('hands a dead holder’s tasks over at once with epoch + 1', () => {
    let tasks = new Map<TaskKey, TaskRecord>();
    tasks = apply(tasks, reconcile(input(tasks, [worker('a', undefined)], 0)).puts);
    const result = reconcile(input(tasks, [worker('b', [], 10)], 20));
    expect(result.puts.map((record) => [record.worker, record.epoch])).toEqual([
      ['b', 2],
      ['b', 2],
      ['b', 2],
      ['b', 2],
    ]);
    expect(result.commands.every((command) => command.kind === 'assign')).toBe(true);
  });

  it('resends a missing assign only after resendAfterMs, and revokes a task its worker does not hold', () => {
    const transit = emptyTransit();
    let tasks = new Map<TaskKey, TaskRecord>();
    tasks = apply(tasks, reconcile(input(tasks, [worker('a', undefined)], 0, transit)).puts);
    expect(reconcile(input(tasks, [worker('a', [], 100)], 500, transit)).commands).toEqual([]);
    expect(reconcile(input(tasks, [worker('a', [], 1_100)], 1_200, transit)).commands).toHaveLength(4);
    const stray: TaskRecord = { task: { job: 'j', version: 'v0', partition: 9 }, worker: 'a', epoch: 3 };
    const revoked = reconcile(input(tasks, [worker('a', [...tasks.values(), stray], 1_300)], 1_400, transit));
    expect(revoked.commands).toEqual([{ kind: 'revoke', worker: 'a', task: stray.task, epoch: 3 }]);
  });

  it('deletes a stopping version once its tasks are released', () => {
    const transit = emptyTransit();
    let tasks = new Map<TaskKey, TaskRecord>();
    tasks = apply(tasks, reconcile(input(tasks, [worker('a', undefined)], 0, transit)).puts);
    const stopping = new Map([['j/v1', { ...version, state: 'stopping' as const }]]);
    const revokes = reconcile({
      ...input(tasks, [worker('a', [...tasks.values()], 10)], 20, transit),
      versions: stopping,
    });
    expect(revokes.commands.every((command) => command.kind === 'revoke')).toBe(true);
    expect(revokes.finishedVersions).toEqual([]);
    const released = reconcile({ ...input(tasks, [worker('a', [], 30)], 40, transit), versions: stopping });
    expect(released.puts.map((record) => [record.worker, record.epoch])).toEqual([
      [null, 1],
      [null, 1],
      [null, 1],
      [null, 1],
    ]);
    expect(released.finishedVersions).toEqual(['j/v1']);
  });

  it('keeps the epochs of a stopped version, so starting it again assigns above them', () => {
    const transit = emptyTransit();
    // Stopped: nobody holds the tasks, the records keep epochs 2 and 5, the version is gone.
    const stopped = new Map<TaskKey, TaskRecord>(
      [0, 1, 2, 3].map((partition) => [
        taskKey({ job: 'j', version: 'v1', partition }),
        { task: { job: 'j', version: 'v1', partition }, worker: null, epoch: partition === 3 ? 5 : 2 },
      ]),
    );
    const idle = reconcile({ ...input(stopped, [worker('a', [], 10)], 20, transit), versions: new Map() });
    expect(idle).toMatchObject({ commands: [], puts: [] });
    const started = reconcile(input(stopped, [worker('a', [], 30)], 40, transit));
    expect(started.puts.map((record) => record.epoch)).toEqual([3, 3, 3, 6]);
  });

  it('does not take a revoke of a task a worker ran without a record for the answer to a later assignment', () => {
    const transit = emptyTransit();
    // The cluster state was wiped: a still runs every task at epoch 2 and the leader, knowing no
    // version, revokes them as tasks a does not hold.
    const ranBefore = [0, 1, 2, 3].map((partition) => ({
      task: { job: 'j', version: 'v1', partition },
      worker: 'a',
      epoch: 2,
    }));
    const wiped = reconcile({ ...input(new Map(), [worker('a', ranBefore, 10)], 20, transit), versions: new Map() });
    expect(wiped.commands.map((command) => command.kind)).toEqual(['revoke', 'revoke', 'revoke', 'revoke']);
    // a released them; the version is started again and assigned at epoch 1, to a.
    let tasks = new Map<TaskKey, TaskRecord>();
    const started = reconcile(input(tasks, [worker('a', [], 30)], 40, transit));
    tasks = apply(tasks, started.puts);
    expect(started.puts.every((record) => record.worker === 'a' && record.epoch === 1)).toBe(true);
    // A heartbeat that does not list the new assignments yet is no answer to those old revokes:
    // no move to epoch 2 (the epoch of a's own checkpoints, which its claim would pass unfenced).
    const next = reconcile(input(tasks, [worker('a', [], 50)], 60, transit));
    expect(next).toMatchObject({ puts: [], commands: [], movesStarted: 0 });
  });

  it('assigns a task again above the epoch that fenced its holder’s claim, once per fence', () => {
    const transit = emptyTransit();
    let tasks = new Map<TaskKey, TaskRecord>();
    tasks = apply(tasks, reconcile(input(tasks, [worker('a', undefined)], 0, transit)).puts);
    const fenced = worker('a', [...tasks.values()], 100);
    const first = [...tasks.values()][0]!;
    (fenced.reported as Map<TaskKey, TaskStatus>).set(taskKey(first.task), {
      ...first.task,
      epoch: 1,
      state: 'failed',
      sequence: 0,
      lagMessages: 0,
      watermark: null,
      error: 'fenced',
      fencedBy: 7,
    });
    const result = reconcile(input(tasks, [fenced], 200, transit));
    expect(result.puts).toEqual([{ task: first.task, worker: 'a', epoch: 8 }]);
    expect(result.commands).toEqual([
      { kind: 'assign', worker: 'a', task: first.task, epoch: 8, from: { kind: 'earliest' }, plan: version.plan },
    ]);
    expect(result.fencedReassigned).toBe(1);
    // The same report again (the heartbeat still shows the old epoch): no second bump.
    const again = reconcile(input(apply(tasks, result.puts), [fenced], 300, transit));
    expect(again.puts).toEqual([]);
  });
});
