// Checkpoint cost as the state grows, and recovery time after SIGKILL.
//
// Part 1: a task's keyed state of 10k, 100k and 1M keys (real RocksDB, real NATS Object Store
// and KV). The first commit uploads everything; then 1% of the keys change between commits.
// An incremental checkpoint must cost what changed, not the state size: the table prints the
// per-commit duration and bytes for both, and the restore (download) time of the whole state.
//
// Part 2: a standalone worker (real process) over a topic; it is SIGKILLed after catching up,
// more events arrive, and it is restarted: time from SIGKILL to caught up, against a fresh
// replay of the whole log by a new job version with no checkpoint, in the same run.
//
// Run: npx tsx bench/checkpoint.ts [sizes=10000,100000,1000000] [changed=0.01] [events=400000]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Producer } from '../client/producer.js';
import { createTopic } from '../client/topics.js';
import { streams } from '../protocol/index.js';
import { CheckpointStore } from '../state/checkpoint-store.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore, type WriteCapture } from '../state/task-store.js';
import { KappaProcess } from '../test/harness/cli.js';
import { startServer } from '../test/harness/nats-server.js';

const sizes = (process.argv[2] ?? '10000,100000,1000000').split(',').map(Number);
const changedFraction = Number(process.argv[3] ?? 0.01);
const recoveryEvents = Number(process.argv[4] ?? 1_000_000);
const RECOVERY_KEYS = 10_000;
const INCREMENTAL_ROUNDS = 5;

const server = await startServer();
const nc = await connect({ servers: server.url });
const dir = mkdtempSync(join(tmpdir(), 'kappa-bench-checkpoint-'));

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(2);

async function checkpointCost(keys: number): Promise<string> {
  const checkpoints = await CheckpointStore.open(nc);
  const task = checkpoints.forTask({ job: 'bench', version: `k${keys}`, partition: 0 }, 'bench');
  await task.claim(1, 0);
  const store = await TaskStore.open(join(dir, `state-${keys}`));
  const state = new KeyedState(store, { maxActiveKeys: keys + 1 });
  const names = Array.from({ length: keys }, (_, index) => `user-${index}`);
  let sequence = 0;
  const commit = async (changed: readonly string[], round: number) => {
    await state.activate(new Set(changed));
    for (const key of changed) state.put(key, 'w', 1_700_000_000_000, { clicks: round + 1, pages: round });
    const started = performance.now();
    const delta: WriteCapture = { puts: [], deletes: [] };
    await state.flush(delta);
    if (process.env.BENCH_DEBUG)
      console.error(`flush ${changed.length} rows: ${(performance.now() - started).toFixed(0)} ms`);
    const result = await task.commit({
      epoch: 1,
      sequence: (sequence += changed.length),
      engine: { watermark: { currentMs: sequence } },
      delta,
      store,
    });
    return { ms: performance.now() - started, bytes: result.bytesUploaded, kind: result.kind };
  };
  const first = await commit(names, 0);
  const rounds = [];
  for (let round = 1; round <= INCREMENTAL_ROUNDS; round++) {
    const changed = Array.from(
      { length: Math.max(1, Math.floor(keys * changedFraction)) },
      (_, index) => names[(index * 7919 + round * 104_729) % keys]!,
    );
    rounds.push(await commit(changed, round));
  }
  const restoreStore = await TaskStore.open(join(dir, `restore-${keys}`));
  const restoreStarted = performance.now();
  const restoredBytes = await task.restoreInto(restoreStore, task.manifest!);
  const restoreMs = performance.now() - restoreStarted;
  await restoreStore.close();
  await store.close();
  const incrementalMs = rounds.reduce((sum, round) => sum + round.ms, 0) / rounds.length;
  const incrementalBytes = rounds.reduce((sum, round) => sum + round.bytes, 0) / rounds.length;
  return [
    String(keys).padStart(9),
    `${first.ms.toFixed(0).padStart(8)} ms ${mib(first.bytes).padStart(8)} MiB (${first.kind})`,
    `${incrementalMs.toFixed(0).padStart(6)} ms ${mib(incrementalBytes).padStart(7)} MiB (${rounds.map((round) => round.kind[0]).join('')})`,
    `${(incrementalBytes / first.bytes).toFixed(4).padStart(8)}`,
    `${restoreMs.toFixed(0).padStart(7)} ms ${mib(restoredBytes).padStart(7)} MiB`,
  ].join(' | ');
}

async function lastSequences(client: NatsConnection, partitions: number): Promise<number[]> {
  const jsm = await jetstreamManager(client);
  const last: number[] = [];
  for (let partition = 0; partition < partitions; partition++)
    last.push((await jsm.streams.info(streams.partition('bench', partition))).state.last_seq);
  return last;
}

async function waitCaughtUp(worker: KappaProcess, partitions: number): Promise<void> {
  const [, port] = await worker.waitForLog(/"httpPort":(\d+)/, 60_000);
  const last = await lastSequences(nc, partitions);
  for (;;) {
    const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Array<{
      partition: number;
      sequence: number;
    }>;
    if (status.length === partitions && status.every((task) => task.sequence >= last[task.partition]!)) return;
    await sleep(50);
  }
}

async function recovery(): Promise<void> {
  const partitions = 4;
  await createTopic(nc, { name: 'bench', partitions });
  const producer = await Producer.forTopic(nc, 'bench');
  const startMs = Date.UTC(2026, 0, 1);
  const produce = async (from: number, to: number) => {
    for (let index = from; index < to; index++) {
      const time = startMs + index * 10;
      const user = `user-${(index * 7919) % RECOVERY_KEYS}`;
      if (!producer.publish({ key: user, time, value: { user, ts: time } })) await producer.ready();
    }
    await producer.flush();
  };
  await produce(0, recoveryEvents);
  const job = (version: string) => {
    const file = join(dir, `job-${version}.mjs`);
    writeFileSync(
      file,
      `export default { name: 'bench', version: '${version}', source: { topic: 'bench' }, key: (e) => e.user, time: (e) => e.ts,
        watermark: { maxOutOfOrderness: '1s' }, window: { kind: 'tumbling', size: '1m' },
        aggregate: { init: () => 0, add: (n) => n + 1 } };\n`,
    );
    return pathToFileURL(resolve(file)).pathname;
  };
  // One --id per version: the restart after SIGKILL takes its standalone lease over at once.
  const start = (version: string, stateDir: string) =>
    new KappaProcess([
      'worker',
      '--job',
      job(version),
      '--standalone',
      '--id',
      `bench-${version}`,
      '--nats',
      server.url,
      '--state-dir',
      join(dir, stateDir),
      '--http-port',
      '0',
      '--checkpoint-interval',
      '2s',
      '--log-level',
      'info',
    ]);

  let worker = start('v1', 'recovery');
  await waitCaughtUp(worker, partitions);
  await sleep(2_500); // let a checkpoint land after catching up
  await produce(recoveryEvents, recoveryEvents + recoveryEvents / 10);
  const killedAt = performance.now();
  await worker.kill();
  worker = start('v1', 'recovery');
  await waitCaughtUp(worker, partitions);
  const recoveryMs = performance.now() - killedAt;
  await worker.stop();

  const replayStarted = performance.now();
  const fresh = start('v2', 'replay');
  await waitCaughtUp(fresh, partitions);
  const replayMs = performance.now() - replayStarted;
  await fresh.stop();
  const total = recoveryEvents + recoveryEvents / 10;
  console.log(
    `recovery (${total} events, ${RECOVERY_KEYS} keys, 4 partitions): SIGKILL → restart → caught up in ${(recoveryMs / 1000).toFixed(2)} s ` +
      `(restore from checkpoint + ${recoveryEvents / 10} new events) vs ${(replayMs / 1000).toFixed(2)} s to replay the whole log without a checkpoint ` +
      `(${(replayMs / recoveryMs).toFixed(1)}× faster)`,
  );
}

try {
  console.log(
    `checkpoint cost, ${changedFraction * 100}% of keys changed between commits (${INCREMENTAL_ROUNDS} rounds):`,
  );
  console.log(
    '     keys |      first commit (all keys)      | incremental commit (avg)  | bytes ratio |  restore (download)',
  );
  for (const keys of sizes) console.log(await checkpointCost(keys));
  await recovery();
} finally {
  await nc.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}
