// Replay progress of a job version as the coordinator computes it from heartbeats and the
// partition streams' last sequences (coordinator/version-progress.ts, pure).
import { expect, it } from 'vitest';
import { directPlan, taskKey, type TaskKey, type TaskStatus } from '../protocol/index.js';
import type { JobVersionRecord, TaskRecord } from '../coordinator/cluster-state.js';
import { versionProgress } from '../coordinator/version-progress.js';

const version: JobVersionRecord = {
  job: 'clicks',
  version: 'v2',
  topic: 'clicks',
  partitions: 3,
  from: { kind: 'earliest' },
  state: 'running',
  startedAtMs: 0,
  plan: directPlan('clicks', 'clicks', 3),
};

/** The ends of the topic `clicks` (the only one the version reads). */
function ends(lastSequences: number[]) {
  return (topic: string) => (topic === 'clicks' ? lastSequences : undefined);
}

function cluster(holders: Array<{ worker: string | null; epoch: number; report?: Partial<TaskStatus> }>) {
  const tasks = new Map<TaskKey, TaskRecord>();
  const reports = new Map<TaskKey, TaskStatus>();
  holders.forEach((holder, partition) => {
    const task = { job: 'clicks', version: 'v2', partition };
    tasks.set(taskKey(task), { task, worker: holder.worker, epoch: holder.epoch });
    if (holder.report)
      reports.set(taskKey(task), {
        ...task,
        epoch: holder.epoch,
        state: 'running',
        sequence: 0,
        lagMessages: 0,
        watermark: null,
        ...holder.report,
      });
  });
  return { tasks, reported: (record: TaskRecord) => reports.get(taskKey(record.task)) };
}

it('is the share of the log processed over all partitions, and 1 exactly when every partition is caught up', () => {
  const halfway = cluster([
    { worker: 'w1', epoch: 1, report: { sequence: 50 } },
    { worker: 'w2', epoch: 1, report: { sequence: 100 } },
    { worker: 'w1', epoch: 1, report: { sequence: 0 } },
  ]);
  const progress = versionProgress({ version, ...halfway, lastSequences: ends([100, 100, 0]) });
  expect(progress.ratio).toBe(0.75);
  expect(progress.lagMessages).toBe(50);
  expect(progress.tasks).toMatchObject({ running: 3, waiting: 0 });

  const caughtUp = cluster([
    { worker: 'w1', epoch: 1, report: { sequence: 100 } },
    { worker: 'w2', epoch: 1, report: { sequence: 100 } },
    { worker: 'w1', epoch: 1, report: { sequence: 0 } },
  ]);
  expect(versionProgress({ version, ...caughtUp, lastSequences: ends([100, 100, 0]) })).toMatchObject({
    ratio: 1,
    lagMessages: 0,
  });
});

it('counts a task nobody has reported yet, or one still restoring, as not started', () => {
  const starting = cluster([
    { worker: 'w1', epoch: 1, report: { sequence: 100 } },
    { worker: 'w2', epoch: 2, report: { state: 'restoring', sequence: 0 } },
    { worker: null, epoch: 0 },
  ]);
  const progress = versionProgress({ version, ...starting, lastSequences: ends([100, 100, 100]) });
  expect(progress.ratio).toBeCloseTo(1 / 3);
  expect(progress.lagMessages).toBe(200);
  expect(progress.tasks).toMatchObject({ running: 1, restoring: 1, waiting: 1 });
});

it('has no ratio until the partition ends have been read, and an empty topic is caught up', () => {
  const idle = cluster([
    { worker: 'w1', epoch: 1 },
    { worker: 'w1', epoch: 1 },
    { worker: 'w1', epoch: 1 },
  ]);
  expect(versionProgress({ version, ...idle, lastSequences: () => undefined })).toMatchObject({
    ratio: undefined,
    lagMessages: undefined,
    tasks: { assigning: 3 },
  });
  expect(versionProgress({ version, ...idle, lastSequences: ends([0, 0, 0]) })).toMatchObject({
    ratio: 1,
    lagMessages: 0,
  });
});
