// The admin API the leader answers on `subjects.adminRequest(verb)`: start (and replay, which is
// a start from a past position with an optional auto cutover), stop, cutover, retire and status.
// Each verb is a function of the dependencies it names, so a test can call it alone; a refusal
// is a KappaError whose code goes back in `reply.error` (protocol/messages.ts `adminReplies`).
import type { Logger } from 'pino';
import {
  decodeMessage,
  jobVersionKey,
  KappaError,
  type AdminReply,
  type AdminRequest,
  type ClusterStatus,
  type Clock,
  type JobVersionKey,
  type JobVersionStatusView,
  type Message,
  type TaskKey,
} from '../protocol/index.js';
import type { JobVersionRecord, TaskRecord } from './cluster-state.js';
import type { LeaderState, VersionRecords } from './leader-state.js';
import type { Reprocessing } from './reprocessing.js';
import { assertSinkTopicUnshared } from './sink-topics.js';
import type { StatusFilter } from './status-view.js';
import type { Carrier } from './topic-resolution.js';
import type { VersionProgress } from './version-progress.js';

/** Everything a verb may use; each verb takes only the part it names. */
export interface AdminContext extends VersionRecords {
  readonly tasks: ReadonlyMap<TaskKey, TaskRecord>;
  /** Job → the version its alias points at (the cache status shows as `served`). */
  readonly aliases: Map<string, string>;
  /** Latest progress of each running version, refreshed first by `refreshProgress`. */
  readonly progress: ReadonlyMap<JobVersionKey, VersionProgress>;
  refreshProgress(): void;
  /** One reconciliation round: assigns or revokes what the change asks for. */
  reconcile(): Promise<void>;
  view(version: JobVersionRecord): JobVersionStatusView;
  /** Undefined when this replica is not leading with its state loaded. */
  status(filter: StatusFilter): ClusterStatus | undefined;
  carrier(key: JobVersionKey): Carrier;
  /** The topic's partition count, or undefined when the topic does not exist. */
  partitionsOf(topic: string): Promise<number | undefined>;
  /** The version with its stages planned (topic-resolution.ts), or unchanged while it cannot be yet. */
  planVersion(version: JobVersionRecord): Promise<JobVersionRecord>;
  reprocessing: Pick<Reprocessing, 'cutover' | 'assertRetirable'>;
  clock: Clock;
  logger: Logger;
}

/** The context of the leader's verbs: the maps are read through getters, since a load replaces them. */
export function leaderAdminContext(
  state: LeaderState,
  parts: Omit<AdminContext, keyof VersionRecords | 'tasks' | 'aliases' | 'progress'>,
): AdminContext {
  return {
    ...parts,
    get versions() {
      return state.versions;
    },
    get tasks() {
      return state.tasks;
    },
    get aliases() {
      return state.aliases;
    },
    get progress() {
      return state.progress;
    },
    putVersion: (record) => state.putVersion(record),
  };
}

/** Decodes one admin request and answers it; every failure becomes a `reply.error` with a stable code. */
export async function answerAdminRequest(context: AdminContext, data: Uint8Array): Promise<Message> {
  try {
    const request = decodeMessage(data);
    switch (request.type) {
      case 'job.start':
        return ok(await startVersion(context, request));
      case 'job.stop':
        return ok(await stopVersion(context, request));
      case 'job.cutover':
        return ok(await cutoverVersion(context, request));
      case 'job.retire':
        return ok(await retireVersion(context, request));
      case 'status.request':
        return ok(clusterStatusReply(context, request));
      default:
        throw new KappaError('PROTOCOL_SCHEMA', `'${request.type}' is not an admin request`);
    }
  } catch (error) {
    return {
      type: 'reply.error',
      code: error instanceof KappaError ? error.code : 'INTERNAL',
      message: error instanceof Error ? error.message : String(error),
    };
  }
}

function ok(detail: AdminReply<'start' | 'stop' | 'cutover' | 'retire' | 'status'>): Message {
  return { type: 'reply.ok', detail };
}

export async function startVersion(
  context: Pick<
    AdminContext,
    'versions' | 'putVersion' | 'reconcile' | 'view' | 'carrier' | 'partitionsOf' | 'planVersion' | 'clock' | 'logger'
  >,
  request: AdminRequest<'start'>,
): Promise<AdminReply<'start'>> {
  const key = jobVersionKey(request);
  const existing = context.versions.get(key);
  if (existing?.state === 'stopping') {
    throw new KappaError(
      'VERSION_STOPPING',
      `job ${request.job} version ${request.version} is still stopping; start it again once its tasks are released`,
    );
  }
  if (existing) return { ...context.view(existing), alreadyRunning: true };
  assertSinkTopicUnshared(context, request);
  const carrier = context.carrier(key);
  const topic = request.topic ?? carrier.topic ?? null;
  let partitions: number | null = null;
  if (topic !== null) {
    const found = await context.partitionsOf(topic);
    if (found === undefined && request.topic !== undefined) {
      throw new KappaError(
        'TOPIC_NOT_FOUND',
        `topic '${topic}' does not exist (create it with 'kappa topic create ${topic} --partitions P')`,
      );
    }
    partitions = found ?? null;
  }
  // Planned before it is stored when a carrier is live: no task is assigned before its plan.
  const record = await context.planVersion({
    job: request.job,
    version: request.version,
    topic,
    partitions,
    from: request.from,
    state: 'running',
    startedAtMs: context.clock.now(),
    ...(carrier.table ? { table: carrier.table } : {}),
    ...(request.autoCutover ? { autoCutover: request.autoCutover } : {}),
  });
  await context.putVersion(record);
  context.logger.info(
    {
      job: record.job,
      version: record.version,
      topic: record.topic,
      partitions: record.partitions,
      repartitioned: record.plan === undefined ? undefined : record.plan.repartition !== null,
    },
    'job version started',
  );
  await context.reconcile();
  return context.view(record);
}

export async function stopVersion(
  context: Pick<AdminContext, 'versions' | 'tasks' | 'putVersion' | 'reconcile' | 'view' | 'logger'>,
  request: AdminRequest<'stop'>,
): Promise<AdminReply<'stop'>> {
  const key = jobVersionKey(request);
  const existing = context.versions.get(key);
  if (!existing)
    throw new KappaError('VERSION_NOT_FOUND', `job ${request.job} version ${request.version} is not running`);
  const held = [...context.tasks.values()].filter(
    (record) => jobVersionKey(record.task) === key && record.worker !== null,
  ).length;
  const record: JobVersionRecord = { ...existing, state: 'stopping' };
  await context.putVersion(record);
  context.logger.info({ job: record.job, version: record.version, tasks: held }, 'job version stopping');
  await context.reconcile();
  return { ...context.view(record), releasing: held };
}

/** Flips the alias when the version has caught up (reprocessing.ts decides); a pending auto cutover is done then. */
export async function cutoverVersion(
  context: Pick<AdminContext, 'versions' | 'putVersion' | 'progress' | 'refreshProgress' | 'aliases' | 'reprocessing'>,
  request: AdminRequest<'cutover'>,
): Promise<AdminReply<'cutover'>> {
  const key = jobVersionKey(request);
  const version = context.versions.get(key);
  if (!version)
    throw new KappaError(
      'VERSION_NOT_FOUND',
      `job ${request.job} version ${request.version} is not running (start it with 'kappa replay')`,
    );
  context.refreshProgress();
  const entry = await context.reprocessing.cutover(version, context.progress.get(key), request.maxLagMessages);
  if (version.autoCutover) {
    const { autoCutover: _done, ...cutOver } = version;
    await context.putVersion(cutOver);
  }
  context.aliases.set(request.job, request.version);
  return entry;
}

/** Stops a version apps no longer read; its table and checkpoints go once the grace period is over (reprocessing-tick.ts). */
export async function retireVersion(
  context: Pick<AdminContext, 'versions' | 'putVersion' | 'reconcile' | 'view' | 'reprocessing' | 'clock' | 'logger'>,
  request: AdminRequest<'retire'>,
): Promise<AdminReply<'retire'>> {
  const key = jobVersionKey(request);
  const existing = context.versions.get(key);
  if (!existing)
    throw new KappaError('VERSION_NOT_FOUND', `job ${request.job} version ${request.version} is not running`);
  await context.reprocessing.assertRetirable(request.job, request.version);
  const retireAtMs = context.clock.now() + request.graceMs;
  const record: JobVersionRecord = {
    ...existing,
    state: existing.state === 'retired' ? 'retired' : 'stopping',
    retireAtMs,
  };
  await context.putVersion(record);
  context.logger.info({ job: record.job, version: record.version, graceMs: request.graceMs }, 'retiring job version');
  await context.reconcile();
  return { ...context.view(record), dropAt: new Date(retireAtMs).toISOString() };
}

/** The cluster, or only the job `request.job` names (its versions and tasks). */
export function clusterStatusReply(
  context: Pick<AdminContext, 'status'>,
  request: AdminRequest<'status'>,
): AdminReply<'status'> {
  const status = context.status(request.job === undefined ? {} : { job: request.job });
  if (status === undefined)
    throw new KappaError('NO_LEADER', 'this coordinator stopped leading while answering; ask again');
  return status;
}
