// The whole cluster with real processes: 2 `kappa coordinator`s and 3 `kappa worker`s (piscina
// pools) over a 32-partition topic. Every task is owned exactly once; a worker killed with SIGKILL
// has its tasks owned again within the session timeout; killing the coordinator leader moves
// nothing; and the serving table at the end equals the batch computation over all events.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { partitionOf, streams, type ClusterStatus } from '../protocol/index.js';
import { kappa, KappaProcess, workerArgs } from './harness/cli.js';
import { produceClicks } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 32;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
const SESSION_TIMEOUT_MS = 3_000;
const OUT_OF_ORDERNESS_MS = 2_000;

const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-e2e-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

function worker(id: string): KappaProcess {
  const process = new KappaProcess([
    ...workerArgs({ jobs: [JOB], id, stateDir: join(dir, id), threads: 1 }),
    '--nats',
    nats.url,
  ]);
  processes.push(process);
  return process;
}

function coordinator(id: string): KappaProcess {
  const process = new KappaProcess([
    'coordinator',
    '--id',
    id,
    '--nats',
    nats.url,
    '--http-port',
    '0',
    '--session-timeout',
    `${SESSION_TIMEOUT_MS}ms`,
    '--lease-ttl',
    '2s',
    '--log-level',
    'warn',
  ]);
  processes.push(process);
  return process;
}

/** Polls until `probe` returns a value; a timeout shows the processes' last logs. */
function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  return pollUntil(probe, {
    what,
    timeoutMs,
    context: () => processes.map((p) => p.logs.slice(-1500)).join('\n---\n'),
  });
}

it('runs a job version over 3 workers and 2 coordinators, survives a killed worker and a killed leader, and serves the batch answer', async () => {
  // 6,000 clicks over 600 s of event time, some out of order, some far too late.
  const start = Date.UTC(2026, 10, 24, 12);
  const events = Array.from({ length: 6000 }, (_, id) => {
    const jitter = (id * 7919) % 1500;
    const veryLate = id % 97 === 0 ? 30_000 : 0;
    return {
      id,
      user: `user-${(id * 31) % 23}`,
      ts: start + id * 100 - jitter - veryLate,
      page: id % 2 ? '/a' : undefined,
    };
  });
  const input = join(dir, 'clicks.jsonl');
  expect(
    (await kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--nats', nats.url])).code,
  ).toBe(0);
  await produceClicks(nats.url, input, events);

  coordinator('c1');
  coordinator('c2');
  const workers = [worker('w1'), worker('w2'), worker('w3')];
  await waitFor(
    '3 workers registered',
    async () => ((await leaderStatus(nats.nc)).workers.length === 3 ? true : undefined),
    30_000,
  );
  const started = await kappa(['start', 'clicks', '--version', 'v1', '--nats', nats.url]);
  expect(started.code, started.stderr + started.stdout).toBe(0);

  const jsm = await jetstreamManager(nats.nc);
  const lastSequence: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    lastSequence.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
  const caughtUp = (view: ClusterStatus, liveWorkers: string[]) =>
    view.tasks.length === PARTITIONS &&
    view.tasks.every(
      (task) =>
        task.worker !== null &&
        liveWorkers.includes(task.worker) &&
        task.state === 'running' &&
        task.sequence === lastSequence[task.partition],
    );

  // Every task owned exactly once, spread over all three workers.
  let view = await waitFor(
    'all 32 tasks running and caught up',
    async () => {
      const current = await leaderStatus(nats.nc);
      return caughtUp(current, ['w1', 'w2', 'w3']) ? current : undefined;
    },
    60_000,
  );
  const perWorker = new Map<string, number>();
  for (const task of view.tasks) perWorker.set(task.worker!, (perWorker.get(task.worker!) ?? 0) + 1);
  expect([...perWorker.values()].sort()).toEqual([10, 11, 11]);

  // SIGKILL a worker: its tasks are owned by the others within the session timeout (plus a heartbeat or two).
  const victim = 'w2';
  const victimTasks = view.tasks.filter((task) => task.worker === victim).map((task) => task.partition);
  await workers[1]!.kill();
  const killedAt = Date.now();
  view = await waitFor(
    'the killed worker’s tasks owned again',
    async () => {
      const current = await leaderStatus(nats.nc);
      return current.tasks.every((task) => task.worker !== victim && task.worker !== null) ? current : undefined;
    },
    SESSION_TIMEOUT_MS + 10_000,
  );
  expect(Date.now() - killedAt).toBeLessThan(SESSION_TIMEOUT_MS + 5_000);
  for (const partition of victimTasks)
    expect(view.tasks.find((task) => task.partition === partition)!.epoch).toBeGreaterThan(1);
  view = await waitFor(
    'caught up on two workers',
    async () => {
      const current = await leaderStatus(nats.nc);
      return caughtUp(current, ['w1', 'w3']) ? current : undefined;
    },
    60_000,
  );

  // SIGKILL the coordinator leader: the other takes over and moves nothing.
  const owners = new Map(view.tasks.map((task) => [task.partition, `${task.worker}@${task.epoch}`]));
  const leader = view.leader.coordinatorId;
  await processes.find((process) => process.child.spawnargs.includes(leader))!.kill();
  const after = await waitFor(
    'a new leader',
    async () => {
      const current = await leaderStatus(nats.nc);
      return current.leader.coordinatorId !== leader ? current : undefined;
    },
    15_000,
  );
  expect(new Map(after.tasks.map((task) => [task.partition, `${task.worker}@${task.epoch}`]))).toEqual(owners);

  // The serving table equals the batch computation over all events (for every window fired).
  const viewed = await kappa(['view', 'clicks', '--version', 'v1', '--json', '--nats', nats.url]);
  expect(viewed.code, viewed.stderr).toBe(0);
  const table = viewed.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { key: string; end: number });
  const batchOut = join(dir, 'batch.jsonl');
  const batch = await kappa([
    'run',
    JOB,
    '--input',
    input,
    '--partitions',
    String(PARTITIONS),
    '--key',
    'user',
    '--time',
    'ts',
    '--output',
    batchOut,
  ]);
  expect(batch.code, batch.stderr).toBe(0);
  const finalWatermark = new Map<number, number>();
  for (const event of events) {
    const partition = partitionOf(event.user, PARTITIONS);
    finalWatermark.set(partition, Math.max(finalWatermark.get(partition) ?? -Infinity, event.ts - OUT_OF_ORDERNESS_MS));
  }
  const expected = readFileSync(batchOut, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { key: string; end: number })
    .filter((row) => row.end - 1 <= finalWatermark.get(partitionOf(row.key, PARTITIONS))!);
  expect(expected.length).toBeGreaterThan(500);
  expect(table).toEqual(expected);
});
