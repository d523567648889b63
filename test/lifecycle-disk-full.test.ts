// A task whose writes keep failing (a full disk, a full JetStream store) must not make things
// worse: no wipe and re-download of its local state, retries that back off, `failed` with the
// reason on /readyz, in kappa_task_failures_total{reason} and in the log; and once the writes are
// accepted again it recovers and its table equals the batch reference.
//
// - Local disk: a standalone worker in this process whose RocksDB stores refuse every write while
//   the "disk" is full (injected at the TaskStore boundary; real RocksDB underneath, the refusal
//   is what TaskStore reports for a batch RocksDB did not apply).
// - A local copy RocksDB reports corrupt is the one case that is wiped and downloaded.
// - JetStream: a real standalone worker process, with the checkpoint object bucket's stream
//   capped at the bytes it holds, so every upload is refused by the server itself.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buckets, streams } from '../protocol/index.js';
import { StateError } from '../state/errors.js';
import { TaskStore } from '../state/task-store.js';
import { systemClock } from '../protocol/clock.js';
import { loadJob } from '../worker/job.js';
import { WorkerMetrics } from '../worker/metrics.js';
import { StandaloneWorker } from '../worker/standalone.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { clickRange, clicksReference, produceClicks, type Click } from './harness/clicks.js';
import { expectedResults, readServingTable, readTopicLog } from './harness/expected-results.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 2;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-disk-full-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

async function produce(topic: string, from: number, to: number): Promise<void> {
  await produceClicks(nats.url, join(dir, `${topic}-${from}.jsonl`), clickRange(from, to), topic);
}

async function lastSequences(topic: string): Promise<number[]> {
  const jsm = await jetstreamManager(nats.nc);
  const last: number[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++)
    last.push((await jsm.streams.info(streams.partition(topic, partition))).state.last_seq);
  return last;
}

async function expectTableEqualsBatchAnswer(topic: string, job: string, events: number): Promise<void> {
  const log = await readTopicLog<Click>(nats.nc, topic, PARTITIONS);
  expect(log).toHaveLength(events);
  const expected = expectedResults(await clicksReference(JOB), log, PARTITIONS);
  expect(expected.windows.size).toBeGreaterThan(50);
  expect(await readServingTable(nats.nc, job, 'v1')).toEqual(expected.windows);
}

/** Samples of a metric in Prometheus text, summed over the series whose labels include `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    if (Object.entries(labels).every(([key, value]) => match[2]!.includes(`${key}="${value}"`)))
      sum += Number(match[3]);
  }
  return sum;
}

/** The `backoffMs` of every log line with `msg` (JSON lines), in order. */
function backoffsOf(lines: readonly string[], msg: string): number[] {
  return lines
    .filter((line) => line.includes(`"msg":"${msg}`))
    .map((line) => (JSON.parse(line) as { backoffMs: number }).backoffMs);
}

it('keeps the local state when RocksDB refuses writes (a full disk): restarts back off, reopen the same store, show the reason, and recover', async () => {
  expect(
    (await kappa(['topic', 'create', 'clicks', '--partitions', String(PARTITIONS), '--nats', nats.url])).code,
  ).toBe(0);
  await produce('clicks', 0, 1_000);
  const job = await loadJob(JOB);
  const logLines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({ write: (chunk, _encoding, done) => (logLines.push(...String(chunk).trim().split('\n')), done()) }),
  );
  let diskFull = false;
  const openStore = async (path: string): Promise<TaskStore> => {
    const store = await TaskStore.open(path);
    const write = store.write.bind(store);
    store.write = (...args) => {
      if (!diskFull) return write(...args);
      // What TaskStore reports when RocksDB does not apply a batch (ENOSPC gives "Batch was not applied").
      return Promise.reject(
        new StateError(
          'STATE_WRITE_FAILED',
          `task store ${path}: a write of ${args[0].length} puts and ${args[1]?.length ?? 0} deletes was refused (is the disk full?): Batch was not applied`,
        ),
      );
    };
    return store;
  };
  const metrics = new WorkerMetrics();
  const stateDir = join(dir, 'local-disk');
  const worker = await StandaloneWorker.start({
    nc: nats.nc,
    job,
    workerId: 'disk',
    stateDir,
    clock: systemClock,
    logger,
    metrics,
    checkpointIntervalMs: 100,
    openStore,
  });
  const metricsText = () => metrics.registry.metrics();
  try {
    let last = await lastSequences('clicks');
    const committed = () =>
      pollUntil(() => worker.progress(), {
        what: 'every partition processed and committed',
        until: (progress) => progress.every((task) => task.checkpointSequence === last[task.partition]),
        timeoutMs: 30_000,
        context: () => logLines.slice(-20).join('\n'),
      });
    await committed();
    // Marks the local stores: a wipe would remove them.
    const sentinels = Array.from({ length: PARTITIONS }, (_, partition) =>
      join(stateDir, 'clicks', 'v1', String(partition), 'kept'),
    );
    for (const sentinel of sentinels) writeFileSync(sentinel, '');

    diskFull = true;
    await produce('clicks', 1_000, 1_500);
    await pollUntil(() => backoffsOf(logLines, 'task failed; restarting').length >= 4 * PARTITIONS, {
      what: 'four restarts of each task',
      timeoutMs: 30_000,
    });

    // Back-off doubles per task: 0.5 s, 1 s, 2 s, 4 s.
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const ofTask = logLines.filter((line) => line.includes(`"partition":${partition},`));
      expect(backoffsOf(ofTask, 'task failed; restarting').slice(0, 4)).toEqual([500, 1_000, 2_000, 4_000]);
    }
    expect(worker.notReadyReason()).toMatch(
      /^task clicks\/v1\/\d failed \(retrying with back-off\): task store .* was refused \(is the disk full\?\)/,
    );
    const failing = await metricsText();
    expect(metricSum(failing, 'kappa_task_failures_total', { reason: 'state-write' })).toBeGreaterThanOrEqual(
      4 * PARTITIONS,
    );
    // Every restart reopened the local copy: nothing wiped, nothing downloaded.
    expect(metricSum(failing, 'kappa_state_restores_total', { source: 'object-store' })).toBe(0);
    expect(metricSum(failing, 'kappa_state_restores_total', { source: 'local' })).toBeGreaterThanOrEqual(
      3 * PARTITIONS,
    );
    for (const sentinel of sentinels) expect(existsSync(sentinel), sentinel).toBe(true);

    diskFull = false;
    last = await lastSequences('clicks');
    await committed();
    expect(worker.notReadyReason()).toBeUndefined();
    expect(metricSum(await metricsText(), 'kappa_state_restores_total', { source: 'object-store' })).toBe(0);
  } finally {
    await worker.stop();
  }
  await expectTableEqualsBatchAnswer('clicks', 'clicks', 1_500);
}, 90_000);

it('wipes and downloads a local copy only when RocksDB reports it corrupt', async () => {
  // The first test left the local stores of clicks v1 (and their marks) in `local-disk`.
  const stateDir = join(dir, 'local-disk');
  const store = join(stateDir, 'clicks', 'v1', '0');
  const manifestFile = readdirSync(store).find((name) => name.startsWith('MANIFEST-'))!;
  writeFileSync(join(store, manifestFile), Buffer.alloc(100, 7));
  const metrics = new WorkerMetrics();
  const worker = await StandaloneWorker.start({
    nc: nats.nc,
    job: await loadJob(JOB),
    workerId: 'disk',
    stateDir,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    metrics,
    checkpointIntervalMs: 100,
  });
  try {
    await pollUntil(() => worker.notReadyReason(), {
      what: 'both tasks running',
      until: (reason) => reason === undefined,
      timeoutMs: 30_000,
    });
    const text = await metrics.registry.metrics();
    expect(metricSum(text, 'kappa_state_restores_total', { partition: '0', source: 'object-store' })).toBe(1);
    expect(metricSum(text, 'kappa_state_restores_total', { partition: '1', source: 'local' })).toBe(1);
  } finally {
    await worker.stop();
  }
  await expectTableEqualsBatchAnswer('clicks', 'clicks', 1_500);
});

it('retries a checkpoint JetStream refuses (a full store) in place: no restart, no download, not ready with the reason, then recovers', async () => {
  const outJob = join(dir, 'clicks-js.mjs');
  writeFileSync(
    outJob,
    `import base from ${JSON.stringify(`file://${JOB}`)};\nexport default { ...base, name: 'clicksjs', source: { topic: 'clicksjs' } };\n`,
  );
  expect(
    (await kappa(['topic', 'create', 'clicksjs', '--partitions', String(PARTITIONS), '--nats', nats.url])).code,
  ).toBe(0);
  await produce('clicksjs', 0, 1_000);
  const worker = new KappaProcess([
    'worker',
    '--job',
    outJob,
    '--standalone',
    '--id',
    'js',
    '--nats',
    nats.url,
    '--state-dir',
    join(dir, 'js'),
    '--http-port',
    '0',
    '--checkpoint-interval',
    '200ms',
  ]);
  processes.push(worker);
  const [, port] = await worker.waitForLog(/"httpPort":(\d+)/);
  const url = `http://127.0.0.1:${port}`;
  let last = await lastSequences('clicksjs');
  const committed = () =>
    pollUntil(
      async () => (await (await fetch(`${url}/status`)).json()) as { partition: number; checkpointSequence: number }[],
      {
        what: 'every partition processed and committed',
        until: (status) =>
          status.length === PARTITIONS && status.every((task) => task.checkpointSequence === last[task.partition]),
        timeoutMs: 30_000,
        context: () => worker.logs.slice(-3000),
      },
    );
  await committed();
  const restoresBefore = metricSum(await (await fetch(`${url}/metrics`)).text(), 'kappa_state_restores_total', {});

  // The object bucket's stream may hold no more than it does now: every upload is refused.
  const jsm = await jetstreamManager(nats.nc);
  const objects = `OBJ_${buckets.checkpointData}`;
  const info = await jsm.streams.info(objects);
  await jsm.streams.update(objects, { ...info.config, max_bytes: info.state.bytes });
  await produce('clicksjs', 1_000, 1_500);

  const lines = () => worker.logs.split('\n');
  await pollUntil(() => backoffsOf(lines(), 'checkpoint failed; retrying it in place').length >= 4 * PARTITIONS, {
    what: 'four failed commits of each task',
    timeoutMs: 30_000,
    context: () => worker.logs.slice(-3000),
  });
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const ofTask = lines().filter((line) => line.includes(`"partition":${partition},`));
    expect(backoffsOf(ofTask, 'checkpoint failed; retrying it in place').slice(0, 4)).toEqual([
      500, 1_000, 2_000, 4_000,
    ]);
  }
  const readyz = await fetch(`${url}/readyz`);
  expect(readyz.status).toBe(503);
  expect(await readyz.text()).toMatch(
    /^not ready: task clicksjs\/v1\/\d failed \(retrying with back-off\): checkpoint \d+ of clicksjs\.v1\.\d: upload failed: .*maximum bytes/,
  );
  const failing = await (await fetch(`${url}/metrics`)).text();
  expect(metricSum(failing, 'kappa_task_failures_total', { reason: 'checkpoint' })).toBeGreaterThanOrEqual(
    4 * PARTITIONS,
  );
  // Retried in place: the task never restarted, so its state was neither reopened nor downloaded.
  expect(metricSum(failing, 'kappa_state_restores_total', {})).toBe(restoresBefore);
  expect(metricSum(failing, 'kappa_task_restarts_total', {})).toBe(0);

  await jsm.streams.update(objects, { ...info.config, max_bytes: -1 });
  last = await lastSequences('clicksjs');
  await committed();
  expect((await fetch(`${url}/readyz`)).status).toBe(200);
  expect(
    metricSum(await (await fetch(`${url}/metrics`)).text(), 'kappa_state_restores_total', { source: 'object-store' }),
  ).toBe(0);
  expect(await worker.stop()).toBe(0);
  await expectTableEqualsBatchAnswer('clicksjs', 'clicksjs', 1_500);
}, 90_000);
