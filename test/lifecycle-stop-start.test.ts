// Stop, then start, with real processes: a coordinator, two pool workers, 4 partitions. The
// first worker takes every task at epoch 1, the second joins and two tasks move to epoch 2; the
// job is stopped (every task released) and started again. Epochs must only grow per task, so
// every task runs again instead of being fenced by its own checkpoint. Then the coordinator's
// cluster state is wiped while the checkpoints remain: the tasks start at epoch 1 again, their
// claims are fenced, and the coordinator must reassign them above the checkpoints' epochs. After
// each step the serving table equals the batch reference over the whole log.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buckets, streams, type ClusterStatus } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { clicksReference, type Click } from './harness/clicks.js';
import { leaderStatus, pollUntil } from './harness/cluster-status.js';
import { expectedResults, readServingTable, readTopicLog } from './harness/expected-results.js';
import { startServer, type NatsServer } from './harness/nats-server.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

let server: NatsServer & { close(): Promise<void> };
let nc: NatsConnection;
let dir: string;
const processes: KappaProcess[] = [];
let firstCoordinator: KappaProcess;
const workers: KappaProcess[] = [];

beforeAll(async () => {
  server = await startServer();
  nc = await connect({ servers: server.url });
  dir = mkdtempSync(join(tmpdir(), 'kappa-stop-start-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  await nc?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

function spawn(args: string[]): KappaProcess {
  const process = new KappaProcess([...args, '--nats', server.url, '--http-port', '0', '--log-level', 'warn']);
  processes.push(process);
  return process;
}

const coordinator = (id: string) => spawn(['coordinator', '--id', id, '--session-timeout', '3s', '--lease-ttl', '2s']);
function worker(id: string): KappaProcess {
  const process = spawn([
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
  ]);
  workers.push(process);
  return process;
}

const fencedLogs = () =>
  workers.flatMap((process) => process.logs.split('\n').filter((line) => line.includes('task fenced')));

function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  return pollUntil(what, probe, timeoutMs, () => processes.map((p) => p.logs.slice(-1500)).join('\n---\n'));
}

/** Clicks `from` ≤ id < `to`, 100 ms apart in event time, some out of order. */
async function produce(from: number, to: number): Promise<void> {
  const start = Date.UTC(2026, 10, 24, 12);
  const clicks: Click[] = [];
  for (let id = from; id < to; id++)
    clicks.push({ id, user: `user-${(id * 13) % 17}`, ts: start + id * 100 - ((id * 7919) % 1500) });
  const file = join(dir, `clicks-${from}.jsonl`);
  writeFileSync(file, clicks.map((click) => JSON.stringify(click)).join('\n') + '\n');
  const produced = await kappa([
    'produce',
    'clicks',
    '--file',
    file,
    '--key',
    'user',
    '--time',
    'ts',
    '--nats',
    server.url,
  ]);
  expect(produced.code, produced.stderr).toBe(0);
}

async function lastSequences(): Promise<number[]> {
  const jsm = await jetstreamManager(nc);
  const last: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
  return last;
}

/** Every task of clicks v1 running and at the end of its partition. */
async function everyTaskCaughtUp(): Promise<ClusterStatus> {
  const last = await lastSequences();
  return waitFor('every task running and caught up', async () => {
    const view = await leaderStatus(nc);
    const tasks = view.tasks.filter((task) => task.job === 'clicks' && task.version === 'v1');
    const done =
      tasks.length === PARTITIONS &&
      tasks.every((task) => task.state === 'running' && task.sequence === last[task.partition]);
    return done ? view : undefined;
  });
}

async function expectTableEqualsBatchAnswer(): Promise<void> {
  const log = await readTopicLog<Click>(nc, 'clicks', PARTITIONS);
  const expected = expectedResults(await clicksReference(JOB), log, PARTITIONS);
  expect(expected.windows.size).toBeGreaterThan(50);
  expect(await readServingTable(nc, 'clicks', 'v1')).toEqual(expected.windows);
}

async function startJob(): Promise<void> {
  const started = await kappa(['start', 'clicks', '--version', 'v1', '--nats', server.url]);
  expect(started.code, started.stderr + started.stdout).toBe(0);
}

async function manifestEpochs(): Promise<number[]> {
  const checkpoints = await CheckpointStore.open(nc);
  const epochs: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    epochs.push((await checkpoints.read({ job: 'clicks', version: 'v1', partition }))?.epoch ?? 0);
  return epochs;
}

it('runs every task again after stop and start, with epochs above the checkpoints’, and the table equals the batch answer', async () => {
  expect(
    (await kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--nats', server.url])).code,
  ).toBe(0);
  firstCoordinator = coordinator('c1');
  worker('w1');
  await waitFor('w1 registered', async () => ((await leaderStatus(nc)).workers.length === 1 ? true : undefined));
  await startJob();
  await waitFor('every task running on w1', async () => {
    const tasks = (await leaderStatus(nc)).tasks;
    return tasks.length === PARTITIONS && tasks.every((task) => task.worker === 'w1' && task.state === 'running')
      ? true
      : undefined;
  });
  // A second worker: two tasks move, revoke → release → assign at epoch 2.
  worker('w2');
  await waitFor('two tasks moved to w2', async () => {
    const tasks = (await leaderStatus(nc)).tasks;
    return tasks.filter((task) => task.worker === 'w2' && task.state === 'running' && task.epoch === 2).length === 2
      ? true
      : undefined;
  });
  await produce(0, 1_000);
  await everyTaskCaughtUp();

  const stopped = await kappa(['stop', 'clicks', '--version', 'v1', '--nats', server.url]);
  expect(stopped.code, stopped.stderr).toBe(0);
  await waitFor('the version stopped', async () => ((await leaderStatus(nc)).versions.length === 0 ? true : undefined));
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
  const beforeWipe = await manifestEpochs();
  expect(await firstCoordinator.stop()).toBe(0);
  await (await jetstreamManager(nc)).streams.delete(`KV_${buckets.cluster}`);
  coordinator('c2');
  // The new leader knows no version: it revokes what the workers still run.
  await waitFor('the workers known and idle', async () => {
    const view = await leaderStatus(nc);
    return view.workers.length === 2 && view.workers.every((w) => w.tasksAssigned === 0) && view.tasks.length === 0
      ? true
      : undefined;
  });
  await startJob();
  await produce(2_000, 3_000);
  const restarted = await everyTaskCaughtUp();
  for (const task of restarted.tasks)
    expect(task.epoch, `partition ${task.partition}`).toBeGreaterThan(beforeWipe[task.partition]!);
  // Here the epochs were lost: each claim at epoch 1 was fenced and reported, then assigned above.
  expect(fencedLogs().length).toBeGreaterThanOrEqual(PARTITIONS);
  await expectTableEqualsBatchAnswer();
});
