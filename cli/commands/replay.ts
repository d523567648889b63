// The reprocessing pattern from the command line (DESIGN "Replay and cutover"):
//   kappa replay JOB --version V --from earliest|<seq>|<ISO time> [--cutover auto] [--follow]
//   kappa cutover JOB --version V [--max-lag N]
//   kappa retire JOB --version V [--grace 1m]
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { AdminRejectedError, assertName, ConfigError, type JobVersionStatusView } from '../../protocol/index.js';
import { parseDuration } from '../../worker/duration.js';
import { addAdminOptions, adminRequest } from '../admin-request.js';
import type { NatsFlags } from '../nats-options.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { describeVersion, startVersionProgress, versionOf } from '../version-progress-view.js';
import { parseStartPosition } from './start.js';

const POLL_MS = 500;

interface ReplayFlags extends NatsFlags {
  version: string;
  from: string;
  cutover: string;
  maxLag: string;
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
      .option('--follow', 'show progress and ETA until caught up (and cut over, with --cutover auto); exit 0 then')
      .option('--json', 'print the reply as JSON'),
  ).action(async (job: string, flags: ReplayFlags) => {
    assertName('job', job);
    assertName('version', flags.version);
    if (flags.cutover !== 'manual' && flags.cutover !== 'auto')
      throw new ConfigError(`--cutover must be manual or auto, found ${JSON.stringify(flags.cutover)}`);
    const maxLagMessages = parseCount('--max-lag', flags.maxLag);
    const detail = await adminRequest(flags, 'start', {
      type: 'job.start',
      job,
      version: flags.version,
      from: parseStartPosition(flags.from),
      ...(flags.cutover === 'auto' ? { autoCutover: { maxLagMessages } } : {}),
    });
    if (flags.json) console.log(JSON.stringify(detail, null, 2));
    else
      console.log(
        `${job} ${flags.version}: replaying from ${flags.from}${flags.cutover === 'auto' ? ', cutover when caught up' : ''}`,
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
      .option('--json', 'print the reply as JSON'),
  ).action(async (job: string, flags: NatsFlags & { version: string; maxLag: string; json?: boolean }) => {
    assertName('job', job);
    assertName('version', flags.version);
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
  });
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
