// `kappa view JOB [--version V] [--key K] [--json]`: prints the serving table apps read (the job's
// alias), or a named version's.
import type { Command } from 'commander';
import { Kvm } from '@nats-io/kv';
import { buckets, connectNats, KappaError } from '../../protocol/index.js';
import { AliasRegistry, openServingTables, tableSettingsFromEnv, type ServingTables } from '../../tables/index.js';
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
      .option('--version <version>', 'job version (default: the version the job\'s alias points at, else the only version with a table)')
      .option('--key <key>', 'only the rows of this key')
      .option('--json', 'one JSON object per line: {"key","start","end","value"}'),
  ).action(async (job: string, flags: ViewFlags) => {
    const nc = await connectNats(natsSettingsFrom(flags));
    const tables: ServingTables[] = [];
    try {
      // The version apps read (the alias), unless one is named; without an alias, the only KV table.
      const alias = await (await AliasRegistry.open(nc)).get(job);
      const version = flags.version ?? alias?.version ?? (await onlyVersion(new Kvm(nc), job));
      const backend = await openServingTables(alias?.table ?? 'kv', nc, tableSettingsFromEnv());
      tables.push(backend);
      const rows = (await backend.read(job, version, flags.key)).map(toViewRow);
      if (flags.json) {
        for (const row of rows) process.stdout.write(JSON.stringify(row) + '\n');
      } else {
        printTable(rows);
      }
    } finally {
      for (const backend of tables) await backend.close();
      await nc.close();
    }
  });
}

async function onlyVersion(kvm: Kvm, job: string): Promise<string> {
  const prefix = buckets.servingTable(job, '');
  const versions: string[] = [];
  for await (const status of kvm.list()) {
    if (status.bucket.startsWith(prefix)) versions.push(status.bucket.slice(prefix.length));
  }
  if (versions.length === 1) return versions[0]!;
  if (versions.length === 0) throw new KappaError('TOPIC_NOT_FOUND', `job '${job}' has no serving table yet`);
  throw new KappaError('CONFIG_INVALID', `job '${job}' has tables for versions ${versions.join(', ')}: choose one with --version`);
}

function printTable(rows: readonly ViewRow[]): void {
  const windowed = rows.some((row) => row.start !== undefined);
  const header = windowed ? ['key', 'start', 'end', 'value'] : ['key', 'value'];
  const body = rows.map((row) =>
    windowed
      ? [row.key, new Date(row.start!).toISOString(), new Date(row.end!).toISOString(), JSON.stringify(row.value)]
      : [row.key, JSON.stringify(row.value)],
  );
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((cells) => cells[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  console.log(line(header));
  for (const cells of body) console.log(line(cells));
  console.error(`${rows.length} rows`);
}
