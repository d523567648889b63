// The reprocessing pattern from the command line (DESIGN "Replay and cutover"):
//   kappa replay JOB --version V --from earliest|<seq>|<ISO time> [--cutover auto [--max-changed N|P%]] [--follow]
//   kappa cutover JOB --version V [--max-lag N] [--max-changed N|P%]
//   kappa retire JOB --version V [--grace 1m]
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import {
  AdminRejectedError,
  assertName,
  ConfigError,
  type ChangeBound,
  type JobVersionStatusView,
} from '../../protocol/index.js';
import { describeBound, describeCounts, parseChangeBound, withinBound } from '../../coordinator/version-diff.js';
import { parseDuration } from '../../worker/duration.js';
import { addAdminOptions, adminRequest } from '../admin-request.js';
import type { NatsFlags } from '../nats-options.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { describeVersion, startVersionProgress, versionOf } from '../version-progress-view.js';
import { computeDiff } from './diff.js';
import { parseStartPosition } from './start.js';

const POLL_MS = 500;

interface ReplayFlags extends NatsFlags {
  version: string;
  from: string;
  cutover: string;
  maxLag: string;
  maxChanged?: string;
  follow?: boolean;
  json?: boolean;
}

export function registerReplay(program: Command): void {
  addAdminOptions(
    program
      .command('replay <job>')
      .description(
        'start a job version from a past position into its own table while the current version keeps serving',
      )
      .requiredOption('--version <version>', 'the new version (its workers must carry it)')
      .option('--from <position>', 'earliest | <sequence> | <ISO time> (time the events were stored)', 'earliest')
      .option('--cutover <mode>', "manual | auto: flip the job's alias to this version once it has caught up", 'manual')
      .option('--max-lag <n>', 'with --cutover auto: caught up means at most this many messages behind', '0')
      .option(
        '--max-changed <n|p%>',
        'with --cutover auto: hold the flip while more rows than this (a count, or a percentage of the rows compared) differ from the served version',
      )
      .option('--follow', 'show progress and ETA until caught up (and cut over, with --cutover auto); exit 0 then')
      .option('--json', 'print the reply as JSON'),
  ).action(async (job: string, flags: ReplayFlags) => {
    assertName('job', job);
    assertName('version', flags.version);
    if (flags.cutover !== 'manual' && flags.cutover !== 'auto')
      throw new ConfigError(`--cutover must be manual or auto, found ${JSON.stringify(flags.cutover)}`);
    const maxLagMessages = parseCount('--max-lag', flags.maxLag);
    if (flags.maxChanged !== undefined && flags.cutover !== 'auto')
      throw new ConfigError('--max-changed holds an automatic cutover: pass it with --cutover auto');
    const maxChanged = flags.maxChanged === undefined ? undefined : changeBound(flags.maxChanged);
    const detail = await adminRequest(flags, 'start', {
      type: 'job.start',
      job,
      version: flags.version,
      from: parseStartPosition(flags.from),
      ...(flags.cutover === 'auto'
        ? { autoCutover: { maxLagMessages, ...(maxChanged === undefined ? {} : { maxChanged }) } }
        : {}),
    });
    if (flags.json) console.log(JSON.stringify(detail, null, 2));
    else
      console.log(
        `${job} ${flags.version}: replaying from ${flags.from}${flags.cutover === 'auto' ? `, cutover when caught up${maxChanged ? ` and at most ${describeBound(maxChanged)} differ from the served version` : ''}` : ''}`,
      );
    if (!flags.follow) return;
    await follow(flags, job, flags.version, (view) =>
      flags.cutover === 'auto' ? view.served : view.progress === 1 && view.lagMessages <= maxLagMessages,
    );
  });
}

export function registerCutover(program: Command): void {
  addAdminOptions(
    program
      .command('cutover <job>')
      .description("point the job's alias (what apps read) at a version that has caught up; refused otherwise")
      .requiredOption('--version <version>', 'the version to serve')
      .option('--max-lag <n>', 'caught up means at most this many messages behind', '0')
      .option(
        '--max-changed <n|p%>',
        'refuse while more rows than this (a count, or a percentage of the rows compared) differ from the served version',
      )
      .option('--json', 'print the reply as JSON'),
  ).action(
    async (
      job: string,
      flags: NatsFlags & { version: string; maxLag: string; maxChanged?: string; json?: boolean },
    ) => {
      assertName('job', job);
      assertName('version', flags.version);
      if (flags.maxChanged !== undefined)
        await assertChangesWithin(flags, job, flags.version, changeBound(flags.maxChanged));
      const detail = await adminRequest(flags, 'cutover', {
        type: 'job.cutover',
        job,
        version: flags.version,
        maxLagMessages: parseCount('--max-lag', flags.maxLag),
      });
      if (flags.json) return console.log(JSON.stringify(detail, null, 2));
      console.log(
        `${job}: apps now read ${detail.version}${detail.previous ? ` (was ${detail.previous})` : ''} from its ${detail.table} table`,
      );
    },
  );
}

/**
 * The gate of `kappa cutover --max-changed`: the diff against the served version, computed here
 * (a large table takes longer than an admin request may), refused with its counts when over the
 * bound. The leader then checks the lag as always.
 */
async function assertChangesWithin(flags: NatsFlags, job: string, version: string, bound: ChangeBound): Promise<void> {
  const diff = await computeDiff(flags, { job, to: version, limit: 0 });
  if (diff.from === version) return; // already served: nothing to compare with
  if (withinBound(diff, bound)) {
    console.error(`kappa: ${describeCounts(diff, diff.from, version)}: within --max-changed ${describeBound(bound)}`);
    return;
  }
  const keys = diff.topKeys.map(({ key, rows }) => `${key} (${rows})`).join(', ');
  throw new AdminRejectedError(
    'ADMIN_REJECTED',
    `cutover rejected: ${job} ${version}: ${describeCounts(diff, diff.from, version)}, more than --max-changed ${describeBound(bound)}${keys ? `; most in ${keys}` : ''} (see 'kappa diff ${job} --to ${version}')`,
  );
}

function changeBound(raw: string): ChangeBound {
  const bound = parseChangeBound(raw);
  if (typeof bound === 'string') throw new ConfigError(`--max-changed: ${bound}`);
  return bound;
}

export function registerRetire(program: Command): void {
  addAdminOptions(
    program
      .command('retire <job>')
      .description('stop a version apps no longer read; after the grace period its table and checkpoints are dropped')
      .requiredOption('--version <version>', 'the version to retire (not the one the alias points at)')
      .option('--grace <duration>', 'how long to keep its table after its tasks stop', '1m')
      .option('--json', 'print the reply as JSON'),
  ).action(async (job: string, flags: NatsFlags & { version: string; grace: string; json?: boolean }) => {
    assertName('job', job);
    assertName('version', flags.version);
    const graceMs = parseDuration(flags.grace);
    if (typeof graceMs === 'string') throw new ConfigError(`--grace: ${graceMs}`);
    const detail = await adminRequest(flags, 'retire', {
      type: 'job.retire',
      job,
      version: flags.version,
      graceMs: Math.round(graceMs),
    });
    if (flags.json) return console.log(JSON.stringify(detail, null, 2));
    console.log(`${job} ${flags.version}: stopping; its table and checkpoints are dropped at ${detail.dropAt}`);
  });
}

/** Polls the leader's status and shows the version's progress until `done`; SIGINT/SIGTERM stop following. */
async function follow(
  flags: NatsFlags,
  job: string,
  version: string,
  done: (view: JobVersionStatusView) => boolean,
): Promise<void> {
  const progress = startVersionProgress();
  let interrupted = false;
  void shutdownSignal().then(() => (interrupted = true));
  try {
    while (!interrupted) {
      const status = await adminRequest(flags, 'status', { type: 'status.request', job });
      const view = versionOf(status, job, version);
      if (!view) throw new AdminRejectedError('VERSION_NOT_FOUND', `${job} ${version} is no longer running`);
      progress.update([view]);
      if (done(view)) {
        progress.stop();
        console.log(describeVersion(view));
        return;
      }
      await sleep(POLL_MS);
    }
  } finally {
    progress.stop();
  }
}

function parseCount(flag: string, raw: string): number {
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0)
    throw new ConfigError(`${flag} must be a whole number ≥ 0, found ${JSON.stringify(raw)}`);
  return value;
}
