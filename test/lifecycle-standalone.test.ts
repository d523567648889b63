// Two standalone workers for one job version, with real processes. A second replica refuses with
// a one-line error and a non-zero exit while the first runs. A restart of the first under the
// same --id while the old process is only paused (SIGSTOP) takes the lease over and claims every
// task one epoch above its checkpoint; the paused one, resumed, finds itself fenced and exits
// non-zero. The serving table equals the batch reference over the whole log.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { streams } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { clickRange, clicksReference, produceClicks, type Click } from './harness/clicks.js';
import { expectedResults, readServingTable, readTopicLog } from './harness/expected-results.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-standalone-'));
  expect(
    (await kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--nats', nats.url])).code,
  ).toBe(0);
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

function standalone(id: string, stateDir: string): KappaProcess {
  const process = new KappaProcess([
    'worker',
    '--job',
    JOB,
    '--standalone',
    '--id',
    id,
    '--nats',
    nats.url,
    '--state-dir',
    join(dir, stateDir),
    '--http-port',
    '0',
    '--checkpoint-interval',
    '200ms',
  ]);
  processes.push(process);
  return process;
}

async function produce(from: number, to: number): Promise<void> {
  await produceClicks(nats.url, join(dir, `clicks-${from}.jsonl`), clickRange(from, to));
}

/** Waits until the worker's every partition is processed to the stream's last sequence. */
async function caughtUp(worker: KappaProcess): Promise<void> {
  const [, port] = await worker.waitForLog(/"httpPort":(\d+)/);
  const jsm = await jetstreamManager(nats.nc);
  const last: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
  await pollUntil(
    async () =>
      (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { partition: number; sequence: number }[],
    {
      what: 'the standalone worker caught up',
      until: (status) => status.length === PARTITIONS && status.every((task) => task.sequence >= last[task.partition]!),
      timeoutMs: 60_000,
      context: () => worker.logs.slice(-2000),
    },
  );
}

function exited(process: KappaProcess): Promise<number | null> {
  return pollUntil(() => process.child.exitCode, {
    what: 'the process to exit',
    timeoutMs: 30_000,
    context: () => process.logs.slice(-2000),
  });
}

async function manifests() {
  const checkpoints = await CheckpointStore.open(nats.nc);
  return Promise.all(
    Array.from({ length: PARTITIONS }, (_, partition) => checkpoints.read({ job: 'clicks', version: 'v1', partition })),
  );
}

it('refuses a second standalone replica of a running job version with a one-line error and exit 1', async () => {
  await produce(0, 1_000);
  const first = standalone('first', 'first');
  await caughtUp(first);
  const second = standalone('second', 'second');
  expect(await exited(second)).toBe(1);
  const refusal = second.logs
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('kappa: '));
  expect(refusal).toEqual([
    expect.stringMatching(
      /^kappa: job clicks version v1 is already run by standalone worker 'first' \(pid \d+ on .+\): run one standalone worker per job version/,
    ),
  ]);
  // The first one kept its tasks: every checkpoint is its own.
  await produce(1_000, 1_200);
  await caughtUp(first);
  expect((await manifests()).map((manifest) => manifest?.workerId)).toEqual(['first', 'first', 'first', 'first']);
  expect(await first.stop()).toBe(0);
});

it('fences a paused replica when a restart under its id takes over, and the table equals the batch answer', async () => {
  const paused = standalone('first', 'first');
  await caughtUp(paused);
  const before = (await manifests()).map((manifest) => manifest!.epoch);
  paused.child.kill('SIGSTOP');
  // Restarted elsewhere under the same id (its pod rescheduled): takes the lease over at once.
  const restarted = standalone('first', 'elsewhere');
  await caughtUp(restarted);
  expect((await manifests()).map((manifest) => manifest!.epoch)).toEqual(before.map((epoch) => epoch + 1));
  await produce(1_200, 2_000);
  paused.child.kill('SIGCONT');
  // The paused one wakes up fenced (its lease renewal or its next commit is refused) and exits.
  expect(await exited(paused)).toBe(1);
  expect(paused.logs).toMatch(
    /kappa: (lost the standalone lease|task clicks\.v1\.\d is owned under epoch|checkpoint of clicks\.v1\.\d refused)/,
  );
  await caughtUp(restarted);
  expect((await manifests()).map((manifest) => manifest!.epoch)).toEqual(before.map((epoch) => epoch + 1));
  expect(await restarted.stop()).toBe(0);

  const log = await readTopicLog<Click>(nats.nc, 'clicks', PARTITIONS);
  expect(log).toHaveLength(2_000);
  const expected = expectedResults(await clicksReference(JOB), log, PARTITIONS);
  expect(await readServingTable(nats.nc, 'clicks', 'v1')).toEqual(expected.windows);
});
