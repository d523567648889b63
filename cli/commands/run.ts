// `kappa run FILE --input events.jsonl`: the job over a file in batch mode, no NATS.
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { z } from 'zod';
import { eventFromJsonLine } from '../../client/json-events.js';
import { runBatch, type BatchInputEvent } from '../../worker/batch-run.js';
import { loadJob } from '../../worker/job.js';
import { loadConfig, positiveInt } from '../config.js';
import { ExitCode } from '../exit-codes.js';
import { toViewRow } from '../view-row.js';

const runConfig = z.object({
  input: z.string({ error: 'an input file is required (--input FILE)' }),
  output: z.string().optional(),
  late: z.string().optional(),
  partitions: positiveInt.default(1),
  key: z.string().default('key'),
  time: z.string().default('time'),
});

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run a job over a JSON-lines file in batch mode (no NATS) and print its final serving table')
    .argument('<job>', 'job module (.mjs/.js)')
    .option('--input <file>', 'JSON lines, one event per line')
    .option('--output <file>', 'write the table as JSON lines here instead of stdout')
    .option('--late <file>', 'write the late-data records here as JSON lines')
    .option('--partitions <n>', 'route events to n partitions with the topic hash, as a topic of n partitions would (default 1)')
    .option('--key <field>', 'field the events are partitioned by, as `kappa produce --key` (default "key")')
    .option('--time <field>', 'field with the event time carried in the envelope, as `kappa produce --time` (default "time")')
    .action(async (jobFile: string, flags: Record<string, string | undefined>) => {
      const config = loadConfig(runConfig, { env: {}, flags });
      const job = await loadJob(jobFile);
      const events: BatchInputEvent[] = [];
      let lineNumber = 0;
      let rejected = 0;
      const lines = createInterface({ input: createReadStream(config.input), crlfDelay: Infinity });
      for await (const line of lines) {
        lineNumber++;
        if (line.trim() === '') continue;
        const parsed = eventFromJsonLine(line, { key: config.key, time: config.time });
        if ('reason' in parsed) {
          rejected++;
          console.error(`${config.input}:${lineNumber}: ${parsed.reason}`);
        } else {
          events.push(parsed.event);
        }
      }
      const stateDir = mkdtempSync(join(tmpdir(), 'kappa-run-'));
      try {
        const result = await runBatch(job, events, { partitions: config.partitions, stateDir });
        const rows = [...result.table.values()].map(toViewRow).sort(compareRows);
        await writeLines(config.output, rows);
        if (config.late) await writeLines(config.late, result.late);
        for (const letter of result.deadLetters) {
          console.error(`dead letter (${letter.reason}) partition ${letter.partition} #${letter.sequence}: ${letter.error}`);
        }
        console.error(
          `kappa run: ${result.processed} events, ${rows.length} rows, ${result.late.length} late, ${result.deadLetters.length} dead-lettered, ${rejected} rejected lines`,
        );
        if (rejected > 0 || result.deadLetters.length > 0) process.exitCode = ExitCode.rejectedInput;
      } finally {
        rmSync(stateDir, { recursive: true, force: true });
      }
    });
}

function compareRows(a: { key: string; start?: number }, b: { key: string; start?: number }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : (a.start ?? 0) - (b.start ?? 0);
}

async function writeLines(file: string | undefined, records: readonly unknown[]): Promise<void> {
  const out = file ? createWriteStream(file) : process.stdout;
  for (const record of records) {
    if (!out.write(JSON.stringify(record) + '\n')) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  if (file) await new Promise<void>((resolve, reject) => (out as ReturnType<typeof createWriteStream>).end((error?: Error | null) => (error ? reject(error) : resolve())));
}
