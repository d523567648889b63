// Chained jobs (README "Chained jobs"). A two-stage chain on a real nats-server: stage 1 counts
// clicks per item per tumbling window into the topic `item-counts` (keyed by window start, late
// clicks re-emitting windows as new revisions), stage 2 reads that topic and keeps the top 3 items
// of each window with `latestRevisions` into a KV serving table; the table must equal the top 3
// computed straight from the clicks. Both stages run in-process (TaskProcessor + JobSinks, one per
// partition); the topic between them is real. Then `latestRevisions` alone, and the leader's rule
// for replaying a chain: a second version of a job may not write the sink topic of another.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { startVersion } from '../coordinator/admin-api.js';
import type { JobVersionRecord } from '../coordinator/cluster-state.js';
import { Membership } from '../coordinator/membership.js';
import { versionView } from '../coordinator/status-view.js';
import { carrierOf } from '../coordinator/topic-resolution.js';
import { Producer } from '../client/producer.js';
import { createTopic } from '../client/topics.js';
import { latestRevisions, TaskTestDriver, type ActorContext, type OutputEvent } from '../index.js';
import { decodeEvent, jobVersionKey, ManualClock, streams, subjects, type CarriedVersion } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { KvTables } from '../tables/index.js';
import { validateJob, type JobSpec } from '../worker/job.js';
import { JobSinks } from '../worker/sinks.js';
import { TaskProcessor } from '../worker/task-processor.js';
import type { Output } from '../worker/types.js';
import { readSubject } from './harness/stream-reader.js';
import { cleanUpTaskStores, openStore } from './harness/task-stores.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
cleanUpTaskStores();

const WINDOW_MS = 10_000;
const ITEMS = 9;

interface Click {
  item: string;
  ts: number;
}

interface Ranked {
  item: string;
  clicks: number;
}

/** Most clicks first; ties by item name, so the order never depends on arrival. */
function byClicks(left: Ranked, right: Ranked): number {
  return right.clicks - left.clicks || (left.item < right.item ? -1 : left.item > right.item ? 1 : 0);
}

/**
 * Clicks over 80 s in produce order, popularity skewed towards low items; one in four arrives up
 * to 8 s late. Stage 1 allows 1 s out of order and 20 s of lateness, so late clicks re-emit
 * windows that already fired (new revisions) but none is ever too late to count.
 */
function clicks(): Click[] {
  let seed = 20_261_201;
  const random = () => (seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32;
  const produced: Array<Click & { arrival: number }> = [];
  for (let index = 0; index < 1_200; index++) {
    const ts = index * 66 + Math.floor(random() * 66);
    const item = `item-${Math.floor(random() * random() * ITEMS)}`;
    const arrival = random() < 0.25 ? ts + Math.floor(random() * 8_000) : ts;
    produced.push({ item, ts, arrival });
  }
  return produced.sort((left, right) => left.arrival - right.arrival).map(({ item, ts }) => ({ item, ts }));
}

/** The reference: top 3 items per window start, counted straight from the clicks. */
function topThreeByWindow(input: Click[]): Map<number, Ranked[]> {
  const counts = new Map<number, Map<string, number>>();
  for (const click of input) {
    const start = Math.floor(click.ts / WINDOW_MS) * WINDOW_MS;
    const window = counts.get(start) ?? new Map<string, number>();
    window.set(click.item, (window.get(click.item) ?? 0) + 1);
    counts.set(start, window);
  }
  return new Map(
    [...counts].map(([start, items]) => [
      start,
      [...items]
        .map(([item, clicks]) => ({ item, clicks }))
        .sort(byClicks)
        .slice(0, 3),
    ]),
  );
}

const countsJob = validateJob({
  name: 'item-counts',
  version: 'v1',
  source: { topic: 'clicks' },
  time: (click: Click) => click.ts,
  watermark: { maxOutOfOrderness: '1s' },
  window: { kind: 'tumbling', size: WINDOW_MS },
  allowedLateness: '20s',
  aggregate: { init: () => 0, add: (count: number) => count + 1 },
  sink: { kind: 'topic', topic: 'item-counts', key: (output: Output) => String(output.window!.start) },
});

const topJob = validateJob({
  name: 'top-items',
  version: 'v1',
  source: { topic: 'item-counts' },
  time: (output: OutputEvent) => output.time,
  watermark: { maxOutOfOrderness: 0 },
  sink: { kind: 'kv' },
  actor: {
    onEvent(ctx: ActorContext, output: OutputEvent<number>) {
      const latest = latestRevisions<number>(ctx);
      if (latest.apply(output).change === 'stale') return;
      const ranked = latest.current().map((kept) => ({ item: kept.key, clicks: kept.value }));
      ctx.emit({ window: output.window!.start, top: ranked.sort(byClicks).slice(0, 3) });
    },
  },
});

/**
 * Runs a job over every partition of its topic as the worker would, in batches of `batchSize`,
 * writing each batch's results through `sinks` twice (the second as a task restarted after a
 * crash would write them again), then the end of input.
 */
async function runStage(job: JobSpec, partitions: number, sinks: JobSinks, batchSize: number): Promise<void> {
  for (let partition = 0; partition < partitions; partition++) {
    const processor = new TaskProcessor(job, partition, new KeyedState(await openStore()), new ManualClock(0));
    const messages = await readSubject(
      nats.nc,
      streams.partition(job.topic, partition),
      subjects.partition(job.topic, partition),
    );
    for (let from = 0; from < messages.length; from += batchSize) {
      const batch = messages
        .slice(from, from + batchSize)
        .map((message) => ({ data: message.data, sequence: message.seq }));
      const result = await processor.processBatch(batch);
      await sinks.write(result);
      await sinks.write(result);
    }
    await sinks.write(await processor.endOfInput());
  }
}

async function topicEvents(topic: string, partitions: number): Promise<OutputEvent[]> {
  const events: OutputEvent[] = [];
  for (let partition = 0; partition < partitions; partition++)
    for (const message of await readSubject(
      nats.nc,
      streams.partition(topic, partition),
      subjects.partition(topic, partition),
    ))
      events.push(decodeEvent(message.data).value as OutputEvent);
  return events;
}

describe('a two-stage chain over a real topic', () => {
  it('keeps the top 3 items per window from a topic of per-window counts, equal to the top 3 counted from the clicks', async () => {
    await createTopic(nats.nc, { name: 'clicks', partitions: 3 });
    await createTopic(nats.nc, { name: 'item-counts', partitions: 2 });
    const input = clicks();
    const producer = await Producer.forTopic(nats.nc, 'clicks');
    for (const click of input) producer.publish({ key: click.item, time: click.ts, value: click });
    await producer.close();

    const countSinks = await JobSinks.open(nats.nc, countsJob);
    await runStage(countsJob, 3, countSinks, 97);
    await countSinks.close();

    // Stage 1 wrote several revisions of some windows, and each revision once (the second write of
    // every batch was deduplicated).
    const written = await topicEvents('item-counts', 2);
    const revisions = written.map((event) => `${event.id}#${event.revision}`);
    expect(new Set(revisions).size).toBe(revisions.length);
    expect(new Set(written.map((event) => event.id)).size).toBeLessThan(written.length);

    const tables = new KvTables(nats.nc);
    const topSinks = await JobSinks.open(nats.nc, topJob, tables);
    await runStage(topJob, 2, topSinks, 13);
    await topSinks.close();
    const page = await tables.page('top-items', 'v1', { limit: 1_000 });
    const table = new Map(
      page.rows.map((row) => {
        const value = row.value as { window: number; top: Ranked[] };
        expect(row.key).toBe(String(value.window));
        return [value.window, value.top];
      }),
    );
    const expected = topThreeByWindow(input);
    expect(expected.size).toBe(8);
    expect(new Map([...table].sort(([left], [right]) => left - right))).toEqual(expected);
  });
});

describe('latestRevisions', () => {
  it('tells a handler what each revision changed: added, replaced, retracted, or stale (older, repeated, or behind a retraction)', async () => {
    const driver = await TaskTestDriver.open({
      name: 'watcher',
      version: 'v1',
      source: { topic: 'upstream' },
      time: (event: OutputEvent) => event.time,
      watermark: { maxOutOfOrderness: 0 },
      actor: {
        onEvent(ctx: ActorContext, event: OutputEvent<number>) {
          const latest = latestRevisions<number>(ctx);
          const { change, previous } = latest.apply(event);
          if (event.id === 'clear') return latest.clear();
          ctx.emit([change, previous?.revision ?? null, latest.current().map((kept) => `${kept.id}=${kept.value}`)]);
        },
      },
    });
    const event = (id: string, revision: number, value: number | null, kind: OutputEvent['kind'] = 'update') => ({
      key: 'window-0',
      value: { id, revision, kind, key: id, time: 0, value },
    });
    await driver.pipeInput([
      event('b', 1, 10),
      event('a', 1, 1),
      event('a', 3, 3),
      event('a', 2, 2), // older than the kept revision 3
      event('a', 3, 3), // the same revision again (a replay past the duplicate window)
      event('b', 2, null, 'retract'),
      event('b', 1, 10), // behind the retraction: must not bring b back
      event('c', 5, null, 'retract'), // a retraction of an id never seen
      event('c', 6, 7), // newer than that retraction
    ]);
    expect(driver.readOutputs().map((output) => output.value)).toEqual([
      ['added', null, ['b=10']],
      ['added', null, ['a=1', 'b=10']],
      ['replaced', 1, ['a=3', 'b=10']],
      ['stale', 3, ['a=3', 'b=10']],
      ['stale', 3, ['a=3', 'b=10']],
      ['retracted', 1, ['a=3']],
      ['stale', null, ['a=3']],
      ['retracted', null, ['a=3']],
      ['added', null, ['a=3', 'c=7']],
    ]);
    await driver.pipeInput([event('clear', 1, 0), event('a', 1, 1)]);
    expect(driver.readOutputs().at(-1)?.value).toEqual(['added', null, ['a=1']]);
    await driver.close();
  });
});

describe('replaying a chain', () => {
  /** A leader whose one worker carries the given versions; `startVersion` as `kappa start`/`kappa replay` reach it. */
  function leader(carries: CarriedVersion[]) {
    const clock = new ManualClock(Date.UTC(2026, 11, 1));
    const membership = new Membership(6_000, clock);
    membership.register({ workerId: 'w1', capacity: 2, carries });
    const versions = new Map<string, JobVersionRecord>();
    const context = {
      versions,
      putVersion: async (record: JobVersionRecord) => void versions.set(jobVersionKey(record), record),
      reconcile: async () => {},
      view: (version: JobVersionRecord) =>
        versionView(
          { versions, tasks: new Map(), progress: new Map(), aliases: new Map(), workers: membership.live() },
          version,
        ),
      carrier: (key: string) => carrierOf(membership.live(), key),
      partitionsOf: async () => 2,
      planVersion: async (version: JobVersionRecord) => version,
      clock,
      logger: pino({ level: 'silent' }),
    };
    const start = (job: string, version: string) =>
      startVersion(context, { job, version, from: { kind: 'earliest' } } as Parameters<typeof startVersion>[1]);
    return { start, versions };
  }

  const counts = (version: string, sinkTopic: string): CarriedVersion => ({
    job: 'item-counts',
    version,
    topic: 'clicks',
    sink: 'topic',
    sinkTopic,
  });

  it("refuses a version that would write another version's sink topic, and says to give it its own", async () => {
    const { start, versions } = leader([
      counts('v1', 'item-counts'),
      counts('v2', 'item-counts'),
      counts('v3', 'item-counts-v3'),
      { job: 'other-counts', version: 'v9', topic: 'clicks', sink: 'topic', sinkTopic: 'item-counts' },
    ]);
    await start('item-counts', 'v1');
    const refusal = await start('item-counts', 'v2').catch((error: unknown) => error);
    expect(refusal).toMatchObject({ code: 'ADMIN_REJECTED' });
    expect((refusal as Error).message).toContain(
      "job item-counts version v2 writes its outputs to topic 'item-counts', which version v1 of the job (running) writes too",
    );
    expect((refusal as Error).message).toContain("Give v2 its own sink topic (e.g. 'item-counts-v2'");
    expect(versions.has(jobVersionKey({ job: 'item-counts', version: 'v2' }))).toBe(false);
    // Its own topic: started. Another job writing the same topic: its outputs have other ids, allowed.
    await start('item-counts', 'v3');
    await start('other-counts', 'v9');
    expect([...versions.values()].map((record) => `${record.job}/${record.version}`).sort()).toEqual([
      'item-counts/v1',
      'item-counts/v3',
      'other-counts/v9',
    ]);
    // A stopped v1 still refuses v2: the topic keeps what v1 wrote.
    const v1 = jobVersionKey({ job: 'item-counts', version: 'v1' });
    versions.set(v1, { ...versions.get(v1)!, state: 'retired' });
    await expect(start('item-counts', 'v2')).rejects.toMatchObject({ code: 'ADMIN_REJECTED' });
  });
});
