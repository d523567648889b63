// Hybrid replay end to end with real processes (the built CLI, a coordinator, two workers, a
// nats-server): 200,000 events are produced and v1 streams them; then most of the log is sealed
// into the archive and hot retention removes the archived range from the streams; more events
// come, which v1 reads live. v2 (the same logic) replays from earliest while v1 serves: it reads
// the archive, then the live stream from where the archive ends, and is cut over once caught up.
// v2's table equals the batch reference over every event and v1's table (the pure streaming run
// of the same events), and its late set equals v1's and the reference's. v2's worker counts the
// segments it read; v1's none. Run `npm run build` first.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { readTopicArchive } from '../archive/reader.js';
import { ArchiveCatalog } from '../archive/catalog.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { Producer } from '../client/producer.js';
import { decodeEvent, streams } from '../protocol/index.js';
import { kappa as runKappa, KappaProcess, workerArgs } from './harness/cli.js';
import { derivedJobModule } from './harness/job-modules.js';
import { clicksReference, clickWithLateOnes, type Click } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import {
  expectedResults,
  readLateRecords,
  readTopicLog,
  viewedTable,
  type LoggedEvent,
} from './harness/expected-results.js';
import { freePort } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
const dir = mkdtempSync(join(tmpdir(), 'kappa-hybrid-'));
const processes: KappaProcess[] = [];
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

const PARTITIONS = 3;
const ARCHIVED_EVENTS = 200_000;
const LIVE_EVENTS = 20_000;
const SEGMENT = 10_000;
const JOB = 'hybrid_clicks';
const EXAMPLE = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

function kappa(args: string[]) {
  return runKappa([...args, '--nats', nats.url]);
}

function spawn(args: string[]): KappaProcess {
  const child = new KappaProcess([...args, '--nats', nats.url]);
  processes.push(child);
  return child;
}

/** The example job under this test's name: v1 and v2 run the same logic, so their tables must agree. */
function jobModule(version: string): string {
  return derivedJobModule(dir, version, EXAMPLE, { name: JOB, version, source: { topic: 'visits' } });
}

/** Clicks `from`…`to` − 1 (some late: clickWithLateOnes). */
async function produce(from: number, to: number): Promise<void> {
  const producer = await Producer.forTopic(nats.nc, 'visits');
  for (let id = from; id < to; id++) {
    const click = clickWithLateOnes(id);
    if (!producer.publish({ key: click.user, time: click.ts, value: click })) await producer.ready();
  }
  await producer.close();
}

async function tableOf(version: string): Promise<Map<string, unknown>> {
  const viewed = await kappa(['view', JOB, '--version', version, '--json']);
  expect(viewed.code, viewed.stderr).toBe(0);
  return viewedTable(viewed.stdout);
}

async function caughtUp(version: string): Promise<void> {
  await pollUntil(
    async () => {
      const view = (await leaderStatus(nats.nc)).versions.find((candidate) => candidate.version === version);
      return view?.progress === 1 ? true : undefined;
    },
    { what: `${version} caught up`, timeoutMs: 120_000 },
  );
}

/** A worker carrying one version, its /metrics on `httpPort`. */
function worker(version: string, httpPort: number): KappaProcess {
  return spawn(
    workerArgs({
      jobs: [jobModule(version)],
      id: `w-${version}`,
      stateDir: join(dir, version),
      httpPort,
      checkpointInterval: '1s',
    }),
  );
}

async function segmentsRead(metricsPort: number, version: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text
    .split('\n')
    .find((candidate) => candidate.startsWith(`kappa_archive_segments_read_total{job="${JOB}",version="${version}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('hybrid replay', () => {
  it('v2 replays the archive, then the live stream, and equals the streaming run and the batch reference', async () => {
    const created = await kappa([
      'topic',
      'create',
      'visits',
      '--partitions',
      String(PARTITIONS),
      '--key',
      'user',
      '--archive-after',
      String(SEGMENT),
      '--hot-retention',
      '1B',
    ]);
    expect(created.code, created.stderr).toBe(0);
    await produce(0, ARCHIVED_EVENTS);
    const archivedLog = await readTopicLog<Click>(nats.nc, 'visits', PARTITIONS);
    expect(archivedLog).toHaveLength(ARCHIVED_EVENTS);

    // The leader archives only on `kappa topic archive` here, so v1 is a pure streaming run.
    spawn(['coordinator', '--id', 'c1', '--http-port', '0', '--archive-interval', '1h']);
    const w1Port = await freePort();
    worker('v1', w1Port);
    const v1 = await kappa(['replay', JOB, '--version', 'v1', '--from', 'earliest', '--cutover', 'auto']);
    expect(v1.code, v1.stderr).toBe(0);
    await caughtUp('v1');

    // Seal the log into segments of 10,000; hot retention (1 byte) drops the archived ranges.
    const sealed = await kappa(['topic', 'archive', 'visits']);
    expect(sealed.code, sealed.stderr).toBe(0);
    const jsm = await jetstreamManager(nats.nc);
    const catalog = await ArchiveCatalog.open(nats.nc);
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const { segments } = await catalog.read('visits', partition);
      const { state } = await jsm.streams.info(streams.partition('visits', partition));
      expect(segments.length).toBeGreaterThan(5);
      // Hot retention removed whole archived segments, all but the newest few, from the stream.
      expect(state.first_seq).toBeGreaterThan(segments.at(-3)!.lastSequence);
      expect(segments.some((segment) => segment.firstSequence === state.first_seq)).toBe(true);
    }
    // What the archive holds is the log as it was.
    const archived = await readTopicArchive(await NatsObjectSegmentStore.open(nats.nc), catalog, 'visits', PARTITIONS);
    expect(archived.flat().length).toBe(ARCHIVED_EVENTS);

    // More events, past the archive: v1 reads them live.
    await produce(ARCHIVED_EVENTS, ARCHIVED_EVENTS + LIVE_EVENTS);
    await caughtUp('v1');

    // v2 on a worker of its own, from earliest: the archive first, then the stream.
    const w2Port = await freePort();
    worker('v2', w2Port);
    const v2 = await kappa([
      'replay',
      JOB,
      '--version',
      'v2',
      '--from',
      'earliest',
      '--cutover',
      'auto',
      '--max-lag',
      '0',
      '--follow',
    ]);
    expect(v2.code, v2.stderr + v2.stdout).toBe(0);
    await caughtUp('v2');
    await pollUntil(
      async () =>
        (await leaderStatus(nats.nc)).versions.find((view) => view.version === 'v2')?.served ? true : undefined,
      { what: 'v2 served', timeoutMs: 30_000 },
    );

    // The whole log: the archived events as read before the trim, then the stream past them.
    const lastArchived = new Map<number, number>();
    for (const event of archivedLog)
      lastArchived.set(event.partition, Math.max(lastArchived.get(event.partition) ?? 0, event.sequence));
    const tail = (await readTopicLog<Click>(nats.nc, 'visits', PARTITIONS)).filter(
      (event) => event.sequence > lastArchived.get(event.partition)!,
    );
    expect(tail).toHaveLength(LIVE_EVENTS);
    const log: LoggedEvent<Click>[] = [...archivedLog, ...tail].sort(
      (a, b) => a.partition - b.partition || a.sequence - b.sequence,
    );
    // The archive's bytes decode to the same events.
    expect(
      archived.flatMap((messages) => messages.map((message) => (decodeEvent(message.data).value as Click).id)),
    ).toEqual(archivedLog.map((event) => event.value.id));

    const expected = expectedResults(await clicksReference(EXAMPLE), log, PARTITIONS);
    expect(expected.windows.size).toBeGreaterThan(1_000);
    expect(expected.late.length).toBeGreaterThan(100);
    const v2Table = await tableOf('v2');
    expect(v2Table).toEqual(expected.windows);
    expect(await tableOf('v1')).toEqual(v2Table);

    const lateIds = async (version: string) =>
      (await readLateRecords(nats.nc, JOB, version)).map((record) => (record.value as Click).id).sort((a, b) => a - b);
    const expectedLate = expected.late.map((click) => click.id).sort((a, b) => a - b);
    expect(await lateIds('v2')).toEqual(expectedLate);
    expect(await lateIds('v1')).toEqual(expectedLate);

    // v2 read every partition's segments (more than once only after a restart); v1 none.
    expect(await segmentsRead(w2Port, 'v2')).toBeGreaterThanOrEqual(
      (await Promise.all([0, 1, 2].map(async (p) => (await catalog.read('visits', p)).segments.length))).reduce(
        (sum, count) => sum + count,
        0,
      ),
    );
    expect(await segmentsRead(w1Port, 'v1')).toBe(0);
  }, 300_000);
});
