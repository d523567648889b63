// `kappa run JOB --input events.jsonl`: the job over a file in batch mode, no NATS. Each line is
// keyed and timed by the job's own `key` and `time` functions (as the worker would), unless
// --key/--time name fields as `kappa produce` does. A job over several topics takes one file per
// source (`--input orders=orders.jsonl --input payments=payments.jsonl`). A job keyed otherwise
// than the producer keyed (--key), or over several sources, runs through the repartition stage
// as in the cluster (worker/batch-run.ts). Bad lines go to a rejects file, events the engine sets
// aside are summarized by reason; the exit code is 3 when either happened.
//
// `kappa run JOB --from-archive TOPIC`: the same over the topic's archived history alone (its
// segments in the archive tier, no live stream): each partition's messages in sequence order with
// their stream sequences and log times, as a streaming run over those partitions would read them.
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import type { NatsConnection } from '@nats-io/transport-node';
import { ArchiveCatalog } from '../../archive/catalog.js';
import { readPartitionMessages } from '../../archive/reader.js';
import { openSegmentStore } from '../../archive/open-segment-store.js';
import { eventFromJsonLine } from '../../client/json-events.js';
import { getTopic } from '../../client/topics.js';
import { ConfigError, eventTimeOf, type EventEnvelope, type JobPlan } from '../../protocol/index.js';
import { connectNats } from '../../runtime/index.js';
import { runBatch, runBatchOverPartitions, type BatchInputEvent, type BatchRunResult } from '../../worker/batch-run.js';
import { DEFAULT_WINDOW_MEMORY_ROWS } from '../../worker/window/operator.js';
import { loadJob, type JobSpec, type SourceSpec } from '../../worker/job.js';
import type { DeadLetter } from '../../worker/types.js';
import { ExitCode } from '../exit-codes.js';
import { natsConnection } from '../nats-options.js';
import { RejectsFile } from '../rejects-file.js';
import { positiveInt } from '../setting-values.js';
import { defineSettings } from '../settings.js';
import { toViewRow } from '../view-row.js';

const file = z.string().optional();

const runSettings = defineSettings({
  input: {
    flag: '--input <[source=]file>',
    repeatable: true,
    schema: z.array(z.string()).default([]),
    help: 'JSON lines, one event per line; a job over several sources takes one per source: --input orders=orders.jsonl --input payments=payments.jsonl',
  },
  fromArchive: {
    flag: '--from-archive <topic>',
    schema: z.string().optional(),
    help: "instead of --input: the topic's archived history (the archive tier, no live stream), each partition in sequence order",
  },
  output: { flag: '--output <file>', schema: file, help: 'write the table as JSON lines here instead of stdout' },
  late: { flag: '--late <file>', schema: file, help: 'write the late-data records here as JSON lines' },
  rejects: {
    flag: '--rejects <file>',
    schema: file,
    help: 'where lines that are not events go (default <input>.rejects, one per input file)',
  },
  deadLetters: {
    flag: '--dead-letters <file>',
    schema: file,
    help: 'write every dead letter (reason, error, event) here as JSON lines',
  },
  partitions: {
    flag: '--partitions <n>',
    schema: positiveInt.default(1),
    help: "route each source's events to n partitions with the topic hash, as a topic of n partitions would",
  },
  keyPartitions: {
    flag: '--key-partitions <n>',
    schema: positiveInt.optional(),
    help: 'partitions of the keyed stage when the job does not say (`partitions`); another count than --partitions makes the run repartition (default: --partitions)',
  },
  key: {
    flag: '--key <field>',
    schema: z.string().optional(),
    help: 'field the producer partitioned the events by, as `kappa produce --key`; a job keyed otherwise runs through a repartition stage, as in the cluster (default: the job\'s key, else "key")',
  },
  windowMemoryRows: {
    flag: '--window-memory-rows <n>',
    env: 'KAPPA_WINDOW_MEMORY_ROWS',
    schema: positiveInt.default(DEFAULT_WINDOW_MEMORY_ROWS),
    help: 'open window rows (one per key and window) a partition keeps in memory; past it, whole windows spill to RocksDB',
  },
  time: {
    flag: '--time <field>',
    schema: z.string().optional(),
    help: "field with the event time carried in the envelope, as `kappa produce --time` (default: the job's time function)",
  },
  nats: natsConnection,
});

/** Rejected lines and dead letters listed on stderr; the files have them all. */
const LISTED = 5;

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description(
      'run a job over JSON-lines files in batch mode (no NATS), through the same stages as the cluster, and print its final serving table',
    )
    .argument('<job>', 'job module (.mjs/.js)');
  runSettings.addOptions(command).action(async (jobFile: string, flags: Record<string, unknown>) => {
    const settings = runSettings.load(flags);
    const job = await loadJob(jobFile);
    if (settings.fromArchive !== undefined) {
      if (settings.input.length > 0) throw new ConfigError('--input and --from-archive exclude each other');
      return runFromArchive(job, settings.fromArchive, settings);
    }
    if (settings.input.length === 0) throw new ConfigError('an input file is required (--input FILE)');
    const inputs = inputsOf(job, settings.input);
    if (
      job.partitions !== undefined &&
      settings.keyPartitions !== undefined &&
      job.partitions !== settings.keyPartitions
    )
      throw new ConfigError(
        `--key-partitions ${settings.keyPartitions}: job ${job.name} says its keyed stage has ${job.partitions} partitions`,
      );
    if (settings.rejects !== undefined && inputs.length > 1)
      throw new ConfigError('--rejects names one file; with several inputs each gets its own <input>.rejects');
    const rejectFiles = inputs.map(({ file }) => new RejectsFile(settings.rejects ?? `${file}.rejects`, LISTED));
    const reads = inputs.map(({ sourceIndex, file }, index) =>
      readEvents(file, job.sources[sourceIndex]!, sourceIndex, settings, rejectFiles[index]!),
    );
    const stateDir = mkdtempSync(join(tmpdir(), 'kappa-run-'));
    try {
      // One file is read as the run goes; several are read whole first, to be merged by time.
      const events = reads.length === 1 ? reads[0]! : mergedByTime(await Promise.all(reads.map(readAll)));
      const result = await runBatch(job, events, {
        partitions: settings.partitions,
        ...(settings.key === undefined ? {} : { producerKey: settings.key }),
        ...(settings.keyPartitions === undefined ? {} : { keyedPartitions: settings.keyPartitions }),
        stateDir,
        keepOutputs: false, // the table is what is printed
        windowMemoryRows: settings.windowMemoryRows,
      });
      const rejected = rejectFiles.reduce((sum, rejects) => sum + rejects.count, 0);
      const seeRejects = rejectFiles.filter((rejects) => rejects.count > 0).map((rejects) => rejects.path);
      await report(
        result,
        settings,
        `, ${rejected} rejected lines` + (seeRejects.length > 0 ? ` (see ${seeRejects.join(', ')})` : ''),
      );
      if (rejected > 0) process.exitCode = ExitCode.rejectedInput;
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
}

type RunSettings = ReturnType<typeof runSettings.load>;

/** The table on stdout (or --output), late records and dead letters where asked, a summary on stderr. */
async function report(result: BatchRunResult, settings: RunSettings, note: string): Promise<void> {
  if (result.plan.repartition) console.error(`kappa run: ${describePlan(result.plan)}`);
  const rows = [...result.table.values()].map(toViewRow).sort(compareRows);
  await writeLines(settings.output, rows);
  if (settings.late) await writeLines(settings.late, result.late);
  if (settings.deadLetters) await writeLines(settings.deadLetters, result.deadLetters.map(deadLetterRecord));
  summarizeDeadLetters(result.deadLetters, settings.deadLetters);
  console.error(
    `kappa run: ${result.processed} events, ${rows.length} rows, ${result.late.length} late, ${result.deadLetters.length} dead-lettered${note}`,
  );
  if (result.deadLetters.length > 0) process.exitCode = ExitCode.rejectedInput;
}

/** `--from-archive TOPIC`: the job over the topic's archive segments, partitioned as the topic is. */
async function runFromArchive(job: JobSpec, topic: string, settings: RunSettings): Promise<void> {
  if (job.sources.length !== 1)
    throw new ConfigError(
      `--from-archive ${topic}: job ${job.name} reads ${job.sources.length} sources; a run over one topic's archive feeds one`,
    );
  if (job.sources[0]!.topic !== topic)
    throw new ConfigError(`--from-archive ${topic}: job ${job.name} reads topic '${job.sources[0]!.topic}'`);
  const nc: NatsConnection = await connectNats({ ...settings.nats, name: 'kappa run --from-archive' });
  const stateDir = mkdtempSync(join(tmpdir(), 'kappa-run-'));
  try {
    const config = await getTopic(nc, topic);
    const key = settings.key ?? config.key;
    const store = await openSegmentStore(nc);
    // The catalog as it is now; each partition's segments are read (and checked) as its task reaches them.
    const catalogs = await (await ArchiveCatalog.open(nc)).readTopic(topic, config.partitions);
    const result = await runBatchOverPartitions(
      job,
      config.partitions,
      (partition) => readPartitionMessages(store, catalogs[partition]!),
      {
        ...(key === undefined ? {} : { producerKey: key }),
        ...(settings.keyPartitions === undefined ? {} : { keyedPartitions: settings.keyPartitions }),
        stateDir,
        keepOutputs: false,
        windowMemoryRows: settings.windowMemoryRows,
      },
    );
    await report(result, settings, ` (archive of ${topic}: ${config.partitions} partitions)`);
  } finally {
    await nc.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** One input file and the job's source it feeds. */
interface Input {
  sourceIndex: number;
  file: string;
}

/**
 * `--input FILE` (a job with one source) or `--input SOURCE=FILE`, one for each of the job's
 * sources: a source without a file would hold the keyed stage's watermark back for the whole run.
 */
function inputsOf(job: JobSpec, values: readonly string[]): Input[] {
  const names = job.sources.map((source) => source.name);
  const inputs: Input[] = [];
  for (const value of values) {
    const named = /^([^=/\\]+)=(.+)$/.exec(value);
    const sourceIndex = named ? names.indexOf(named[1]!) : -1;
    if (sourceIndex >= 0) inputs.push({ sourceIndex, file: named![2]! });
    else if (names.length === 1 && !named) inputs.push({ sourceIndex: 0, file: value });
    else if (named)
      throw new ConfigError(
        `--input ${value}: job ${job.name} has no source '${named[1]}' (its sources: ${names.join(', ')})`,
      );
    else
      throw new ConfigError(
        `--input ${value}: job ${job.name} reads several sources; name the one each file feeds: ${names.map((name) => `--input ${name}=FILE`).join(' ')}`,
      );
  }
  for (let index = 0; index < names.length; index++) {
    const given = inputs.filter((input) => input.sourceIndex === index).length;
    if (given === 0) throw new ConfigError(`no --input for source '${names[index]}' of job ${job.name}`);
    if (given > 1) throw new ConfigError(`source '${names[index]}' of job ${job.name} has more than one --input`);
  }
  return inputs;
}

/**
 * A file's events, a chunk at a time as it is read (never the whole file in memory); lines that
 * are not events go to `rejects`, which is closed at the end.
 */
async function* readEvents(
  file: string,
  source: SourceSpec,
  sourceIndex: number,
  settings: { key?: string | undefined; time?: string | undefined },
  rejects: RejectsFile,
): AsyncGenerator<BatchInputEvent[]> {
  let lineNumber = 0;
  try {
    for await (const lines of readLines(file)) {
      const events: BatchInputEvent[] = [];
      for (const line of lines) {
        lineNumber++;
        if (line.trim() === '') continue;
        const parsed: LineResult =
          settings.key !== undefined && settings.time !== undefined
            ? ofSource(eventFromJsonLine(line, { key: settings.key, time: settings.time }), sourceIndex)
            : eventOfSource(line, source, sourceIndex, settings.key);
        if ('reason' in parsed) rejects.add(lineNumber, parsed.reason, line);
        else events.push(parsed.event);
      }
      yield events;
    }
  } finally {
    await rejects.close();
  }
}

async function readAll(chunks: AsyncIterable<BatchInputEvent[]>): Promise<(BatchInputEvent | undefined)[]> {
  const events: (BatchInputEvent | undefined)[] = [];
  for await (const chunk of chunks) for (const event of chunk) events.push(event);
  return events;
}

/**
 * The lines of a file, a read buffer's worth at a time: a megabyte read, split on line ends (a
 * `\r\n` counts as one), with the partial last line carried into the next read.
 */
async function* readLines(file: string): AsyncGenerator<string[]> {
  let carried = '';
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const lines = (carried + (chunk as string)).split('\n');
    carried = lines.pop()!;
    for (let index = 0; index < lines.length; index++) {
      const line = lines[index]!;
      if (line.endsWith('\r')) lines[index] = line.slice(0, -1);
    }
    yield lines;
  }
  if (carried !== '') yield [carried.endsWith('\r') ? carried.slice(0, -1) : carried];
}

/**
 * Several files merged as they would arrive live: each file in its own order, the next event
 * taken from the file whose next event is earliest (ties: --input order). What the keyed stage
 * sees first decides only which events are late (worker/batch-run.ts). Each event is let go of
 * once handed out, so the run lets it go when its partition has processed it.
 */
function* mergedByTime(inputs: (BatchInputEvent | undefined)[][]): Generator<BatchInputEvent> {
  const next = inputs.map(() => 0);
  for (;;) {
    let earliest = -1;
    for (let index = 0; index < inputs.length; index++) {
      const event = inputs[index]![next[index]!];
      if (event && (earliest < 0 || event.time < inputs[earliest]![next[earliest]!]!.time)) earliest = index;
    }
    if (earliest < 0) return;
    const taken = inputs[earliest]!;
    const at = next[earliest]!++;
    const event = taken[at]!;
    taken[at] = undefined;
    yield event;
  }
}

function describePlan(plan: JobPlan): string {
  const sources = plan.sources.map((source) => `${source.name} (${source.partitions} partitions)`).join(', ');
  return `read ${sources} through a repartition stage into ${plan.repartition!.partitions} keyed partitions`;
}

type LineResult = { event: BatchInputEvent } | { reason: string };

function ofSource(parsed: { event: EventEnvelope } | { reason: string }, source: number): LineResult {
  return 'reason' in parsed ? parsed : { event: { ...parsed.event, source } };
}

/**
 * A line as the worker would see it: partitioned by the source's key (or `keyField`), with the
 * source's time in the envelope when it is one. A time the job cannot read is left to the engine,
 * which dead-letters the event with the reason, as a streaming run would.
 */
function eventOfSource(
  line: string,
  source: SourceSpec,
  sourceIndex: number,
  keyField: string | undefined,
): LineResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { reason: `not JSON (${(error as Error).message})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { reason: 'expected a JSON object' };
  let key: unknown;
  try {
    key =
      keyField === undefined && source.key ? source.key(value) : (value as Record<string, unknown>)[keyField ?? 'key'];
  } catch (error) {
    return { reason: `the job's key function threw: ${(error as Error).message}` };
  }
  if (typeof key === 'number' && Number.isFinite(key)) key = String(key);
  if (typeof key !== 'string' || key === '')
    return {
      reason:
        keyField === undefined && source.key
          ? `the job's key function gave no key (${JSON.stringify(key) ?? 'undefined'})`
          : `key field "${keyField ?? 'key'}" is missing or not a string`,
    };
  let time: number | string;
  try {
    time = eventTimeOf(source.time(value));
  } catch {
    time = 'unreadable';
  }
  return { event: { key, time: typeof time === 'number' ? time : 0, value, source: sourceIndex } };
}

function summarizeDeadLetters(letters: readonly DeadLetter[], file: string | undefined): void {
  if (letters.length === 0) return;
  for (const letter of letters.slice(0, LISTED))
    console.error(
      `kappa: dead letter (${letter.reason}) partition ${letter.partition} #${letter.sequence}: ${letter.error}`,
    );
  const byReason = new Map<string, number>();
  for (const letter of letters) byReason.set(letter.reason, (byReason.get(letter.reason) ?? 0) + 1);
  const counts = [...byReason].map(([reason, count]) => `${count} ${reason}`).join(', ');
  console.error(
    `kappa: ${letters.length} dead letters (${counts})${file ? `; all in ${file}` : letters.length > LISTED ? '; --dead-letters FILE writes them all' : ''}`,
  );
}

function deadLetterRecord(letter: DeadLetter): Record<string, unknown> {
  const { data, ...rest } = letter;
  return { ...rest, data: Buffer.from(data).toString('base64') };
}

function compareRows(a: { key: string; start?: number }, b: { key: string; start?: number }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : (a.start ?? 0) - (b.start ?? 0);
}

async function writeLines(file: string | undefined, records: readonly unknown[]): Promise<void> {
  const out = file ? createWriteStream(file) : process.stdout;
  for (const record of records) {
    if (!out.write(JSON.stringify(record) + '\n'))
      await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  if (file)
    await new Promise<void>((resolve, reject) =>
      (out as ReturnType<typeof createWriteStream>).end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
}
