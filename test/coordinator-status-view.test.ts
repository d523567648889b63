// The status the leader answers (coordinator/status-view.ts, pure): built from a hand-made cluster
// snapshot, no server. Each task's state comes from its holder's heartbeat at the current epoch.
import { describe, expect, it } from 'vitest';
import { clusterStatus, versionView, type ClusterSnapshot, type ProgressWithEta } from '../coordinator/status-view.js';
import type { JobVersionRecord, TaskRecord } from '../coordinator/cluster-state.js';
import { Membership } from '../coordinator/membership.js';
import { readingOf } from '../cli/version-progress-view.js';
import { adminReplies, directPlan, jobVersionKey, ManualClock, taskKey, type TaskStatus } from '../protocol/index.js';

const clicksV1: JobVersionRecord = {
  job: 'clicks',
  version: 'v1',
  topic: 'clicks',
  partitions: 2,
  from: { kind: 'earliest' },
  state: 'running',
  startedAtMs: 0,
  table: 'kv',
  plan: directPlan('clicks', 'clicks', 2),
};
const clicksV2: JobVersionRecord = { ...clicksV1, version: 'v2', autoCutover: { maxLagMessages: 10 } };
const orders: JobVersionRecord = {
  job: 'orders',
  version: 'v1',
  topic: 'orders',
  partitions: 1,
  from: { kind: 'latest' },
  state: 'running',
  startedAtMs: 0,
  plan: directPlan('orders', 'orders', 1),
};

function report(record: TaskRecord, fields: Partial<TaskStatus> = {}): TaskStatus {
  return {
    ...record.task,
    epoch: record.epoch,
    state: 'running',
    sequence: 40,
    lagMessages: 2,
    watermark: 1_000,
    ...fields,
  };
}

/** w1 carries clicks v1 and v2 and holds three tasks; w2 carries orders and has not heartbeaten yet. */
function snapshot(): ClusterSnapshot {
  const clock = new ManualClock(10_000);
  const membership = new Membership(6_000, clock);
  const held: TaskRecord[] = [
    { task: { job: 'clicks', version: 'v1', partition: 0 }, worker: 'w1', epoch: 3 },
    { task: { job: 'clicks', version: 'v1', partition: 1 }, worker: 'w1', epoch: 2 },
    { task: { job: 'clicks', version: 'v2', partition: 0 }, worker: 'w1', epoch: 1 },
    // A stopped version keeps its task records (their epochs); status does not list them.
    { task: { job: 'gone', version: 'v1', partition: 0 }, worker: null, epoch: 5 },
  ];
  membership.register({ workerId: 'w2', capacity: 1, carries: [{ job: 'orders', version: 'v1', topic: 'orders' }] });
  clock.advance(500);
  membership.register({
    workerId: 'w1',
    capacity: 4,
    carries: [
      { job: 'clicks', version: 'v1', topic: 'clicks', sink: 'kv' },
      { job: 'clicks', version: 'v2', topic: 'clicks', sink: 'kv' },
    ],
    httpUrl: 'http://w1:9466',
  });
  membership.heartbeat('w1', [
    report(held[0]!),
    report({ ...held[1]!, epoch: 1 }), // from before the move to epoch 2: says nothing about it
    report(held[2]!, { state: 'failed', error: 'handler threw', sequence: 0, lagMessages: 90 }),
  ]);
  clock.advance(1_500);
  const progress = new Map<string, ProgressWithEta>([
    [
      jobVersionKey(clicksV1),
      {
        job: 'clicks',
        version: 'v1',
        ratio: 0.5,
        lagMessages: 42,
        processedMessages: 42,
        tasks: { waiting: 0, assigning: 1, restoring: 0, running: 1, releasing: 0, failed: 0 },
        taskCount: 2,
        stages: [
          { stage: undefined, topic: 'clicks', partitions: 2, ratio: 0.5, lagMessages: 42, processedMessages: 42 },
        ],
        etaSeconds: 3,
      },
    ],
  ]);
  return {
    nowMs: clock.now(),
    leader: { coordinatorId: 'c1', fencingToken: 7 },
    versions: new Map([clicksV1, clicksV2, orders].map((version) => [jobVersionKey(version), version])),
    tasks: new Map(held.map((record) => [taskKey(record.task), record])),
    workers: membership.live(),
    progress,
    aliases: new Map([['clicks', 'v1']]),
  };
}

describe('the status view', () => {
  it("shows each task's state from its holder's report at the current epoch, waiting tasks, workers and versions", () => {
    const status = clusterStatus(snapshot());
    expect(status.leader).toEqual({ coordinatorId: 'c1', fencingToken: 7 });
    expect(status.workers).toEqual([
      {
        workerId: 'w1',
        capacity: 4,
        carries: snapshot().workers[0]!.registration.carries,
        httpUrl: 'http://w1:9466',
        tasksAssigned: 3,
        lastHeartbeatAgoMs: 1_500,
      },
      {
        workerId: 'w2',
        capacity: 1,
        carries: [{ job: 'orders', version: 'v1', topic: 'orders' }],
        httpUrl: undefined,
        tasksAssigned: 0,
        lastHeartbeatAgoMs: 2_000,
      },
    ]);
    expect(
      status.tasks.map((task) => [
        `${task.job}/${task.version}/${task.partition}`,
        task.worker,
        task.epoch,
        task.state,
        task.sequence,
        task.error,
      ]),
    ).toEqual([
      ['clicks/v1/0', 'w1', 3, 'running', 40, undefined],
      ['clicks/v1/1', 'w1', 2, 'assigning', null, undefined],
      ['clicks/v2/0', 'w1', 1, 'failed', 0, 'handler threw'],
      ['clicks/v2/1', null, 0, 'waiting', null, undefined],
      ['orders/v1/0', null, 0, 'waiting', null, undefined],
    ]);
    const [v1, v2, ordersView] = status.versions;
    expect(v1).toMatchObject({
      state: 'running',
      tasksAssigned: 2,
      lagMessages: 42,
      progress: 0.5,
      etaSeconds: 3,
      table: 'kv',
      served: true,
    });
    expect(v1).not.toHaveProperty('autoCutover');
    // No progress computed yet: the lag is the sum its holders reported (at any epoch).
    expect(v2).toMatchObject({
      tasksAssigned: 1,
      lagMessages: 90,
      progress: null,
      etaSeconds: null,
      served: false,
      autoCutover: { maxLagMessages: 10 },
    });
    // w2 carries it, so it is running, but no task is assigned yet.
    expect(ordersView).toMatchObject({ state: 'running', tasksAssigned: 0, table: null, served: false });
    // What the leader sends is what the CLI accepts.
    expect(adminReplies.status.parse(status)).toEqual(status);
  });

  it('shows which tasks read the archive (hybrid replay) and how many of a version do', () => {
    const base = snapshot();
    const clock = new ManualClock(20_000);
    const membership = new Membership(6_000, clock);
    membership.register(base.workers[0]!.registration);
    const [first, second] = [...base.tasks.values()].filter(
      (record) => record.task.job === 'clicks' && record.task.version === 'v1',
    );
    membership.heartbeat('w1', [report(first!, { phase: 'archive' }), report(second!, { phase: 'live' })]);
    const status = clusterStatus({ ...base, nowMs: clock.now(), workers: membership.live() });
    expect(
      status.tasks.filter((task) => task.job === 'clicks' && task.version === 'v1').map((task) => task.phase),
    ).toEqual(['archive', undefined]);
    const v1 = status.versions.find((version) => version.job === 'clicks' && version.version === 'v1')!;
    expect(v1.tasksInArchive).toBe(1);
    expect(readingOf(v1)).toBe('archive 1/2');
    // Once none reads the archive, the field is absent and the version reads live.
    const v2 = status.versions.find((version) => version.job === 'clicks' && version.version === 'v2')!;
    expect(v2).not.toHaveProperty('tasksInArchive');
    expect(readingOf(v2)).toBe('live');
    expect(adminReplies.status.parse(status)).toEqual(status);
  });

  it('reports a version no live worker carries as waiting for capacity', () => {
    const { workers: _all, ...rest } = snapshot();
    expect(versionView({ ...rest, workers: [] }, clicksV1).state).toBe('waiting-for-capacity');
  });

  it("lists only the asked job's versions and tasks, and every worker, for status.request.job", () => {
    const status = clusterStatus(snapshot(), { job: 'orders' });
    expect(status.versions.map((version) => `${version.job}/${version.version}`)).toEqual(['orders/v1']);
    expect(status.tasks.map((task) => `${task.job}/${task.version}/${task.partition}`)).toEqual(['orders/v1/0']);
    expect(status.workers.map((worker) => [worker.workerId, worker.tasksAssigned])).toEqual([
      ['w1', 3],
      ['w2', 0],
    ]);
    expect(clusterStatus(snapshot(), { job: 'nothing' })).toMatchObject({ versions: [], tasks: [] });
  });
});
