// `kappa view JOB [--version V] [--key K] [--json]`: prints the serving table apps read (the job's
// alias), or a named version's. Without --key it pages through the table (MAX_PAGE_ROWS rows at a
// time, in row-key order), so a table of any size prints in bounded memory.
import type { Command } from 'commander';
import { Kvm } from '@nats-io/kv';
import { assertName, KappaError, keyProblem, parseServingTableBucket, ConfigError } from '../../protocol/index.js';
import { connectNats, internalReplicas, tableSettingsFromEnv } from '../../runtime/index.js';
import { AliasRegistry, MAX_PAGE_ROWS, openServingTables, type ServingTables } from '../../tables/index.js';
import { addNatsOptions, natsSettingsFrom, type NatsFlags } from '../nats-options.js';
import { toViewRow, type ViewRow } from '../view-row.js';

interface ViewFlags extends NatsFlags {
  version?: string;
  key?: string;
  json?: boolean;
}

export function registerView(program: Command): void {
  addNatsOptions(
    program
      .command('view')
      .description("print a job version's serving table")
      .argument('<job>', 'job name')
      .option(
        '--version <version>',
        "job version (default: the version the job's alias points at, else the only version with a table)",
      )
      .option('--key <key>', 'only the rows of this key')
      .option('--json', 'one JSON object per line: {"key","start","end","value"}'),
  ).action(async (job: string, flags: ViewFlags) => {
    assertName('job', job);
    if (flags.version !== undefined) assertName('version', flags.version);
    const problem = flags.key === undefined ? undefined : keyProblem(flags.key);
    if (problem !== undefined) throw new ConfigError(`--key is not valid: ${problem}`);
    const nc = await connectNats(natsSettingsFrom(flags));
    const tables: ServingTables[] = [];
    try {
      // The version apps read (the alias), unless one is named; without an alias, the only KV table.
      const alias = await (await AliasRegistry.open(nc, internalReplicas())).get(job);
      const version = flags.version ?? alias?.version ?? (await onlyVersion(new Kvm(nc), job));
      const backend = await openServingTables(alias?.table ?? 'kv', nc, tableSettingsFromEnv());
      tables.push(backend);
      const printer = flags.json ? new JsonLines() : new TextTable();
      if (flags.key !== undefined) {
        printer.print((await backend.read(job, version, flags.key)).map(toViewRow));
      } else {
        let after: string | undefined;
        do {
          const page = await backend.page(job, version, { limit: MAX_PAGE_ROWS, after });
          printer.print(page.rows.map(toViewRow));
          after = page.next;
        } while (after !== undefined);
      }
      printer.end();
    } finally {
      for (const backend of tables) await backend.close();
      await nc.close();
    }
  });
}

async function onlyVersion(kvm: Kvm, job: string): Promise<string> {
  const versions: string[] = [];
  for await (const status of kvm.list()) {
    const table = parseServingTableBucket(status.bucket);
    if (table?.job === job) versions.push(table.version);
  }
  if (versions.length === 1) return versions[0]!;
  if (versions.length === 0) throw new KappaError('TOPIC_NOT_FOUND', `job '${job}' has no serving table yet`);
  throw new KappaError(
    'CONFIG_INVALID',
    `job '${job}' has tables for versions ${versions.join(', ')}: choose one with --version`,
  );
}

interface RowPrinter {
  print(rows: readonly ViewRow[]): void;
  end(): void;
}

class JsonLines implements RowPrinter {
  print(rows: readonly ViewRow[]): void {
    if (rows.length > 0) process.stdout.write(rows.map((row) => JSON.stringify(row) + '\n').join(''));
  }

  end(): void {}
}

/** Aligned columns, page by page: a page's widths are at least the previous page's, and the header repeats when the columns change. */
class TextTable implements RowPrinter {
  private header: string[] | undefined;
  private widths: number[] = [];
  private count = 0;

  print(rows: readonly ViewRow[]): void {
    if (rows.length === 0 && this.header !== undefined) return;
    const named = rows.some((row) => row.row !== undefined);
    const windowed = rows.some((row) => row.start !== undefined);
    const header = ['key', ...(named ? ['row'] : []), ...(windowed ? ['start', 'end'] : []), 'value'];
    const body = rows.map((row) => [
      row.key,
      ...(named ? [row.row ?? ''] : []),
      ...(windowed
        ? row.start === undefined
          ? ['', '']
          : [new Date(row.start).toISOString(), new Date(row.end!).toISOString()]
        : []),
      JSON.stringify(row.value),
    ]);
    const changed = this.header?.join() !== header.join();
    if (changed) this.widths = [];
    this.widths = header.map((title, column) =>
      Math.max(this.widths[column] ?? 0, title.length, ...body.map((cells) => cells[column]!.length)),
    );
    const line = (cells: string[]) =>
      cells
        .map((cell, column) => cell.padEnd(this.widths[column]!))
        .join('  ')
        .trimEnd();
    if (changed) console.log(line(header));
    this.header = header;
    for (const cells of body) console.log(line(cells));
    this.count += rows.length;
  }

  end(): void {
    if (this.header === undefined) this.print([]);
    console.error(`${this.count} rows`);
  }
}
