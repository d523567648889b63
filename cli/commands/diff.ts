// `kappa diff JOB --from V1 --to V2 [--key K] [--limit N] [--json]`: what V2 changes against V1,
// over the rows both versions have made final (coordinator/version-diff.ts; the rows are compared
// by tables/diff.ts). The leader's status says each version's table kind and watermark; the tables
// are read from here, like `kappa view` reads them (KAPPA_POSTGRES_URL, KAPPA_REDIS_URL).
import type { Command } from 'commander';
import { assertName, ConfigError, keyProblem } from '../../protocol/index.js';
import { connectNats, internalReplicas, tableSettingsFromEnv } from '../../runtime/index.js';
import {
  AliasRegistry,
  openServingTables,
  type ServingTables,
  type TableKind,
  type VersionDiff,
} from '../../tables/index.js';
import {
  DEFAULT_DIFF_ROWS,
  describeCounts,
  MAX_DIFF_ROWS,
  readDiff,
  type DiffRequest,
} from '../../coordinator/version-diff.js';
import { addAdminOptions, adminRequest } from '../admin-request.js';
import { natsSettingsFrom, type NatsFlags } from '../nats-options.js';

interface DiffQueryFlags {
  from?: string;
  to: string;
  key?: string;
  limit: string;
}

interface DiffFlags extends NatsFlags, DiffQueryFlags {
  json?: boolean;
}

export function registerDiff(program: Command): void {
  addAdminOptions(
    program
      .command('diff <job>')
      .description(
        "compare two versions' serving tables over the rows both have made final: counts, the keys with the most differing rows, differing rows side by side",
      )
      .option('--from <version>', 'the version to compare with (default: the one the alias points at)')
      .requiredOption('--to <version>', 'the version whose changes to show (e.g. the one replaying)')
      .option('--key <key>', "only this key's rows")
      .option('--limit <n>', `differing rows to show, 0–${MAX_DIFF_ROWS}`, String(DEFAULT_DIFF_ROWS))
      .option(
        '--json',
        'one JSON object: {"compared","same","changed","onlyInFrom","onlyInTo","topKeys","changedRows":[{"key","start","end","from","to"}]}',
      ),
  ).action(async (job: string, flags: DiffFlags) => {
    const request = diffRequestOf(job, flags);
    const diff = await computeDiff(flags, request);
    if (flags.json) console.log(JSON.stringify(diff, null, 2));
    else printDiff(diff);
  });
}

export function diffRequestOf(job: string, flags: DiffQueryFlags): DiffRequest {
  assertName('job', job);
  if (flags.from !== undefined) assertName('version', flags.from);
  assertName('version', flags.to);
  const problem = flags.key === undefined ? undefined : keyProblem(flags.key);
  if (problem !== undefined) throw new ConfigError(`--key is not valid: ${problem}`);
  const limit = Number(flags.limit);
  if (!Number.isSafeInteger(limit) || limit < 0 || limit > MAX_DIFF_ROWS)
    throw new ConfigError(
      `--limit must be a whole number from 0 to ${MAX_DIFF_ROWS}, found ${JSON.stringify(flags.limit)}`,
    );
  return {
    job,
    to: flags.to,
    limit,
    ...(flags.from === undefined ? {} : { from: flags.from }),
    ...(flags.key === undefined ? {} : { key: flags.key }),
  };
}

/** The diff as `kappa diff` computes it: the leader's status for the watermarks, the tables read from here. */
export async function computeDiff(flags: NatsFlags, request: DiffRequest): Promise<VersionDiff> {
  const status = await adminRequest(flags, 'status', { type: 'status.request', job: request.job });
  const nc = await connectNats(natsSettingsFrom(flags));
  const opened = new Map<TableKind, Promise<ServingTables>>();
  try {
    const registry = await AliasRegistry.open(nc, internalReplicas());
    const tables = (kind: TableKind) => {
      let backend = opened.get(kind);
      if (!backend) opened.set(kind, (backend = openServingTables(kind, nc, tableSettingsFromEnv())));
      return backend;
    };
    return await readDiff({ status: async () => status, tables, alias: (job) => registry.get(job) }, request);
  } finally {
    for (const backend of opened.values()) await (await backend.catch(() => undefined))?.close();
    await nc.close();
  }
}

function printDiff(diff: VersionDiff): void {
  const final =
    diff.finalThroughMs === undefined
      ? 'every row as it stands'
      : diff.finalThroughMs === null
        ? 'no window is final in both yet'
        : `windows ending by ${new Date(diff.finalThroughMs + 1).toISOString()}`;
  console.log(`${diff.job} ${diff.to} against ${diff.from} (${final}): ${describeCounts(diff, diff.from, diff.to)}`);
  if (diff.topKeys.length > 0) {
    console.log('');
    console.log('keys with the most differing rows:');
    for (const { key, rows } of diff.topKeys) console.log(`  ${key}  ${rows}`);
  }
  if (diff.changedRows.length === 0) return;
  console.log('');
  const cells = diff.changedRows.map((row) => [
    row.key,
    row.row ??
      (row.start === undefined ? '' : `${new Date(row.start).toISOString()} – ${new Date(row.end!).toISOString()}`),
    'from' in row ? JSON.stringify(row.from) : '(none)',
    'to' in row ? JSON.stringify(row.to) : '(none)',
  ]);
  const header = ['key', 'row/window', diff.from, diff.to];
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((row) => row[column]!.length)));
  const line = (row: string[]) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  for (const row of cells) console.log(line(row));
  const differing = diff.changed + diff.onlyInFrom + diff.onlyInTo;
  if (differing > diff.changedRows.length)
    console.log(`… ${differing - diff.changedRows.length} more (--limit, --key)`);
}
