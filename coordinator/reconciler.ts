// The I/O around one reconciliation round (cluster-state.ts `reconcile`, pure): store the task
// records it changed, then send its assign/revoke commands, then refresh what is derived from the
// records and heartbeats (assignment metrics, each running version's progress and ETA).
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { encodeMessage, jobVersionKey, subjects, taskKey, type Clock, type Message } from '../protocol/index.js';
import { reconcile, type Command, type JobVersionRecord, type TaskRecord } from './cluster-state.js';
import type { LeaderState } from './leader-state.js';
import type { Membership } from './membership.js';
import type { CoordinatorMetrics } from './metrics.js';
import type { Reprocessing } from './reprocessing.js';
import type { StreamPositions } from './stream-positions.js';
import { versionProgress } from './version-progress.js';

export interface ReconcilerOptions {
  nc: NatsConnection;
  state: LeaderState;
  membership: Membership;
  /** Asked again before sending: leadership may have been lost while the store was written. */
  isLeader: () => boolean;
  streamPositions: Pick<StreamPositions, 'of'>;
  reprocessing: Pick<Reprocessing, 'observe'>;
  /** A command not yet reflected in heartbeats is sent again after this. */
  resendAfterMs: number;
  clock: Clock;
  logger: Logger;
  metrics: CoordinatorMetrics;
}

export class Reconciler {
  constructor(private readonly options: ReconcilerOptions) {}

  async reconcile(): Promise<void> {
    const { state, membership, isLeader, clock, metrics, logger } = this.options;
    if (!isLeader() || !state.loaded) return;
    const result = reconcile({
      versions: state.versions,
      tasks: state.tasks,
      workers: membership.liveWorkers(),
      transit: state.transit,
      nowMs: clock.now(),
      resendAfterMs: this.options.resendAfterMs,
    });
    try {
      // Store first, send after: a successor must never see an older epoch than a worker holds.
      await Promise.all([
        ...result.puts.map((record) => state.store.putTask(record)),
        ...result.finishedVersions.map((key) => state.store.deleteVersion(key)),
      ]);
    } catch (error) {
      return this.onStoreError(error);
    }
    for (const record of result.puts) state.tasks.set(taskKey(record.task), record);
    for (const key of result.finishedVersions) {
      const version = state.versions.get(key);
      if (version?.retireAtMs !== undefined) {
        // Retired: kept until its grace period ends, then its table and checkpoints are dropped.
        const retired: JobVersionRecord = { ...version, state: 'retired' };
        await state.putVersion(retired);
        logger.info(
          { version: key, dropAt: new Date(version.retireAtMs).toISOString() },
          'job version retired: every task released',
        );
        continue;
      }
      state.versions.delete(key);
      logger.info({ version: key }, 'job version stopped: every task released');
    }
    if (!isLeader()) return;
    for (const command of result.commands) this.send(command);
    if (result.movesStarted > 0) {
      metrics.rebalances.inc();
      logger.info({ moves: result.movesStarted }, 'rebalancing');
    }
    if (result.fencedReassigned > 0) {
      logger.warn(
        { tasks: result.fencedReassigned },
        'tasks fenced by checkpoints of a higher epoch: assigned again above it',
      );
    }
    this.refreshProgress();
  }

  /** Assignment metrics, and each running version's progress and ETA (`state.progress`) from the latest heartbeats. */
  refreshProgress(): void {
    const { state, membership, streamPositions, reprocessing, clock, metrics } = this.options;
    metrics.recordAssignments(
      membership.live().map((member) => member.slot.id),
      state.tasks.values(),
    );
    const reported = (record: TaskRecord) => {
      const status =
        record.worker === null ? undefined : membership.get(record.worker)?.reported?.get(taskKey(record.task));
      return status?.epoch === record.epoch ? status : undefined;
    };
    const running = [...state.versions.values()].filter((version) => version.state === 'running');
    const progress = running.map((version) =>
      versionProgress({ version, tasks: state.tasks, reported, lastSequences: (topic) => streamPositions.of(topic) }),
    );
    metrics.recordVersions(progress);
    const now = clock.now();
    state.progress = new Map(
      progress.map((entry) => [jobVersionKey(entry), { ...entry, etaSeconds: reprocessing.observe(entry, now) }]),
    );
  }

  /** A CAS failure means another leader wrote: drop the in-memory view and reload if still leading. */
  onStoreError(error: unknown): void {
    this.options.logger.error({ err: error }, 'cluster state write failed: reloading');
    this.options.state.unload();
  }

  private send(command: Command): void {
    const message: Message =
      command.kind === 'assign'
        ? {
            type: 'task.assign',
            task: command.task,
            epoch: command.epoch,
            from: command.from,
            ...(command.plan ? { plan: command.plan } : {}),
          }
        : { type: 'task.revoke', task: command.task, epoch: Math.max(1, command.epoch) };
    this.options.logger.debug(
      { worker: command.worker, task: taskKey(command.task), kind: command.kind, epoch: command.epoch },
      'sending',
    );
    this.options.nc.publish(subjects.coordinatorToWorker(command.worker), encodeMessage(message));
  }
}
