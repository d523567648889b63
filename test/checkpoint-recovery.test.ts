// Recovery with real processes: a standalone worker stopped with SIGTERM commits a final
// checkpoint and, restarted on the same disk, resumes at sequence + 1 from its local copy
// without downloading; on a fresh disk it downloads the checkpoint from the Object Store; killed
// with SIGKILL it resumes from the last committed checkpoint. At the end the serving table and
// the late-data output equal the batch reference over the whole log. The last two runs spill
// windows out of memory (--window-memory-rows).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { streams } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { clicksReference, produceClicks, type Click } from './harness/clicks.js';
import { expectedResults, readLateRecords, readServingTable, readTopicLog } from './harness/expected-results.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-recovery-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

/** Clicks `from` ≤ id < `to`, 100 ms apart in event time, some out of order, 1 in 50 far too late. */
function clicks(from: number, to: number): Click[] {
  const start = Date.UTC(2026, 10, 24, 12);
  const events: Click[] = [];
  for (let id = from; id < to; id++) {
    const jitter = (id * 7919) % 1500;
    const veryLate = id % 50 === 0 ? 25_000 : 0;
    events.push({
      id,
      user: `user-${(id * 13) % 19}`,
      ts: start + id * 100 - jitter - veryLate,
      ...(id % 3 === 0 ? { page: '/p' } : {}),
    });
  }
  return events;
}

async function produce(events: Click[], name: string): Promise<void> {
  await produceClicks(nats.url, join(dir, `${name}.jsonl`), events);
}

function startWorker(stateDir: string, extra: string[] = []): KappaProcess {
  const worker = new KappaProcess(
    // One --id for every run: a restart after SIGKILL takes the standalone lease over at once.
    [
      'worker',
      '--job',
      JOB,
      '--standalone',
      '--id',
      'recovery',
      '--nats',
      nats.url,
      '--state-dir',
      join(dir, stateDir),
      '--http-port',
      '0',
      '--checkpoint-interval',
      '200ms',
      ...extra,
    ],
  );
  processes.push(worker);
  return worker;
}

interface TaskStatusView {
  partition: number;
  sequence: number;
  checkpointSequence: number;
  processed: number;
}

/** Waits until every partition is processed to the stream's last sequence; returns the status. */
async function caughtUp(worker: KappaProcess): Promise<TaskStatusView[]> {
  const [, port] = await worker.waitForLog(/"httpPort":(\d+)/);
  const jsm = await jetstreamManager(nats.nc);
  const last: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
  return pollUntil(async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as TaskStatusView[], {
    what: 'the worker caught up with every partition',
    until: (status) => status.length === PARTITIONS && status.every((task) => task.sequence >= last[task.partition]!),
    timeoutMs: 60_000,
    intervalMs: 100,
    context: () => worker.logs.slice(-2000),
  });
}

/** kappa_spilled_windows summed over the worker's tasks, from its /metrics. */
async function spilledWindows(worker: KappaProcess): Promise<number> {
  const [, port] = await worker.waitForLog(/"httpPort":(\d+)/);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return [...metrics.matchAll(/^kappa_spilled_windows\{[^}]*\} (\d+)/gm)].reduce(
    (sum, match) => sum + Number(match[1]),
    0,
  );
}

function restoredFrom(worker: KappaProcess): string[] {
  return [...worker.logs.matchAll(/"restoredFrom":"([a-z-]+)"/g)].map((match) => match[1]!);
}

it('resumes after SIGTERM from the local copy at sequence + 1, after a disk loss from the Object Store, after SIGKILL from the last checkpoint; the table equals the batch answer', async () => {
  expect(
    (await kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--nats', nats.url])).code,
  ).toBe(0);
  const checkpoints = await CheckpointStore.open(nats.nc);
  const jsm = await jetstreamManager(nats.nc);
  const lastSequences = async () => {
    const last: number[] = [];
    for (let partition = 0; partition < PARTITIONS; partition++)
      last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
    return last;
  };

  // 1. First run, stopped with SIGTERM: the final checkpoint is at each partition's last sequence.
  await produce(clicks(0, 1500), 'first');
  let worker = startWorker('disk-a');
  await caughtUp(worker);
  expect(await worker.stop()).toBe(0);
  const afterFirst = await lastSequences();
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const manifest = await checkpoints.read({ job: 'clicks', version: 'v1', partition });
    expect(manifest?.sequence).toBe(afterFirst[partition]);
  }

  // 2. Same disk: restored locally, and only the new events are processed.
  await produce(clicks(1500, 3000), 'second');
  worker = startWorker('disk-a');
  let status = await caughtUp(worker);
  expect(restoredFrom(worker)).toEqual(['local', 'local', 'local', 'local']);
  const afterSecond = await lastSequences();
  expect(status.reduce((sum, task) => sum + task.processed, 0)).toBe(
    afterSecond.reduce((sum, last, p) => sum + last - afterFirst[p]!, 0),
  );
  expect(await worker.stop()).toBe(0);

  // 3. A fresh disk: the checkpoint comes from the Object Store; then SIGKILL mid-run. From here
  // each task holds at most 4 open windows in memory (it has ≈ 10): the rest spill to its scratch
  // RocksDB after every batch and are read back when needed, and the SIGKILL leaves them behind.
  const spilling = ['--window-memory-rows', '4'];
  await produce(clicks(3000, 4500), 'third');
  worker = startWorker('disk-b', spilling);
  await caughtUp(worker);
  expect(await spilledWindows(worker)).toBeGreaterThan(0);
  expect(restoredFrom(worker)).toEqual(['object-store', 'object-store', 'object-store', 'object-store']);
  await produce(clicks(4500, 5000), 'fourth');
  await worker.kill();

  // 4. After SIGKILL: resumes at the committed checkpoint + 1 and catches up.
  const committed = await Promise.all(
    Array.from({ length: PARTITIONS }, (_, partition) => checkpoints.read({ job: 'clicks', version: 'v1', partition })),
  );
  worker = startWorker('disk-b', spilling);
  status = await caughtUp(worker);
  const afterAll = await lastSequences();
  for (const task of status)
    expect(task.processed).toBe(afterAll[task.partition]! - committed[task.partition]!.sequence);
  expect(await worker.stop()).toBe(0);

  // The table and the late output equal the batch reference over the whole log.
  const job = await clicksReference(JOB);
  const log = await readTopicLog<Click>(nats.nc, 'clicks', PARTITIONS);
  expect(log).toHaveLength(5000);
  const expected = expectedResults(job, log, PARTITIONS);
  expect(expected.windows.size).toBeGreaterThan(400);
  expect(await readServingTable(nats.nc, 'clicks', 'v1')).toEqual(expected.windows);
  const late = await readLateRecords(nats.nc, 'clicks', 'v1');
  expect(expected.late.length).toBeGreaterThan(20);
  expect(late.map((record) => (record.value as Click).id).sort((a, b) => a - b)).toEqual(
    expected.late.map((click) => click.id).sort((a, b) => a - b),
  );
});
