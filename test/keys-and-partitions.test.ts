// A job keyed by another field than the one the topic is partitioned by (README "Keys and
// partitions"): clicks produced by `page`, counted per `user` in tumbling windows, on topics of
// 1, 4 and 16 partitions, with real processes (a coordinator and a worker pool). The runtime
// inserts the repartition stage by itself; each table must equal an independent count per user and
// window over all events, for every window the keyed stage's watermark (the minimum over the source
// partitions' watermarks) has passed. And the safety net: a job that claims the topic's key while
// the producer keyed otherwise dead-letters the strays (`wrong-partition`) instead of counting them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import { partitionOf, streams, subjects } from '../protocol/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { untilStagesCaughtUp } from './harness/stages.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';
import { countsBehindHop, sortCountRows } from './reference/counts-behind-a-hop.js';

const OUT_OF_ORDERNESS_MS = 2_000;
const WINDOW_MS = 10_000;
const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

interface Click {
  id: number;
  user: string;
  page: string;
  ts: number;
}

/** One page name per partition of `partitions`, so every source partition has events (else its watermark holds the minimum back). */
function pagesCovering(partitions: number): string[] {
  const pages: string[] = [];
  for (let candidate = 0; pages.length < partitions; candidate++) {
    const page = `/page-${candidate}`;
    if (partitionOf(page, partitions) === pages.length) pages.push(page);
  }
  return pages;
}

/** Clicks 50 ms apart from 2026-11-24 12:00, up to 1.5 s out of order (less than the watermark bound: none late). */
function clicks(count: number, partitions: number): Click[] {
  const pages = pagesCovering(partitions);
  const start = Date.UTC(2026, 10, 24, 12);
  return Array.from({ length: count }, (_, id) => ({
    id,
    user: `u${(id * 7) % 11}`,
    page: pages[(id * 5) % pages.length]!,
    ts: start + id * 50 - ((id * 7919) % 1500),
  }));
}

/** The job module: count per user, keyed by the field `user`, over a topic produced by `page`. */
function writeJob(name: string, topic: string, key: string): string {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(
    file,
    `export default {
  name: '${name}', version: 'v1', source: { topic: '${topic}' },
  key: '${key}', time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  window: { kind: 'tumbling', size: '${WINDOW_MS}ms' },
  aggregate: { init: () => 0, add: (count) => count + 1 },
};
`,
  );
  return file;
}

async function viewTable(job: string): Promise<Array<{ key: string; start: number; end: number; value: number }>> {
  const viewed = await kappa(['view', job, '--version', 'v1', '--json', '--nats', nats.url]);
  expect(viewed.code, viewed.stderr).toBe(0);
  const lines = viewed.stdout.trim();
  return sortCountRows(lines === '' ? [] : lines.split('\n').map((line) => JSON.parse(line)));
}

function spawn(args: string[]): KappaProcess {
  const process = new KappaProcess([...args, '--nats', nats.url, '--http-port', '0', '--log-level', 'warn']);
  processes.push(process);
  return process;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-keys-'));
  const jobs = [1, 4, 16].map((partitions) =>
    writeJob(`per-user-${partitions}`, `per-user-${partitions}-clicks`, 'user'),
  );
  jobs.push(writeJob('claims-key', 'claims-key-clicks', 'user'));
  spawn(['coordinator', '--id', 'c1', '--session-timeout', '3s', '--lease-ttl', '2s']);
  spawn([
    'worker',
    '--id',
    'w1',
    '--threads',
    '2',
    '--state-dir',
    join(dir, 'w1'),
    ...jobs.flatMap((job) => ['--job', job]),
  ]);
  await pollUntil(async () => ((await leaderStatus(nats.nc)).workers.length === 1 ? true : undefined), {
    what: 'the worker registered',
    timeoutMs: 30_000,
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

describe('a job keyed by user over a topic produced by page', () => {
  it.each([1, 4, 16])('P = %i: the runtime repartitions, and the table equals the batch count', async (partitions) => {
    const job = `per-user-${partitions}`;
    const topic = `${job}-clicks`;
    const events = clicks(3_000, partitions);
    const file = join(dir, `${job}.jsonl`);
    writeFileSync(file, events.map((event) => JSON.stringify(event)).join('\n') + '\n');
    const created = await kappa(['topic', 'create', topic, '--partitions', String(partitions), '--nats', nats.url]);
    expect(created.code, created.stderr).toBe(0);
    const produced = await kappa([
      'produce',
      topic,
      '--file',
      file,
      '--key',
      'page',
      '--time',
      'ts',
      '--nats',
      nats.url,
    ]);
    expect(produced.code, produced.stderr).toBe(0);

    const started = await kappa(['start', job, '--version', 'v1', '--nats', nats.url]);
    expect(started.code, started.stderr + started.stdout).toBe(0);
    const expected = countsBehindHop(events, {
      partitionedBy: (event) => event.page,
      partitions,
      key: (event) => event.user,
      time: (event) => event.ts,
      windowMs: WINDOW_MS,
      outOfOrdernessMs: OUT_OF_ORDERNESS_MS,
    });
    await untilStagesCaughtUp(nats.nc, {
      job,
      version: 'v1',
      sourceTopic: topic,
      repartitioned: true,
      keyedWatermark: expected.watermark,
      context: () => processes.map((process) => process.logs.slice(-2000)).join('\n---\n'),
    });

    // Both stages ran: one route task per source partition, one keyed task per repartition partition.
    const tasks = (await leaderStatus(nats.nc)).tasks.filter((task) => task.job === job);
    expect(tasks.filter((task) => task.stage === 'route-' + topic)).toHaveLength(partitions);
    expect(tasks.filter((task) => task.stage === undefined)).toHaveLength(partitions);
    expect(expected.rows.length).toBeGreaterThan(100);
    expect(await viewTable(job)).toEqual(expected.rows);
  });
});

it('dead-letters events whose key is not the partition’s when a job wrongly claims the topic’s key', async () => {
  const job = 'claims-key';
  const topic = `${job}-clicks`;
  const partitions = 4;
  // The topic says it is partitioned by user, and the job believes it; but this producer keys by page.
  const created = await kappa(['topic', 'create', topic, '--partitions', '4', '--key', 'user', '--nats', nats.url]);
  expect(created.code, created.stderr).toBe(0);
  const events = clicks(400, partitions);
  const producer = await Producer.forTopic(nats.nc, topic);
  for (const event of events) producer.publish({ key: event.page, time: event.ts, value: event });
  await producer.close();
  const started = await kappa(['start', job, '--version', 'v1', '--nats', nats.url]);
  expect(started.code, started.stderr + started.stdout).toBe(0);

  // Read directly: one task per topic partition, no route stage.
  const strays = events.filter((event) => partitionOf(event.user, partitions) !== partitionOf(event.page, partitions));
  expect(strays.length).toBeGreaterThan(100);
  const letters = await pollUntil(
    async () => {
      const read = await readSubject(nats.nc, streams.deadLetter, subjects.deadLetter(job, 'v1'));
      return read.length >= strays.length ? read : undefined;
    },
    { what: 'a dead letter per stray event', timeoutMs: 60_000 },
  );
  expect(letters).toHaveLength(strays.length);
  expect(new Set(letters.map((letter) => letter.headers?.get('Kappa-Reason')))).toEqual(new Set(['wrong-partition']));
  expect(letters[0]!.headers?.get('Kappa-Error')).toMatch(/belongs to partition \d of 4/);
  const tasks = (await leaderStatus(nats.nc)).tasks.filter((task) => task.job === job);
  expect(tasks.map((task) => task.stage)).toEqual([undefined, undefined, undefined, undefined]);
  // Exactly the events that did land in their user's partition are counted: per partition, what
  // the watermark of those events (the strays do not move it) has passed.
  const landed = events.filter((event) => !strays.includes(event));
  const perPartition = [0, 1, 2, 3].map((partition) =>
    countsBehindHop(
      landed.filter((event) => partitionOf(event.user, partitions) === partition),
      {
        partitionedBy: (event) => event.user,
        partitions: 1,
        key: (event) => event.user,
        time: (event) => event.ts,
        windowMs: WINDOW_MS,
        outOfOrdernessMs: OUT_OF_ORDERNESS_MS,
      },
    ),
  );
  const rows = sortCountRows(perPartition.flatMap((partition) => partition.rows));
  await untilStagesCaughtUp(nats.nc, { job, version: 'v1', sourceTopic: topic, repartitioned: false });
  expect(rows.length).toBeGreaterThan(5);
  expect(await viewTable(job)).toEqual(rows);
});
