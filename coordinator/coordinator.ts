// The coordinator process: every replica listens to the workers and keeps membership; only the
// elected leader stores state, answers admin requests and sends assign/revoke. Its control loop
// is idempotent reconciliation (cluster-state.ts): on every tick and event it compares what each
// worker reports with what it should run and (re)sends what is missing, so lost messages,
// restarts and leader changes heal by themselves.
//
// This file is the shell: subscriptions, leadership, the queue and the tick. The parts it drives:
// leader-state.ts (what the leader holds), worker-messages.ts, reconciler.ts (a reconcile round's
// I/O), topic-resolution.ts, reprocessing-tick.ts (auto cutover, retire, the alias cache),
// admin-api.ts (the admin verbs) and status-view.ts (the status, pure).
//
// All state changes run one at a time on `queue`: NATS callbacks and timers only enqueue.
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createTopic, DEFAULT_REPARTITION_MAX_AGE_MS } from '../client/topics.js';
import {
  decodeMessage,
  encodeMessage,
  jobVersionKey,
  KappaError,
  parseAdminReply,
  readTopicConfig,
  subjects,
  type ClusterStatus,
  type Clock,
  type JobPlan,
  type JobVersionKey,
  type Message,
} from '../protocol/index.js';
import { internalReplicas, tableSettingsFromEnv } from '../runtime/index.js';
import { answerAdminRequest, leaderAdminContext, type AdminContext } from './admin-api.js';
import { adminAuditEntry, logAdminAudit } from './admin-audit.js';
import { ArchiveSchedule, DEFAULT_ARCHIVE_INTERVAL_MS } from './archive-schedule.js';
import { ClusterStore } from './cluster-store.js';
import { JobStreamUsage } from './job-stream-usage.js';
import { LeaderElection } from './leader-election.js';
import { LeaderState } from './leader-state.js';
import { Membership } from './membership.js';
import type { CoordinatorMetrics } from './metrics.js';
import { Reconciler } from './reconciler.js';
import { Reprocessing } from './reprocessing.js';
import { ReprocessingTick } from './reprocessing-tick.js';
import { clusterStatus, versionView, type StatusFilter } from './status-view.js';
import { StreamPositions } from './stream-positions.js';
import { carrierOf, needsPlan, planVersion, resolveTopics, type VersionPlanning } from './topic-resolution.js';
import { VersionDiffWatch } from './version-diff.js';
import { topicsOf } from './version-progress.js';
import { onWorkerMessage } from './worker-messages.js';

export interface CoordinatorOptions {
  nc: NatsConnection;
  coordinatorId: string;
  /** A worker silent this long is dead and its tasks move. */
  sessionTimeoutMs: number;
  /** Leader lease; the leader bucket's max_age. */
  leaseTtlMs: number;
  /** Reconciliation period. */
  tickMs?: number;
  /** A command not yet reflected in heartbeats is sent again after this. */
  resendAfterMs?: number;
  /** Age limit of the repartition topics it creates (default 7 days); keyed tasks purge them sooner. */
  repartitionMaxAgeMs?: number;
  /** How often the leader runs the archiver over the topics with an archive policy (default 60 s). */
  archiveIntervalMs?: number;
  clock: Clock;
  logger: Logger;
  metrics: CoordinatorMetrics;
}

export class Coordinator {
  private readonly membership: Membership;
  private readonly state: LeaderState;
  private queue: Promise<void> = Promise.resolve();
  private readonly subscriptions: Subscription[] = [];
  private ticker: NodeJS.Timeout | undefined;

  private readonly election: LeaderElection;
  /** Partition stream ends, for replay progress (read only while leading). */
  private readonly streamPositions: StreamPositions;
  /** Replay progress, ETA, cutover and retire. */
  readonly reprocessing: Reprocessing;
  private readonly reconciler: Reconciler;
  private readonly reprocessingTick: ReprocessingTick;
  /** The latest diff of each `--max-changed` replay against the served version. */
  private readonly diffs: VersionDiffWatch;
  private readonly admin: AdminContext;
  /** The archiver, run beside the loop while leading (archive-schedule.ts). */
  private readonly archiveSchedule: ArchiveSchedule;

  private constructor(
    private readonly options: CoordinatorOptions,
    store: ClusterStore,
    leaderKv: KV,
  ) {
    const { nc, clock, logger, metrics } = options;
    this.membership = new Membership(options.sessionTimeoutMs, clock);
    this.state = new LeaderState(store);
    this.election = new LeaderElection({
      kv: leaderKv,
      candidateId: options.coordinatorId,
      ttlMs: options.leaseTtlMs,
      clock,
      onChange: (leading, fencingToken) => this.enqueue(() => this.leadershipChanged(leading, fencingToken)),
      onError: (error) => logger.warn({ err: error }, 'leader election: NATS error'),
    });
    this.reprocessing = new Reprocessing(nc, tableSettingsFromEnv(), logger);
    this.streamPositions = new StreamPositions(
      nc,
      () => (this.isLeader() ? topicsOf(this.state.versions.values()) : new Map()),
      logger,
    );
    const jobStreams = new JobStreamUsage(nc, logger);
    metrics.observeJobStreams(() => (this.isLeader() ? jobStreams.read() : undefined));
    this.reconciler = new Reconciler({
      nc,
      state: this.state,
      membership: this.membership,
      isLeader: () => this.election.isLeader(),
      streamPositions: this.streamPositions,
      reprocessing: this.reprocessing,
      resendAfterMs: options.resendAfterMs ?? 1_000,
      clock,
      logger,
      metrics,
    });
    this.diffs = new VersionDiffWatch({
      tables: (kind) => this.reprocessing.tables(kind),
      status: (job) => this.status({ job }),
      clock,
      logger,
    });
    metrics.observeVersionDiffs(() => (this.isLeader() ? this.diffs.latest.values() : undefined));
    this.reprocessingTick = new ReprocessingTick(this.state, this.reprocessing, clock, this.diffs);
    this.admin = this.adminContext();
    this.archiveSchedule = new ArchiveSchedule({
      nc,
      intervalMs: options.archiveIntervalMs ?? DEFAULT_ARCHIVE_INTERVAL_MS,
      fencingToken: () => (this.state.loaded ? this.election.fencingToken : undefined),
      clock,
      logger,
    });
    metrics.observeArchive(() => this.archiveSchedule.states());
  }

  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const store = await ClusterStore.open(options.nc);
    const leaderKv = await LeaderElection.openBucket(options.nc, options.leaseTtlMs);
    const coordinator = new Coordinator(options, store, leaderKv);
    coordinator.listen();
    coordinator.election.start();
    coordinator.streamPositions.start();
    coordinator.archiveSchedule.start();
    coordinator.ticker = setInterval(() => coordinator.enqueue(() => coordinator.tick()), options.tickMs ?? 250);
    return coordinator;
  }

  isLeader(): boolean {
    return this.election.isLeader();
  }

  /** Ready: leading with the stored state loaded, or following a leader it knows (the caller adds "connected"). */
  isReady(): boolean {
    return !this.options.nc.isClosed() && (this.election.isLeader() ? this.state.loaded : this.election.hasLeader());
  }

  /** Graceful stop: hand leadership over (delete the key with CAS) and stop listening. */
  async stop(): Promise<void> {
    clearInterval(this.ticker);
    this.streamPositions.stop();
    await this.archiveSchedule.stop();
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    await this.queue;
    if (await this.election.resign())
      this.options.logger.info('resigned: the leader key is deleted, a follower leads next');
    await this.reprocessing.close();
    this.state.loaded = false;
    this.options.metrics.leader.set(0);
  }

  /** The cluster as the leader sees it (optionally one job's versions and tasks); undefined on a follower. */
  status(filter: StatusFilter = {}): ClusterStatus | undefined {
    const fencingToken = this.election.fencingToken;
    if (fencingToken === undefined || !this.state.loaded) return undefined;
    const leader = { coordinatorId: this.election.candidateId, fencingToken };
    return clusterStatus({ ...this.viewInput(), nowMs: this.options.clock.now(), leader }, filter);
  }

  /**
   * The status of one job from the leader: this replica's own while it leads, else asked of the
   * leader over NATS (the query API answers on every replica).
   */
  async leaderStatus(job: string): Promise<ClusterStatus> {
    const own = this.status({ job });
    if (own) return own;
    const request: Message = { type: 'status.request', job };
    const response = await this.options.nc.request(subjects.adminRequest('status'), encodeMessage(request), {
      timeout: 3_000,
    });
    const reply = decodeMessage(response.data);
    if (reply.type === 'reply.error') throw new KappaError(reply.code, reply.message);
    if (reply.type !== 'reply.ok')
      throw new KappaError('PROTOCOL_SCHEMA', `the leader answered '${reply.type}' to a status request`);
    return parseAdminReply('status', reply.detail);
  }

  private enqueue(work: () => Promise<void> | void): void {
    this.queue = this.queue
      .then(work)
      .catch((error: unknown) => this.options.logger.error({ err: error }, 'coordinator step failed'));
  }

  private listen(): void {
    const { nc, logger } = this.options;
    this.subscriptions.push(
      nc.subscribe(subjects.workerToCoordinator, {
        callback: (error, msg) => {
          if (error) return logger.error({ err: error }, 'worker subscription failed');
          let message: Message;
          try {
            message = decodeMessage(msg.data);
          } catch (decodeError) {
            return logger.warn({ err: decodeError }, 'ignoring an undecodable worker message');
          }
          this.enqueue(() => this.onWorkerMessage(message));
        },
      }),
      nc.subscribe(subjects.adminRequest('*'), {
        callback: (error, msg) => {
          if (error) return logger.error({ err: error }, 'admin subscription failed');
          this.enqueue(() => this.onAdminRequest(msg));
        },
      }),
    );
  }

  // ---- leadership ---------------------------------------------------------------------------

  private async leadershipChanged(leading: boolean, fencingToken: number | undefined): Promise<void> {
    const { logger, metrics } = this.options;
    this.state.unload();
    metrics.leader.set(leading ? 1 : 0);
    if (!leading) {
      metrics.clearLeaderView();
      logger.info('following');
      return;
    }
    logger.info({ fencingToken }, 'leading: loading cluster state');
    await this.loadState();
  }

  private async loadState(): Promise<void> {
    // Workers stored by the previous leader but not heard here yet get a session to heartbeat.
    this.membership.adopt(await this.state.load());
    this.options.logger.info(
      { versions: this.state.versions.size, tasks: this.state.tasks.size, workers: this.membership.size },
      'cluster state loaded',
    );
    await this.resolveTopics();
    await this.reconciler.reconcile();
  }

  private async tick(): Promise<void> {
    const dead = this.membership.expire();
    if (dead.length > 0)
      this.options.logger.warn({ workers: dead }, 'workers silent past the session timeout: declared dead');
    this.options.metrics.workers.set(this.membership.size);
    if (!this.election.isLeader()) return;
    if (!this.state.loaded) return this.loadState();
    for (const id of dead)
      await this.state.store.deleteWorker(id).catch((error: unknown) => this.reconciler.onStoreError(error));
    if ([...this.state.versions.values()].some((version) => needsPlan(version) || version.table === undefined))
      await this.resolveTopics();
    await this.reconciler.reconcile();
    await this.reprocessingTick.advance();
  }

  // ---- the parts it drives -------------------------------------------------------------------

  private onWorkerMessage(message: Message): Promise<void> {
    return onWorkerMessage(
      {
        membership: this.membership,
        state: this.state,
        leading: this.election.isLeader() && this.state.loaded,
        resolveTopics: () => this.resolveTopics(),
        reconcile: () => this.reconciler.reconcile(),
        logger: this.options.logger,
      },
      message,
    );
  }

  private async onAdminRequest(msg: Msg): Promise<void> {
    // Followers stay silent: the requester hears the leader or times out.
    if (!this.election.isLeader() || !this.state.loaded) return;
    const reply = await answerAdminRequest(this.admin, msg.data);
    logAdminAudit(this.options.logger, adminAuditEntry(msg.subject, msg.headers, msg.data, reply));
    msg.respond(encodeMessage(reply));
  }

  private resolveTopics(): Promise<void> {
    return resolveTopics({ state: this.state, ...this.planning() });
  }

  /** What planning a version's stages reads and creates (topic-resolution.ts). */
  private planning(): VersionPlanning {
    const { nc, logger } = this.options;
    return {
      carrier: (key) => carrierOf(this.membership.live(), key),
      topicConfig: (topic) => readTopicConfig(nc, topic),
      createRepartitionTopic: (repartition) => this.createRepartitionTopic(repartition),
      ranDirect: (key) => this.ranDirect(key),
      ranRepartitioned: (key) => this.ranRepartitioned(key),
      logger,
    };
  }

  private async createRepartitionTopic({ topic, partitions }: NonNullable<JobPlan['repartition']>): Promise<void> {
    await createTopic(this.options.nc, {
      name: topic,
      partitions,
      // Kappa's own data, kept like its other streams (checkpoints, cluster state).
      replicas: internalReplicas(),
      internal: true,
      maxAgeMs: this.options.repartitionMaxAgeMs ?? DEFAULT_REPARTITION_MAX_AGE_MS,
    });
  }

  private ranDirect(key: JobVersionKey): boolean {
    let ran = false;
    for (const record of this.state.tasks.values()) {
      if (jobVersionKey(record.task) !== key) continue;
      if (record.task.stage !== undefined) return false;
      ran = true;
    }
    return ran;
  }

  private ranRepartitioned(key: JobVersionKey): number | undefined {
    let routed = false;
    let keyedPartitions = 0;
    for (const record of this.state.tasks.values()) {
      if (jobVersionKey(record.task) !== key) continue;
      if (record.task.stage !== undefined) routed = true;
      else keyedPartitions = Math.max(keyedPartitions, record.task.partition + 1);
    }
    return routed && keyedPartitions > 0 ? keyedPartitions : undefined;
  }

  private async partitionsOf(topic: string): Promise<number | undefined> {
    return (await readTopicConfig(this.options.nc, topic))?.partitions;
  }

  /** What the status views are built from, read at the time of asking. */
  private viewInput() {
    const { versions, tasks, progress, aliases } = this.state;
    return { versions, tasks, progress, aliases, diffs: this.diffs.latest, workers: this.membership.live() };
  }

  private adminContext(): AdminContext {
    const { options } = this;
    return leaderAdminContext(this.state, {
      refreshProgress: () => this.reconciler.refreshProgress(),
      reconcile: () => this.reconciler.reconcile(),
      view: (version) => versionView(this.viewInput(), version),
      status: (filter) => this.status(filter),
      carrier: (key) => carrierOf(this.membership.live(), key),
      partitionsOf: (topic) => this.partitionsOf(topic),
      planVersion: (version) => planVersion(this.planning(), version),
      reprocessing: this.reprocessing,
      clock: options.clock,
      logger: options.logger,
    });
  }
}
