// Hybrid replay under failures, with real processes on a 3-node NATS cluster (everything with 3
// replicas): while a producer keeps writing, the coordinator leader keeps sealing segments and
// trimming the streams, and is SIGKILLed while it archives; a job version replays from earliest
// and its worker is SIGKILLed in the archive phase and again at the hand-over to the live stream.
// Afterwards: every partition's catalog is contiguous, every segment's object matches its
// checksum, archive and stream together hold every produced event exactly once, and the table
// and late set equal the batch reference over the whole log. Run `npm run build` first.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ArchiveCatalog, assertContiguous } from '../archive/catalog.js';
import { readTopicArchive } from '../archive/reader.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { Producer } from '../client/producer.js';
import { decodeEvent, type ClusterStatus } from '../protocol/index.js';
import { kappa as runKappa, KappaProcess } from './harness/cli.js';
import { clicksReference, clickWithLateOnes, type Click } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import {
  expectedResults,
  readLateRecords,
  readTopicLog,
  viewedTable,
  type LoggedEvent,
} from './harness/expected-results.js';
import { pollUntil } from './harness/poll.js';
import { useNatsCluster } from './harness/use-nats.js';

const nats = useNatsCluster({ connection: { maxReconnectAttempts: -1, reconnectTimeWait: 250 } });
const ENV = { KAPPA_REPLICAS: '3' };
const PARTITIONS = 3;
const SEGMENT = 4_000;
const JOB = 'hybrid_chaos';
const EXAMPLE = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
let dir: string;
let urls: string;
const processes: KappaProcess[] = [];

beforeAll(() => {
  urls = nats.urls.join(',');
  dir = mkdtempSync(join(tmpdir(), 'kappa-hybrid-chaos-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

function kappa(args: string[]) {
  return runKappa([...args, '--nats', urls], { env: ENV });
}

function spawn(args: string[]): KappaProcess {
  const child = new KappaProcess([...args, '--nats', urls], ENV);
  processes.push(child);
  return child;
}

const processLogs = () => processes.map((p) => p.logs.slice(-1500)).join('\n---\n');

function statusUntil(what: string, until: (view: ClusterStatus) => boolean, timeoutMs: number): Promise<ClusterStatus> {
  return pollUntil(() => leaderStatus(nats.nc), { what, until, timeoutMs, context: processLogs, intervalMs: 100 });
}

function coordinator(id: string): KappaProcess {
  return spawn([
    'coordinator',
    '--id',
    id,
    '--http-port',
    '0',
    '--session-timeout',
    '3s',
    '--lease-ttl',
    '2s',
    '--archive-interval',
    '200ms',
    '--log-level',
    'warn',
  ]);
}

/**
 * The example job with some work per event (the same result), so a replay of this size lasts
 * long enough to kill its worker in each phase.
 */
function jobModule(): string {
  const file = join(dir, 'job.mjs');
  writeFileSync(
    file,
    `import base from ${JSON.stringify(pathToFileURL(EXAMPLE).href)};
let sink = 0;
export default {
  ...base,
  name: '${JOB}',
  version: 'v1',
  source: { topic: 'visits' },
  aggregate: {
    init: base.aggregate.init,
    add: (totals, click) => {
      for (let index = 0; index < 50000; index++) sink = (sink + index * click.id) % 1000003;
      return base.aggregate.add(totals, click);
    },
  },
};
`,
  );
  return file;
}

function worker(id: string, job: string): KappaProcess {
  return spawn([
    'worker',
    '--job',
    job,
    '--id',
    id,
    '--threads',
    '2',
    '--state-dir',
    join(dir, id),
    '--http-port',
    '0',
    '--checkpoint-interval',
    '300ms',
    '--log-level',
    'warn',
  ]);
}

async function produce(producer: Producer, from: number, to: number): Promise<void> {
  for (let id = from; id < to; id++) {
    const click = clickWithLateOnes(id);
    if (!producer.publish({ key: click.user, time: click.ts, value: click })) await producer.ready();
  }
}

const tasksOf = (view: ClusterStatus) => view.tasks.filter((task) => task.job === JOB);

it('no segment lost, duplicated or half-recorded, and the table equals the reference, through killed workers and a killed archiving leader', async () => {
  const created = await kappa([
    'topic',
    'create',
    'visits',
    '--partitions',
    String(PARTITIONS),
    '--replicas',
    '3',
    '--key',
    'user',
    '--archive-after',
    String(SEGMENT),
    '--hot-retention',
    '1B',
  ]);
  expect(created.code, created.stderr).toBe(0);
  const producer = await Producer.forTopic(nats.nc, 'visits');
  await produce(producer, 0, 60_000);
  await producer.flush();

  // c1 leads and archives every 200 ms; c2 stands by.
  const c1 = coordinator('c1');
  await statusUntil('c1 leading', (view) => view.leader.coordinatorId === 'c1', 30_000);
  coordinator('c2');
  const catalog = await ArchiveCatalog.open(nats.nc, { replicas: 3 });
  const archivedEvents = async () =>
    (await catalog.readTopic('visits', PARTITIONS)).reduce(
      (sum, entry) => sum + entry.segments.reduce((count, segment) => count + segment.count, 0),
      0,
    );
  await pollUntil(async () => ((await archivedEvents()) >= 40_000 ? true : undefined), {
    what: 'the leader to archive most of the log',
    timeoutMs: 60_000,
    context: processLogs,
  });

  // More events keep coming; the leader is killed while it seals them.
  let produced = 60_000;
  let producing = true;
  const production = (async () => {
    while (producing && produced < 120_000) {
      await produce(producer, produced, produced + 1_000);
      produced += 1_000;
      await sleep(20);
    }
    await producer.flush();
  })();
  const before = await archivedEvents();
  await pollUntil(async () => ((await archivedEvents()) > before ? true : undefined), {
    what: 'the leader sealing the new events',
    timeoutMs: 30_000,
  });
  await c1.kill();
  await statusUntil('c2 leading', (view) => view.leader.coordinatorId === 'c2', 30_000);

  // The version replays from earliest: its worker dies in the archive phase, then at the hand-over.
  const job = jobModule();
  const w1 = worker('w1', job);
  const started = await kappa(['start', JOB, '--version', 'v1', '--from', 'earliest']);
  expect(started.code, started.stderr).toBe(0);
  await statusUntil(
    'v1 reading the archive with progress',
    (view) => tasksOf(view).some((task) => task.phase === 'archive' && (task.sequence ?? 0) > 2_000),
    60_000,
  );
  await w1.kill();
  const w2 = worker('w2', job);
  await statusUntil(
    'v1 handing over to the live stream',
    (view) =>
      tasksOf(view).some((task) => task.worker === 'w2' && task.state === 'running' && task.phase === undefined),
    120_000,
  );
  await w2.kill();
  worker('w3', job);

  producing = false;
  await production;
  await producer.close();

  // The archive: contiguous, every object as recorded, and with the stream every event once.
  const store = await NatsObjectSegmentStore.open(nats.nc);
  const archived = await readTopicArchive(store, catalog, 'visits', PARTITIONS); // checks each checksum
  const streamLog = await readTopicLog<Click>(nats.nc, 'visits', PARTITIONS);
  const log: LoggedEvent<Click>[] = [];
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const { segments } = await catalog.read('visits', partition);
    assertContiguous('visits', partition, segments);
    const end = segments.at(-1)?.lastSequence ?? 0;
    for (const message of archived[partition]!)
      log.push({ partition, sequence: message.sequence, value: decodeEvent(message.data).value as Click });
    // The stream still holds the newest archived segments: what is past the archive comes from it.
    for (const event of streamLog) if (event.partition === partition && event.sequence > end) log.push(event);
  }
  const ids = log.map((event) => event.value.id).sort((a, b) => a - b);
  expect(ids).toEqual(Array.from({ length: produced }, (_, index) => index));

  // v1 catches up with everything and equals the batch reference, late set included.
  await statusUntil(
    'v1 caught up',
    (view) => view.versions.some((version) => version.job === JOB && version.progress === 1),
    240_000,
  );
  const viewed = await kappa(['view', JOB, '--version', 'v1', '--json']);
  expect(viewed.code, viewed.stderr).toBe(0);
  const table = viewedTable(viewed.stdout);
  const expected = expectedResults(await clicksReference(EXAMPLE), log, PARTITIONS);
  expect(table).toEqual(expected.windows);
  const late = (await readLateRecords(nats.nc, JOB, 'v1')).map((record) => (record.value as Click).id);
  expect(late.sort((a, b) => a - b)).toEqual(expected.late.map((click) => click.id).sort((a, b) => a - b));
}, 600_000);
