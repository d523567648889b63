// Chained jobs through the cluster (README "Chained jobs"): the chain of test/chain.test.ts run by
// real processes, a coordinator and one worker pool carrying both job modules. Stage 1 counts
// clicks (topic `clicks`, recording its key `item`, produced in chunks with `kappa produce --key
// item`) per item in tumbling windows into the topic `item-counts`, keyed by window start; clicks up
// to 8 s late re-emit windows that fired already (higher revisions), and some are too late even for
// the allowed lateness. Stage 2 reads `item-counts` directly and keeps the top 3 items per window with
// `latestRevisions` in its KV table. The table must equal the top 3 of the final counts of the
// windows stage 1 fired, computed from the clicks by the independent revision reference
// (test/reference/window-revisions.ts). Then replaying stage 1: a v2 writing v1's topic is refused
// with the advice to give it its own; with its own topic it is accepted and writes the same counts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { OutputEvent } from '../index.js';
import { decodeEvent, partitionOf, streams, subjects } from '../protocol/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { untilStagesCaughtUp } from './harness/stages.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';
import { windowRevisions } from './reference/window-revisions.js';

const WINDOW_MS = 10_000;
const OUT_OF_ORDERNESS_MS = 1_000;
const ALLOWED_LATENESS_MS = 5_000;
const CLICK_PARTITIONS = 3;
const COUNT_PARTITIONS = 2;
const ITEMS = 9;
/**
 * Clicks are produced in chunks, stage 1 catching up after each: a window fired in one chunk and
 * re-emitted in a later one reaches `item-counts` as two revisions, however the batches are cut.
 */
const CHUNKS = 6;
const CHUNK_CLICKS = 334;
const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

interface Click {
  item: string;
  ts: number;
}

interface Ranked {
  item: string;
  clicks: number;
}

/** Most clicks first; ties by item name (the order stage 2's actor sorts by). */
function byClicks(left: Ranked, right: Ranked): number {
  return right.clicks - left.clicks || (left.item < right.item ? -1 : left.item > right.item ? 1 : 0);
}

/**
 * Clicks over 130 s from 2026-11-24 12:00 in produce order, popularity skewed towards low items;
 * one in four arrives up to 8 s after its time. With 1 s out of order and 5 s of allowed lateness,
 * some late clicks re-emit a fired window and some come after the window was purged.
 */
function clicks(): Click[] {
  const start = Date.UTC(2026, 10, 24, 12);
  let seed = 20_261_124;
  const random = () => (seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32;
  const produced: Array<Click & { arrival: number }> = [];
  for (let index = 0; index < 2_000; index++) {
    const ts = start + index * 65 + Math.floor(random() * 65);
    const item = `item-${Math.floor(random() * random() * ITEMS)}`;
    const arrival = random() < 0.25 ? ts + Math.floor(random() * 8_000) : ts;
    produced.push({ item, ts, arrival });
  }
  return produced.sort((left, right) => left.arrival - right.arrival).map(({ item, ts }) => ({ item, ts }));
}

/**
 * The reference: per window start, the top 3 items by their final count, over the windows stage 1
 * fired (each window's last emission before the end of input: a running job never reaches it).
 */
function expectedTopThree(input: Click[]) {
  const emissions = windowRevisions(
    {
      sizeMs: WINDOW_MS,
      slideMs: WINDOW_MS,
      offsetMs: 0,
      maxOutOfOrdernessMs: OUT_OF_ORDERNESS_MS,
      allowedLatenessMs: ALLOWED_LATENESS_MS,
      aggregate: { init: () => 0, add: (count: number) => count + 1 },
      key: (click: Click) => click.item,
      time: (click: Click) => click.ts,
    },
    input,
    CLICK_PARTITIONS,
  );
  const finalCounts = new Map<string, number>(); // `${item}|${start}` → count
  // `${item}|${start}` → the revision each chunk of clicks left the window at: stage 1 has written it.
  const chunkRevisions = new Map<string, number[]>();
  const byWindow = new Map<number, Ranked[]>();
  let reemitted = 0;
  for (const [id, list] of emissions) {
    const fired = list.filter((emission) => emission.after !== 'end');
    if (fired.length === 0) continue;
    if (fired.length > 1) reemitted++;
    const [item, start] = id.split('|') as [string, string];
    const clicks = fired.at(-1)!.value;
    finalCounts.set(`${item}|${start}`, clicks);
    const lastOfChunk = new Map<number, number>();
    for (const emission of fired) lastOfChunk.set(Math.floor(Number(emission.after) / CHUNK_CLICKS), emission.revision);
    chunkRevisions.set(`${item}|${start}`, [...lastOfChunk.values()]);
    byWindow.set(Number(start), [...(byWindow.get(Number(start)) ?? []), { item, clicks }]);
  }
  const top = new Map([...byWindow].map(([start, ranked]) => [start, ranked.sort(byClicks).slice(0, 3)]));
  return { top, finalCounts, chunkRevisions, reemitted };
}

function countsModule(version: string, sinkTopic: string): string {
  const file = join(dir, `item-counts-${version}-${sinkTopic}.mjs`);
  writeFileSync(
    file,
    `export default {
  name: 'item-counts', version: '${version}', source: { topic: 'clicks' },
  key: 'item', time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  window: { kind: 'tumbling', size: '${WINDOW_MS}ms' },
  allowedLateness: '${ALLOWED_LATENESS_MS}ms',
  aggregate: { init: () => 0, add: (count) => count + 1 },
  sink: { kind: 'topic', topic: '${sinkTopic}', key: (output) => String(output.window.start) },
};
`,
  );
  return file;
}

function topItemsModule(): string {
  const file = join(dir, 'top-items.mjs');
  const api = pathToFileURL(resolve(import.meta.dirname, '../dist/index.js')).href;
  writeFileSync(
    file,
    `import { latestRevisions } from ${JSON.stringify(api)};
const byClicks = (left, right) =>
  right.clicks - left.clicks || (left.item < right.item ? -1 : left.item > right.item ? 1 : 0);
export default {
  name: 'top-items', version: 'v1', source: { topic: 'item-counts' },
  time: (output) => output.time,
  watermark: { maxOutOfOrderness: 0 },
  sink: { kind: 'kv' },
  actor: {
    onEvent(ctx, output) {
      const latest = latestRevisions(ctx);
      if (latest.apply(output).change === 'stale') return;
      const ranked = latest.current().map((kept) => ({ item: kept.key, clicks: kept.value }));
      ctx.emit({ window: output.window.start, top: ranked.sort(byClicks).slice(0, 3) });
    },
  },
};
`,
  );
  return file;
}

function spawn(args: string[]): KappaProcess {
  const process = new KappaProcess([...args, '--nats', nats.url, '--http-port', '0', '--log-level', 'warn']);
  processes.push(process);
  return process;
}

const logs = () => processes.map((process) => process.logs.slice(-2000)).join('\n---\n');

async function untilWorkers(ids: string[]): Promise<void> {
  await pollUntil(
    async () => {
      const workers = (await leaderStatus(nats.nc)).workers.map((worker) => worker.workerId).sort();
      return JSON.stringify(workers) === JSON.stringify([...ids].sort()) ? true : undefined;
    },
    { what: `the workers ${ids.join(', ')} registered`, timeoutMs: 30_000, context: logs },
  );
}

async function createTopic(topic: string, partitions: number, key?: string): Promise<void> {
  const args = ['topic', 'create', topic, '--partitions', String(partitions), '--nats', nats.url];
  const created = await kappa(key === undefined ? args : [...args, '--key', key]);
  expect(created.code, created.stderr).toBe(0);
}

/** The last sequence of every partition of a topic. */
async function lastSequences(topic: string, partitions: number): Promise<number[]> {
  const jsm = await jetstreamManager(nats.nc);
  return Promise.all(
    Array.from(
      { length: partitions },
      async (_, partition) => (await jsm.streams.info(streams.partition(topic, partition))).state.last_seq,
    ),
  );
}

/** Every event of a sink topic, as a downstream job receives them. */
async function topicEvents(topic: string, partitions: number): Promise<OutputEvent<number>[]> {
  const events: OutputEvent<number>[] = [];
  for (let partition = 0; partition < partitions; partition++)
    for (const message of await readSubject(
      nats.nc,
      streams.partition(topic, partition),
      subjects.partition(topic, partition),
    ))
      events.push(decodeEvent(message.data).value as OutputEvent<number>);
  return events;
}

/** The newest revision of each output id, as `${key}|${window start}` → value. */
function newestCounts(events: OutputEvent<number>[]): Map<string, number> {
  const newest = new Map<string, OutputEvent<number>>();
  for (const event of events) if ((newest.get(event.id)?.revision ?? 0) < event.revision) newest.set(event.id, event);
  return new Map([...newest.values()].map((event) => [`${event.key}|${event.window!.start}`, event.value]));
}

async function viewTopItems(): Promise<Map<number, Ranked[]>> {
  const viewed = await kappa(['view', 'top-items', '--version', 'v1', '--json', '--nats', nats.url]);
  expect(viewed.code, viewed.stderr).toBe(0);
  const lines = viewed.stdout.trim();
  const rows = lines === '' ? [] : lines.split('\n').map((line) => JSON.parse(line));
  return new Map(
    rows
      .map((row: { key: string; value: { window: number; top: Ranked[] } }) => {
        expect(row.key).toBe(String(row.value.window));
        return [row.value.window, row.value.top] as const;
      })
      .sort(([left], [right]) => left - right),
  );
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-chain-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

it('a two-stage chain of processes keeps the top 3 items per window, equal to the top 3 of the final counts of the windows stage 1 fired; a replay of stage 1 must get its own sink topic', async () => {
  const input = clicks();
  const expected = expectedTopThree(input);
  // Every clicks partition has clicks (else its watermark never moves), windows were re-emitted,
  // and some clicks came too late to count: the fired windows' final counts hold fewer clicks.
  const partitionsWithClicks = new Set(input.map((click) => partitionOf(click.item, CLICK_PARTITIONS)));
  expect(partitionsWithClicks.size).toBe(CLICK_PARTITIONS);
  expect(expected.reemitted).toBeGreaterThan(10);
  const firedStarts = new Set(expected.top.keys());
  const inFiredWindows = input.filter((click) => firedStarts.has(Math.floor(click.ts / WINDOW_MS) * WINDOW_MS)).length;
  const counted = [...expected.finalCounts.values()].reduce((sum, count) => sum + count, 0);
  expect(counted).toBeLessThan(inFiredWindows);
  expect(expected.top.size).toBeGreaterThanOrEqual(10);

  await createTopic('clicks', CLICK_PARTITIONS, 'item');
  await createTopic('item-counts', COUNT_PARTITIONS);
  spawn(['coordinator', '--id', 'c1']);
  spawn([
    'worker',
    '--id',
    'w1',
    '--threads',
    '2',
    '--state-dir',
    join(dir, 'w1'),
    '--job',
    countsModule('v1', 'item-counts'),
    '--job',
    topItemsModule(),
  ]);
  await untilWorkers(['w1']);
  for (const job of ['item-counts', 'top-items']) {
    const started = await kappa(['start', job, '--version', 'v1', '--nats', nats.url]);
    expect(started.code, started.stderr + started.stdout).toBe(0);
  }
  // Stage 1 reads `clicks` directly (the job keys by the field the topic records); once it has
  // written everything to `item-counts`, stage 2 reads that topic directly (keyed by window start).
  const stage1 = { job: 'item-counts', version: 'v1', sourceTopic: 'clicks', repartitioned: false, context: logs };
  const stage2 = { job: 'top-items', version: 'v1', sourceTopic: 'item-counts', repartitioned: false, context: logs };
  expect(Math.ceil(input.length / CHUNK_CLICKS)).toBe(CHUNKS);
  for (let chunk = 0; chunk < CHUNKS; chunk++) {
    const file = join(dir, `clicks-${chunk}.jsonl`);
    const clicksOfChunk = input.slice(chunk * CHUNK_CLICKS, (chunk + 1) * CHUNK_CLICKS);
    writeFileSync(file, clicksOfChunk.map((click) => JSON.stringify(click)).join('\n') + '\n');
    const produced = await kappa([
      'produce',
      'clicks',
      '--file',
      file,
      '--key',
      'item',
      '--time',
      'ts',
      '--nats',
      nats.url,
    ]);
    expect(produced.code, produced.stderr).toBe(0);
    await untilStagesCaughtUp(nats.nc, stage1);
  }
  await untilStagesCaughtUp(nats.nc, stage2);
  const tasks = (await leaderStatus(nats.nc)).tasks;
  expect(tasks.filter((task) => task.job === 'item-counts').map((task) => task.stage)).toEqual([
    undefined,
    undefined,
    undefined,
  ]);
  expect(tasks.filter((task) => task.job === 'top-items').map((task) => task.stage)).toEqual([undefined, undefined]);
  // Stable: nothing more written to `item-counts`, and the table the same twice.
  let previous: { sequences: string; table: Map<number, Ranked[]> } | undefined;
  const table = await pollUntil(
    async () => {
      await untilStagesCaughtUp(nats.nc, stage1);
      await untilStagesCaughtUp(nats.nc, stage2);
      const current = {
        sequences: JSON.stringify(await lastSequences('item-counts', COUNT_PARTITIONS)),
        table: await viewTopItems(),
      };
      const stable =
        previous !== undefined &&
        previous.sequences === current.sequences &&
        JSON.stringify([...previous.table]) === JSON.stringify([...current.table]);
      previous = current;
      return stable ? current.table : undefined;
    },
    { what: 'the top-items table stable', timeoutMs: 60_000, intervalMs: 500, context: logs },
  );
  // Stage 1 wrote into the topic each window's revision at the end of every chunk that emitted it
  // (so several revisions of the re-emitted ones), and the newest are the final counts.
  const written = await topicEvents('item-counts', COUNT_PARTITIONS);
  const writtenRevisions = new Set(written.map((event) => `${event.key}|${event.window!.start}#${event.revision}`));
  const notWritten = [...expected.chunkRevisions].flatMap(([window, revisions]) =>
    revisions.map((revision) => `${window}#${revision}`).filter((revision) => !writtenRevisions.has(revision)),
  );
  expect(notWritten).toEqual([]);
  expect([...expected.chunkRevisions.values()].filter((revisions) => revisions.length > 1).length).toBeGreaterThan(5);
  expect(newestCounts(written)).toEqual(expected.finalCounts);
  expect(table).toEqual(new Map([...expected.top].sort(([left], [right]) => left - right)));

  // Replaying stage 1 into v1's topic: refused, and the message says what to do instead.
  const sameTopic = spawn([
    'worker',
    '--id',
    'w2',
    '--threads',
    '1',
    '--state-dir',
    join(dir, 'w2'),
    '--job',
    countsModule('v2', 'item-counts'),
  ]);
  await untilWorkers(['w1', 'w2']);
  const refused = await kappa(['replay', 'item-counts', '--version', 'v2', '--from', 'earliest', '--nats', nats.url]);
  expect(refused.code, refused.stdout).not.toBe(0);
  expect(refused.stderr).toContain("writes its outputs to topic 'item-counts', which version v1 of the job");
  expect(refused.stderr).toContain("Give v2 its own sink topic (e.g. 'item-counts-v2'");
  expect((await leaderStatus(nats.nc)).tasks.filter((task) => task.version === 'v2')).toEqual([]);

  // With its own topic: accepted, and it writes the same final counts there, nothing into v1's.
  await sameTopic.stop();
  await untilWorkers(['w1']);
  await createTopic('item-counts-v2', COUNT_PARTITIONS);
  spawn([
    'worker',
    '--id',
    'w3',
    '--threads',
    '1',
    '--state-dir',
    join(dir, 'w3'),
    '--job',
    countsModule('v2', 'item-counts-v2'),
  ]);
  await untilWorkers(['w1', 'w3']);
  const v1Sequences = await lastSequences('item-counts', COUNT_PARTITIONS);
  const accepted = await kappa(['replay', 'item-counts', '--version', 'v2', '--from', 'earliest', '--nats', nats.url]);
  expect(accepted.code, accepted.stderr + accepted.stdout).toBe(0);
  await untilStagesCaughtUp(nats.nc, { ...stage1, version: 'v2' });
  expect(newestCounts(await topicEvents('item-counts-v2', COUNT_PARTITIONS))).toEqual(expected.finalCounts);
  expect(await lastSequences('item-counts', COUNT_PARTITIONS)).toEqual(v1Sequences);
}, 240_000);
