// Stop, then start, with real processes: a coordinator, two pool workers, 4 partitions. The
// first worker takes every task at epoch 1, the second joins and two tasks move to epoch 2; the
// job is stopped (every task released) and started again. Epochs must only grow per task, so
// every task runs again instead of being fenced by its own checkpoint. Then the coordinator's
// cluster state is wiped while the checkpoints remain: the tasks start at epoch 1 again, their
// claims are fenced, and the coordinator must reassign them above the checkpoints' epochs. After
// each step the serving table equals the batch reference over the whole log.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buckets, streams, type ClusterStatus } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { clickRange, clicksReference, produceClicks, type Click } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import { expectedResults, readServingTable, readTopicLog } from './harness/expected-results.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];
let firstCoordinator: KappaProcess;
const workers: KappaProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-stop-start-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

function spawn(args: string[], logLevel = 'warn'): KappaProcess {
  const process = new KappaProcess([...args, '--nats', nats.url, '--http-port', '0', '--log-level', logLevel]);
  processes.push(process);
  return process;
}

const coordinator = (id: string) => spawn(['coordinator', '--id', id, '--session-timeout', '3s', '--lease-ttl', '2s']);
function worker(id: string): KappaProcess {
  const process = spawn(
    [
      'worker',
      '--job',
      JOB,
      '--id',
      id,
      '--threads',
      '2',
      '--state-dir',
      join(dir, id),
      '--checkpoint-interval',
      '300ms',
    ],
    'info',
  ); // info: the worker logs its HTTP port, read by workerTaskCount
  workers.push(process);
  return process;
}

/** How many tasks a worker itself runs (its own /status), not what a coordinator's records say. */
async function workerTaskCount(process: KappaProcess): Promise<number> {
  const [, port] = await process.waitForLog(/"httpPort":(\d+)/);
  const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { tasks: unknown[] };
  return status.tasks.length;
}

const fencedLogs = () =>
  workers.flatMap((process) => process.logs.split('\n').filter((line) => line.includes('task fenced')));

/** Polls the leader's status until `until` holds; a timeout shows the processes' last logs. */
function statusUntil(what: string, until: (view: ClusterStatus) => boolean): Promise<ClusterStatus> {
  return pollUntil(() => leaderStatus(nats.nc), {
    what,
    until,
    timeoutMs: 60_000,
    context: () => processes.map((p) => p.logs.slice(-1500)).join('\n---\n'),
  });
}

async function produce(from: number, to: number): Promise<void> {
  await produceClicks(nats.url, join(dir, `clicks-${from}.jsonl`), clickRange(from, to));
}

async function lastSequences(): Promise<number[]> {
  const jsm = await jetstreamManager(nats.nc);
  const last: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
  return last;
}

/** Every task of clicks v1 running and at the end of its partition. */
async function everyTaskCaughtUp(): Promise<ClusterStatus> {
  const last = await lastSequences();
  return statusUntil('every task running and caught up', (view) => {
    const tasks = view.tasks.filter((task) => task.job === 'clicks' && task.version === 'v1');
    return (
      tasks.length === PARTITIONS &&
      tasks.every((task) => task.state === 'running' && task.sequence === last[task.partition])
    );
  });
}

async function expectTableEqualsBatchAnswer(): Promise<void> {
  const log = await readTopicLog<Click>(nats.nc, 'clicks', PARTITIONS);
  const expected = expectedResults(await clicksReference(JOB), log, PARTITIONS);
  expect(expected.windows.size).toBeGreaterThan(50);
  expect(await readServingTable(nats.nc, 'clicks', 'v1')).toEqual(expected.windows);
}

async function startJob(): Promise<void> {
  const started = await kappa(['start', 'clicks', '--version', 'v1', '--nats', nats.url]);
  expect(started.code, started.stderr + started.stdout).toBe(0);
}

async function manifestEpochs(): Promise<number[]> {
  return (await manifests()).map((manifest) => manifest.epoch);
}

/** Each partition's committed checkpoint: its epoch and the worker that wrote it. */
async function manifests(): Promise<Array<{ epoch: number; workerId: string | undefined }>> {
  const checkpoints = await CheckpointStore.open(nats.nc);
  const found: Array<{ epoch: number; workerId: string | undefined }> = [];
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const manifest = await checkpoints.read({ job: 'clicks', version: 'v1', partition });
    found.push({ epoch: manifest?.epoch ?? 0, workerId: manifest?.workerId });
  }
  return found;
}

it('runs every task again after stop and start, with epochs above the checkpoints’, and the table equals the batch answer', async () => {
  expect(
    (
      await kappa([
        'topic',
        'create',
        'clicks',
        '--partitions',
        String(PARTITIONS),
        '--key',
        'user',
        '--nats',
        nats.url,
      ])
    ).code,
  ).toBe(0);
  firstCoordinator = coordinator('c1');
  worker('w1');
  await statusUntil('w1 registered', (view) => view.workers.length === 1);
  await startJob();
  await statusUntil(
    'every task running on w1',
    ({ tasks }) =>
      tasks.length === PARTITIONS && tasks.every((task) => task.worker === 'w1' && task.state === 'running'),
  );
  // A second worker: two tasks move, revoke → release → assign at epoch 2.
  worker('w2');
  await statusUntil(
    'two tasks moved to w2',
    ({ tasks }) =>
      tasks.filter((task) => task.worker === 'w2' && task.state === 'running' && task.epoch === 2).length === 2,
  );
  await produce(0, 1_000);
  await everyTaskCaughtUp();

  const stopped = await kappa(['stop', 'clicks', '--version', 'v1', '--nats', nats.url]);
  expect(stopped.code, stopped.stderr).toBe(0);
  await statusUntil('the version stopped', (view) => view.versions.length === 0);
  const beforeStart = await manifestEpochs();
  expect(beforeStart.filter((epoch) => epoch === 2)).toHaveLength(2);

  await startJob();
  await produce(1_000, 2_000);
  const restarted = await everyTaskCaughtUp();
  for (const task of restarted.tasks)
    expect(task.epoch, `partition ${task.partition}`).toBeGreaterThan(beforeStart[task.partition]!);
  expect(await manifestEpochs()).toEqual(restarted.tasks.map((task) => task.epoch));
  // The coordinator kept the epochs: no claim had to be fenced to learn them.
  expect(fencedLogs()).toEqual([]);
  await expectTableEqualsBatchAnswer();
});

it('reassigns every task above its checkpoint’s epoch when the coordinator’s cluster state was wiped', async () => {
  const beforeWipe = await manifests();
  expect(await firstCoordinator.stop()).toBe(0);
  await (await jetstreamManager(nats.nc)).streams.delete(`KV_${buckets.cluster}`);
  coordinator('c2');
  // The new leader knows no version: it revokes what the workers still run.
  await statusUntil(
    'the workers known and idle',
    (view) => view.workers.length === 2 && view.workers.every((w) => w.tasksAssigned === 0) && view.tasks.length === 0,
  );
  // The coordinator's view is its (empty) records: wait until the workers have released the tasks
  // it revoked too, or a worker still running a task at its checkpoint's epoch would be handed the
  // task back and go on at that epoch (safe, but not the lost-epoch path this test is about).
  await pollUntil(async () => (await Promise.all(workers.map(workerTaskCount))).every((count) => count === 0), {
    what: 'both workers running no task',
    timeoutMs: 30_000,
  });
  await startJob();
  await produce(2_000, 3_000);
  const restarted = await everyTaskCaughtUp();
  for (const task of restarted.tasks) {
    const before = beforeWipe[task.partition]!;
    // Above the checkpoint's epoch; or, the one case fencing allows, equal to it and held by the
    // very worker that wrote that checkpoint (its fenced claim at 1 was reassigned at 2 to it).
    if (task.epoch === before.epoch) expect(task.worker, `partition ${task.partition}`).toBe(before.workerId);
    else expect(task.epoch, `partition ${task.partition}`).toBeGreaterThan(before.epoch);
  }
  // Here the epochs were lost: each claim at epoch 1 was fenced and reported, then assigned above.
  expect(fencedLogs().length).toBeGreaterThanOrEqual(PARTITIONS);
  await expectTableEqualsBatchAnswer();
});
