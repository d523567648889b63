// `kappa status [--job J] [--json | --watch]`: the leader's view, built from the workers' heartbeats.
import type { Command } from 'commander';
import { describeBound } from '../../coordinator/version-diff.js';
import { assertName, type AdminRequest, type ClusterStatus } from '../../protocol/index.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { addAdminOptions, adminRequest } from '../admin-request.js';
import { shutdownSignal } from '../shutdown-signal.js';
import { readingOf, startVersionProgress } from '../version-progress-view.js';
import type { NatsFlags } from '../nats-options.js';

export function registerStatus(program: Command): void {
  addAdminOptions(
    program
      .command('status')
      .description('leader, workers, job versions and every task with its sequence, lag and watermark')
      .option('--job <job>', "only this job's versions and tasks (every worker is still listed)")
      .option('--json', 'print JSON')
      .option('--watch', 'keep showing every job version’s progress, lag and ETA (Ctrl-C stops)'),
  ).action(async (flags: NatsFlags & { job?: string; json?: boolean; watch?: boolean }) => {
    if (flags.job !== undefined) assertName('job', flags.job);
    const request: AdminRequest<'status'> = { type: 'status.request', job: flags.job };
    if (flags.watch) return watch(flags, request);
    const status = await adminRequest(flags, 'status', request);
    if (flags.json) return console.log(JSON.stringify(status, null, 2));
    printStatus(status);
  });
}

async function watch(flags: NatsFlags, request: AdminRequest<'status'>): Promise<void> {
  const view = startVersionProgress();
  let interrupted = false;
  void shutdownSignal().then(() => (interrupted = true));
  try {
    while (!interrupted) {
      view.update((await adminRequest(flags, 'status', request)).versions);
      await sleep(1_000);
    }
  } finally {
    view.stop();
  }
}

function printStatus(status: ClusterStatus): void {
  console.log(`leader: ${status.leader.coordinatorId} (fencing token ${status.leader.fencingToken})`);
  console.log('');
  printTable(
    ['worker', 'capacity', 'tasks', 'carries', 'heartbeat'],
    status.workers.map((w) => [
      w.workerId,
      String(w.capacity),
      String(w.tasksAssigned),
      w.carries.map((c) => `${c.job}/${c.version}`).join(',') || '-',
      `${(w.lastHeartbeatAgoMs / 1000).toFixed(1)}s ago`,
    ]),
  );
  console.log('');
  printTable(
    [
      'job',
      'version',
      'state',
      'topic',
      'partitions',
      'assigned',
      'reading',
      'lag',
      'progress',
      'eta',
      'table',
      'serving',
    ],
    status.versions.map((v) => [
      v.job,
      v.version,
      v.state,
      v.topic ?? '-',
      String(v.partitions ?? '-'),
      String(v.tasksAssigned),
      readingOf(v),
      String(v.lagMessages),
      v.progress === null ? '-' : `${(v.progress * 100).toFixed(1)}%`,
      v.etaSeconds === null ? '-' : `${Math.ceil(v.etaSeconds)}s`,
      v.table ?? '-',
      v.served ? 'yes' : v.autoCutover ? (v.diff?.withinBound === false ? 'held by its diff' : 'when caught up') : '',
    ]),
  );
  // The latest diff of each `--max-changed` replay against the served version (the auto cutover's gate).
  const diffs = status.versions.flatMap((v) =>
    v.diff === undefined
      ? []
      : [
          [
            v.job,
            v.version,
            v.diff.from,
            String(v.diff.compared),
            String(v.diff.same),
            String(v.diff.changed),
            String(v.diff.onlyInFrom),
            String(v.diff.onlyInTo),
            v.autoCutover?.maxChanged === undefined
              ? '-'
              : `${describeBound(v.autoCutover.maxChanged)}${v.diff.withinBound ? '' : ' (exceeded)'}`,
            v.diff.at,
          ],
        ],
  );
  if (diffs.length > 0) {
    console.log('');
    printTable(
      ['job', 'version', 'against', 'compared', 'same', 'changed', 'only-against', 'only-this', 'max-changed', 'at'],
      diffs,
    );
  }
  // A line per stage of each planned version: a repartitioned one has its route stages and its
  // keyed stage, each with its own topic and lag, so a user sees where the lag is.
  const stages = status.versions.flatMap((v) =>
    (v.stages ?? []).map((stage) => [
      v.job,
      v.version,
      stage.stage ?? 'keyed',
      stage.topic,
      String(stage.partitions),
      String(stage.lagMessages),
    ]),
  );
  if (stages.length > 0) {
    console.log('');
    printTable(['job', 'version', 'stage', 'topic', 'partitions', 'lag'], stages);
  }
  console.log('');
  printTable(
    ['task', 'worker', 'epoch', 'state', 'sequence', 'lag', 'watermark'],
    status.tasks.map((t) => [
      t.stage === undefined
        ? `${t.job}/${t.version}/${t.partition}`
        : `${t.job}/${t.version}/${t.stage}/${t.partition}`,
      t.worker ?? '-',
      String(t.epoch),
      t.state,
      t.sequence === null ? '-' : String(t.sequence),
      t.lagMessages === null ? '-' : String(t.lagMessages),
      t.watermark === null ? '-' : new Date(t.watermark).toISOString(),
    ]),
  );
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}
