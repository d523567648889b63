// Chaos across the repartition hop: a job keyed by `user` over a topic produced by `page`, on a
// 3-node JetStream cluster with everything replicated 3 times, while a producer keeps writing.
// Workers are SIGKILLed and restarted several times, so route tasks (publishing to the
// repartition topic) and keyed tasks (reading it) both die mid-batch and restart from their
// checkpoints. At the end every count equals an independent count over everything produced:
// a lost event would make a count smaller, an event doubled across the hop larger.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import { partitionOf, streams, subjects } from '../protocol/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { untilStagesCaughtUp } from './harness/stages.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsCluster } from './harness/use-nats.js';
import { countsBehindHop, sortCountRows, type CountRow } from './reference/counts-behind-a-hop.js';

const PARTITIONS = 4;
const WINDOW_MS = 5_000;
const OUT_OF_ORDERNESS_MS = 2_000;
const ENV = { KAPPA_REPLICAS: '3' };
const JOB = 'views-per-user';
const TOPIC = 'views';

const nats = useNatsCluster({ connection: { maxReconnectAttempts: -1, reconnectTimeWait: 250 } });
let dir: string;
let urls: string;
const processes: KappaProcess[] = [];

interface View {
  id: number;
  user: string;
  page: string;
  ts: number;
}

beforeAll(() => {
  urls = nats.urls.join(',');
  dir = mkdtempSync(join(tmpdir(), 'kappa-hop-chaos-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

function spawn(args: string[]): KappaProcess {
  const process = new KappaProcess([...args, '--nats', urls, '--http-port', '0', '--log-level', 'warn'], ENV);
  processes.push(process);
  return process;
}

const processLogs = () => processes.map((process) => process.logs.slice(-1500)).join('\n---\n');

it('loses and doubles no event across the hop while workers running both stages are SIGKILLed', async () => {
  const jobFile = join(dir, 'job.mjs');
  writeFileSync(
    jobFile,
    `export default {
  name: '${JOB}', version: 'v1', source: { topic: '${TOPIC}' },
  key: 'user', time: (view) => view.ts,
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  window: { kind: 'tumbling', size: '${WINDOW_MS}ms' },
  aggregate: { init: () => 0, add: (count) => count + 1 },
};
`,
  );
  const created = await kappa(
    ['topic', 'create', TOPIC, '--partitions', String(PARTITIONS), '--replicas', '3', '--key', 'page', '--nats', urls],
    { env: ENV },
  );
  expect(created.code, created.stderr).toBe(0);
  spawn(['coordinator', '--id', 'c1', '--session-timeout', '3s', '--lease-ttl', '2s']);
  const workerArgs = (id: string) => [
    'worker',
    '--job',
    jobFile,
    '--id',
    id,
    '--threads',
    '2',
    '--state-dir',
    join(dir, id),
    '--checkpoint-interval',
    '700ms',
  ];
  const workers = new Map(['w1', 'w2'].map((id) => [id, spawn(workerArgs(id))]));
  await pollUntil(() => leaderStatus(nats.nc), {
    what: '2 workers registered',
    until: (view) => view.workers.length === 2,
    timeoutMs: 60_000,
    context: processLogs,
  });
  const started = await kappa(['start', JOB, '--version', 'v1', '--nats', urls], { env: ENV });
  expect(started.code, started.stderr + started.stdout).toBe(0);

  // Pages chosen so every source partition gets events (an empty one would hold the minimum back).
  const pages = Array.from({ length: 40 }, (_, index) => `/p${index}`);
  expect(new Set(pages.map((page) => partitionOf(page, PARTITIONS))).size).toBe(PARTITIONS);
  const producer = await Producer.forTopic(nats.nc, TOPIC, { ackTimeoutMs: 2_000, retryForMs: 120_000 });
  const startMs = Date.UTC(2026, 10, 24, 12);
  const events: View[] = [];
  let producing = true;
  const production = (async () => {
    while (producing) {
      for (let index = 0; index < 100; index++) {
        const id = events.length;
        const view = { id, user: `u${(id * 31) % 23}`, page: pages[(id * 7) % pages.length]!, ts: 0 };
        view.ts = startMs + id * 20 - ((id * 7919) % 1500);
        events.push(view);
        if (!producer.publish({ key: view.page, time: view.ts, value: view })) await producer.ready();
      }
      await sleep(100);
    }
    await producer.flush();
  })();

  // Both stages run on both workers; every kill interrupts route and keyed tasks alike.
  const stagesOf = async (worker: string) =>
    new Set(
      (await leaderStatus(nats.nc)).tasks
        .filter((task) => task.worker === worker)
        .map((task) => (task.stage === undefined ? 'keyed' : 'route')),
    );
  await sleep(3_000);
  const faults: string[] = [];
  for (const id of ['w1', 'w2', 'w1', 'w2']) {
    faults.push(`SIGKILL ${id} holding ${[...(await stagesOf(id))].sort().join('+') || 'nothing'}`);
    await workers.get(id)!.kill();
    await sleep(1_500);
    workers.set(id, spawn(workerArgs(id)));
    await sleep(3_000);
  }
  producing = false;
  await production;
  expect(faults.filter((fault) => fault.includes('keyed+route')).length, faults.join('; ')).toBeGreaterThan(0);

  const expected = countsBehindHop(events, {
    partitionedBy: (view) => view.page,
    partitions: PARTITIONS,
    key: (view) => view.user,
    time: (view) => view.ts,
    windowMs: WINDOW_MS,
    outOfOrdernessMs: OUT_OF_ORDERNESS_MS,
  });
  await untilStagesCaughtUp(nats.nc, {
    job: JOB,
    version: 'v1',
    sourceTopic: TOPIC,
    repartitioned: true,
    keyedWatermark: expected.watermark,
    timeoutMs: 120_000,
    context: processLogs,
  });
  const viewed = await kappa(['view', JOB, '--version', 'v1', '--json', '--nats', urls], { env: ENV });
  expect(viewed.code, viewed.stderr).toBe(0);
  const table = sortCountRows(
    viewed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as CountRow),
  );
  expect(expected.rows.length).toBeGreaterThan(50);
  expect(table).toEqual(expected.rows);
  // Nothing was set aside either.
  expect(await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter(JOB, 'v1'))).toHaveLength(0);
  expect(await readSubject(nats.nc, streams.lateData, subjects.lateData(JOB, 'v1'))).toHaveLength(0);
}, 300_000);
