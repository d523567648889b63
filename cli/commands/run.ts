// `kappa run JOB --input events.jsonl`: the job over a file in batch mode, no NATS. Each line is
// keyed and timed by the job's own `key` and `time` functions (as the worker would), unless
// --key/--time name fields as `kappa produce` does. Bad lines go to a rejects file, events the
// engine sets aside are summarized by reason; the exit code is 3 when either happened.
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { z } from 'zod';
import { eventFromJsonLine } from '../../client/json-events.js';
import { eventTimeOf } from '../../protocol/index.js';
import { runBatch, type BatchInputEvent } from '../../worker/batch-run.js';
import { loadJob, type JobSpec } from '../../worker/job.js';
import type { DeadLetter } from '../../worker/types.js';
import { ExitCode } from '../exit-codes.js';
import { RejectsFile } from '../rejects-file.js';
import { positiveInt } from '../setting-values.js';
import { defineSettings } from '../settings.js';
import { toViewRow } from '../view-row.js';

const file = z.string().optional();

const runSettings = defineSettings({
  input: {
    flag: '--input <file>',
    schema: z.string({ error: 'an input file is required (--input FILE)' }),
    help: 'JSON lines, one event per line',
  },
  output: { flag: '--output <file>', schema: file, help: 'write the table as JSON lines here instead of stdout' },
  late: { flag: '--late <file>', schema: file, help: 'write the late-data records here as JSON lines' },
  rejects: {
    flag: '--rejects <file>',
    schema: file,
    help: 'where lines that are not events go (default <input>.rejects)',
  },
  deadLetters: {
    flag: '--dead-letters <file>',
    schema: file,
    help: 'write every dead letter (reason, error, event) here as JSON lines',
  },
  partitions: {
    flag: '--partitions <n>',
    schema: positiveInt.default(1),
    help: 'route events to n partitions with the topic hash, as a topic of n partitions would',
  },
  key: {
    flag: '--key <field>',
    schema: z.string().optional(),
    help: 'field the events are partitioned by, as `kappa produce --key` (default: the job\'s key function, else "key")',
  },
  time: {
    flag: '--time <field>',
    schema: z.string().optional(),
    help: "field with the event time carried in the envelope, as `kappa produce --time` (default: the job's time function)",
  },
});

/** Rejected lines and dead letters listed on stderr; the files have them all. */
const LISTED = 5;

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description('run a job over a JSON-lines file in batch mode (no NATS) and print its final serving table')
    .argument('<job>', 'job module (.mjs/.js)');
  runSettings.addOptions(command).action(async (jobFile: string, flags: Record<string, unknown>) => {
    const settings = runSettings.load(flags);
    const job = await loadJob(jobFile);
    const rejects = new RejectsFile(settings.rejects ?? `${settings.input}.rejects`, LISTED);
    const events: BatchInputEvent[] = [];
    let lineNumber = 0;
    const lines = createInterface({ input: createReadStream(settings.input), crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        lineNumber++;
        if (line.trim() === '') continue;
        const parsed =
          settings.key !== undefined && settings.time !== undefined
            ? eventFromJsonLine(line, { key: settings.key, time: settings.time })
            : eventOfJob(line, job, settings.key);
        if ('reason' in parsed) rejects.add(lineNumber, parsed.reason, line);
        else events.push(parsed.event);
      }
    } finally {
      await rejects.close();
    }
    const stateDir = mkdtempSync(join(tmpdir(), 'kappa-run-'));
    try {
      const result = await runBatch(job, events, { partitions: settings.partitions, stateDir });
      const rows = [...result.table.values()].map(toViewRow).sort(compareRows);
      await writeLines(settings.output, rows);
      if (settings.late) await writeLines(settings.late, result.late);
      if (settings.deadLetters) await writeLines(settings.deadLetters, result.deadLetters.map(deadLetterRecord));
      summarizeDeadLetters(result.deadLetters, settings.deadLetters);
      console.error(
        `kappa run: ${result.processed} events, ${rows.length} rows, ${result.late.length} late, ${result.deadLetters.length} dead-lettered, ${rejects.count} rejected lines` +
          (rejects.count > 0 ? ` (see ${rejects.path})` : ''),
      );
      if (rejects.count > 0 || result.deadLetters.length > 0) process.exitCode = ExitCode.rejectedInput;
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
}

type LineResult = { event: BatchInputEvent } | { reason: string };

/**
 * A line as the worker would see it: partitioned by the job's key function (or `keyField`), with
 * the job's time in the envelope when it is one. A time the job cannot read is left to the engine,
 * which dead-letters the event with the reason, as a streaming run would.
 */
function eventOfJob(line: string, job: JobSpec, keyField: string | undefined): LineResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { reason: `not JSON (${(error as Error).message})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { reason: 'expected a JSON object' };
  let key: unknown;
  try {
    key = keyField === undefined && job.key ? job.key(value) : (value as Record<string, unknown>)[keyField ?? 'key'];
  } catch (error) {
    return { reason: `the job's key function threw: ${(error as Error).message}` };
  }
  if (typeof key === 'number' && Number.isFinite(key)) key = String(key);
  if (typeof key !== 'string' || key === '')
    return {
      reason:
        keyField === undefined && job.key
          ? `the job's key function gave no key (${JSON.stringify(key) ?? 'undefined'})`
          : `key field "${keyField ?? 'key'}" is missing or not a string`,
    };
  let time: number | string;
  try {
    time = eventTimeOf(job.time(value));
  } catch {
    time = 'unreadable';
  }
  return { event: { key, time: typeof time === 'number' ? time : 0, value } };
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
