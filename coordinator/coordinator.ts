// The coordinator process: every replica listens to the workers and keeps membership; only the
// elected leader stores state, answers admin requests and sends assign/revoke. Its control loop
// is idempotent reconciliation (cluster-state.ts): on every tick and event it compares what each
// worker reports with what it should run and (re)sends what is missing, so lost messages,
// restarts and leader changes heal by themselves.
//
// All state changes run one at a time on `queue`: NATS callbacks and timers only enqueue.
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  decodeMessage,
  encodeMessage,
  readTopicConfig,
  subjects,
  type ClusterStatus,
  type Message,
  type MessageOf,
  type TaskStatusView,
} from '../protocol/index.js';
import { jobVersionKey, taskKey, type JobVersionKey, type TaskKey, type WorkerId } from './assignment.js';
import type { Clock } from './clock.js';
import { desiredTasks, emptyTransit, reconcile, versionStatus, type Command, type JobVersionRecord, type TaskRecord } from './cluster-state.js';
import { ClusterStore } from './cluster-store.js';
import { LeaderElection } from './leader-election.js';
import { Membership } from './membership.js';
import type { CoordinatorMetrics } from './metrics.js';
import { StreamPositions } from './stream-positions.js';
import { JobStreamUsage } from './job-stream-usage.js';
import { topicsOf, versionProgress, type VersionProgress } from './version-progress.js';
import { Reprocessing } from './reprocessing.js';
import { tableSettingsFromEnv, TABLE_KINDS, type TableKind } from '../tables/index.js';

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
  clock: Clock;
  logger: Logger;
  metrics: CoordinatorMetrics;
}

/** Admin request verbs: `subjects.adminRequest(verb)`. */
export const adminVerbs = { start: 'start', stop: 'stop', status: 'status', cutover: 'cutover', retire: 'retire' } as const;

export class Coordinator {
  private readonly membership: Membership;
  private versions = new Map<JobVersionKey, JobVersionRecord>();
  private tasks = new Map<TaskKey, TaskRecord>();
  private transit = emptyTransit();
  /** True while leading with the stored state loaded. */
  private loaded = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly subscriptions: Subscription[] = [];
  private ticker: NodeJS.Timeout | undefined;

  private readonly election: LeaderElection;
  /** Partition stream ends, for replay progress (read only while leading). */
  private readonly streamPositions: StreamPositions;
  /** Replay progress, ETA, cutover and retire. */
  readonly reprocessing: Reprocessing;
  /** Latest progress and ETA of each running version (leader only), for status and cutover. */
  private progress = new Map<JobVersionKey, VersionProgress & { etaSeconds: number | undefined }>();
  /** The version each job's alias points at, refreshed by the leader's tick. */
  private aliases = new Map<string, string>();
  private aliasesReadAtMs = 0;

  private constructor(
    private readonly options: CoordinatorOptions,
    private readonly store: ClusterStore,
    leaderKv: KV,
  ) {
    this.membership = new Membership(options.sessionTimeoutMs, options.clock);
    this.election = new LeaderElection({
      kv: leaderKv,
      candidateId: options.coordinatorId,
      ttlMs: options.leaseTtlMs,
      clock: options.clock,
      onChange: (leading, fencingToken) => this.enqueue(() => this.leadershipChanged(leading, fencingToken)),
      onError: (error) => options.logger.warn({ err: error }, 'leader election: NATS error'),
    });
    this.reprocessing = new Reprocessing(options.nc, tableSettingsFromEnv(), options.logger);
    this.streamPositions = new StreamPositions(options.nc, () => (this.isLeader() ? topicsOf(this.versions.values()) : new Map()), options.logger);
    const jobStreams = new JobStreamUsage(options.nc, options.logger);
    options.metrics.observeJobStreams(() => (this.isLeader() ? jobStreams.read() : undefined));
  }

  static async start(options: CoordinatorOptions): Promise<Coordinator> {
    const store = await ClusterStore.open(options.nc);
    const leaderKv = await LeaderElection.openBucket(options.nc, options.leaseTtlMs);
    const coordinator = new Coordinator(options, store, leaderKv);
    coordinator.listen();
    coordinator.election.start();
    coordinator.streamPositions.start();
    coordinator.ticker = setInterval(() => coordinator.enqueue(() => coordinator.tick()), options.tickMs ?? 250);
    return coordinator;
  }

  isLeader(): boolean {
    return this.election.isLeader();
  }

  /** Ready: leading with the stored state loaded, or following a leader it knows (the caller adds "connected"). */
  isReady(): boolean {
    return !this.options.nc.isClosed() && (this.election.isLeader() ? this.loaded : this.election.hasLeader());
  }

  /** Graceful stop: hand leadership over (delete the key with CAS) and stop listening. */
  async stop(): Promise<void> {
    clearInterval(this.ticker);
    this.streamPositions.stop();
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    await this.queue;
    await this.election.resign();
    await this.reprocessing.close();
    this.loaded = false;
    this.options.metrics.leader.set(0);
  }

  private enqueue(work: () => Promise<void> | void): void {
    this.queue = this.queue.then(work).catch((error: unknown) => this.options.logger.error({ err: error }, 'coordinator step failed'));
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
    this.loaded = false;
    this.transit = emptyTransit();
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
    const state = await this.store.load();
    this.versions = state.versions;
    this.tasks = state.tasks;
    // Workers stored by the previous leader but not heard here yet get a session to heartbeat.
    this.membership.adopt(state.workers);
    this.loaded = true;
    this.options.logger.info({ versions: this.versions.size, tasks: this.tasks.size, workers: this.membership.size }, 'cluster state loaded');
    await this.resolveTopics();
    await this.reconcile();
  }

  private async tick(): Promise<void> {
    const dead = this.membership.expire();
    if (dead.length > 0) this.options.logger.warn({ workers: dead }, 'workers silent past the session timeout: declared dead');
    this.options.metrics.workers.set(this.membership.size);
    if (!this.election.isLeader()) return;
    if (!this.loaded) return this.loadState();
    for (const id of dead) await this.store.deleteWorker(id).catch((error: unknown) => this.onStoreError(error));
    if ([...this.versions.values()].some((version) => version.partitions === null || version.table === undefined)) await this.resolveTopics();
    await this.reconcile();
    await this.advanceReprocessing();
  }

  /** Auto cutovers whose version has caught up, retired versions whose grace is over, the alias cache. */
  private async advanceReprocessing(): Promise<void> {
    const now = this.options.clock.now();
    for (const version of [...this.versions.values()]) {
      const key = jobVersionKey(version);
      if (version.state === 'running' && version.autoCutover) {
        try {
          await this.reprocessing.cutover(version, this.progress.get(key), version.autoCutover.maxLagMessages);
        } catch (error) {
          if ((error as { code?: string }).code === 'ADMIN_REJECTED') continue; // not caught up yet
          throw error;
        }
        const { autoCutover: _done, ...cutOver } = version;
        await this.store.putVersion(cutOver);
        this.versions.set(key, cutOver);
        this.aliasesReadAtMs = 0;
      } else if (version.state === 'retired' && version.retireAtMs !== undefined && now >= version.retireAtMs) {
        await this.reprocessing.dropVersionData(version);
        await this.store.deleteVersion(key);
        this.versions.delete(key);
        // Its checkpoints are gone, so its tasks' epochs need not be kept any more.
        for (const [task, record] of [...this.tasks]) {
          if (jobVersionKey(record.task) !== key) continue;
          await this.store.deleteTask(task);
          this.tasks.delete(task);
        }
        this.reprocessing.forget(key);
      }
    }
    if (now - this.aliasesReadAtMs >= 1_000) {
      this.aliasesReadAtMs = now;
      const registry = await this.reprocessing.aliases();
      const aliases = new Map<string, string>();
      for (const job of new Set([...this.versions.values()].map((version) => version.job))) {
        // A job with no alias yet gets one at its first version started (reprocessing.ts).
        const entry = (await registry.get(job)) ?? (await this.reprocessing.aliasFirstVersion(job, this.versions.values()));
        if (entry) aliases.set(job, entry.version);
      }
      this.aliases = aliases;
    }
  }

  // ---- workers -------------------------------------------------------------------------------

  private async onWorkerMessage(message: Message): Promise<void> {
    const leading = this.election.isLeader() && this.loaded;
    switch (message.type) {
      case 'worker.register': {
        const { type: _type, ...registration } = message;
        const changed = this.membership.register(registration);
        this.options.logger.info({ workerId: registration.workerId, capacity: registration.capacity, changed }, 'worker registered');
        if (leading) {
          await this.store.putWorker(registration);
          await this.resolveTopics();
          await this.reconcile();
        }
        return;
      }
      case 'worker.heartbeat': {
        let known = this.membership.heartbeat(message.workerId, message.tasks);
        if (!known && message.capacity !== undefined && message.carries !== undefined) {
          const registration = { workerId: message.workerId, capacity: message.capacity, carries: message.carries, httpUrl: message.httpUrl };
          this.membership.register(registration);
          known = this.membership.heartbeat(message.workerId, message.tasks);
          if (leading) await this.store.putWorker(registration);
        }
        if (!known) this.options.logger.debug({ workerId: message.workerId }, 'heartbeat from an unregistered worker');
        return;
      }
      case 'worker.leave': {
        this.membership.leave(message.workerId);
        this.options.logger.info({ workerId: message.workerId }, 'worker left');
        if (leading) {
          await this.store.deleteWorker(message.workerId);
          await this.reconcile();
        }
        return;
      }
      case 'task.released': {
        if (!leading) return;
        const key = taskKey(message.task);
        const record = this.tasks.get(key);
        // Epoch rule: a release for anything but the current holder at the current epoch is stale.
        if (record?.worker !== message.workerId || record.epoch !== message.epoch) {
          this.options.logger.debug({ task: key, workerId: message.workerId, epoch: message.epoch }, 'ignoring a stale task.released');
          return;
        }
        this.transit.released.add(key);
        await this.reconcile();
        return;
      }
      default:
        this.options.logger.warn({ type: message.type }, 'ignoring a message not meant for the coordinator');
    }
  }

  // ---- reconciliation ------------------------------------------------------------------------

  private async reconcile(): Promise<void> {
    if (!this.election.isLeader() || !this.loaded) return;
    const { clock, metrics, logger } = this.options;
    const result = reconcile({
      versions: this.versions,
      tasks: this.tasks,
      workers: this.membership.liveWorkers(),
      transit: this.transit,
      nowMs: clock.now(),
      resendAfterMs: this.options.resendAfterMs ?? 1_000,
    });
    try {
      // Store first, send after: a successor must never see an older epoch than a worker holds.
      await Promise.all([
        ...result.puts.map((record) => this.store.putTask(record)),
        ...result.finishedVersions.map((key) => this.store.deleteVersion(key)),
      ]);
    } catch (error) {
      return this.onStoreError(error);
    }
    for (const record of result.puts) this.tasks.set(taskKey(record.task), record);
    for (const key of result.finishedVersions) {
      const version = this.versions.get(key);
      if (version?.retireAtMs !== undefined) {
        // Retired: kept until its grace period ends, then its table and checkpoints are dropped.
        const retired: JobVersionRecord = { ...version, state: 'retired' };
        await this.store.putVersion(retired);
        this.versions.set(key, retired);
        logger.info({ version: key, dropAt: new Date(version.retireAtMs).toISOString() }, 'job version retired: every task released');
        continue;
      }
      this.versions.delete(key);
      logger.info({ version: key }, 'job version stopped: every task released');
    }
    if (!this.election.isLeader()) return;
    for (const command of result.commands) this.send(command);
    if (result.movesStarted > 0) {
      metrics.rebalances.inc();
      logger.info({ moves: result.movesStarted }, 'rebalancing');
    }
    if (result.fencedReassigned > 0) {
      logger.warn({ tasks: result.fencedReassigned }, 'tasks fenced by checkpoints of a higher epoch: assigned again above it');
    }
    this.updateAssignmentMetrics();
  }

  private send(command: Command): void {
    const message: Message =
      command.kind === 'assign'
        ? { type: 'task.assign', task: command.task, epoch: command.epoch, from: command.from }
        : { type: 'task.revoke', task: command.task, epoch: Math.max(1, command.epoch) };
    this.options.logger.debug({ worker: command.worker, task: taskKey(command.task), kind: command.kind, epoch: command.epoch }, 'sending');
    this.options.nc.publish(subjects.coordinatorToWorker(command.worker), encodeMessage(message));
  }

  /** A CAS failure means another leader wrote: drop the in-memory view and reload if still leading. */
  private onStoreError(error: unknown): void {
    this.options.logger.error({ err: error }, 'cluster state write failed: reloading');
    this.loaded = false;
    this.transit = emptyTransit();
  }

  private updateAssignmentMetrics(): void {
    const { metrics } = this.options;
    metrics.recordAssignments(this.membership.live().map((member) => member.slot.id), this.tasks.values());
    const reported = (record: TaskRecord) => {
      const status = record.worker === null ? undefined : this.membership.get(record.worker)?.reported?.get(taskKey(record.task));
      return status?.epoch === record.epoch ? status : undefined;
    };
    const running = [...this.versions.values()].filter((version) => version.state === 'running');
    const progress = running.map((version) => versionProgress({ version, tasks: this.tasks, reported, lastSequences: this.streamPositions.of(version.topic) }));
    metrics.recordVersions(progress);
    const now = this.options.clock.now();
    this.progress = new Map(progress.map((entry) => [jobVersionKey(entry), { ...entry, etaSeconds: this.reprocessing.observe(entry, now) }]));
  }

  /** Fills in the topic (from a carrier), partition count and table kind of versions that lack them. */
  private async resolveTopics(): Promise<void> {
    for (const known of this.versions.values()) {
      let version = known;
      const table = version.table === undefined ? this.carrierTable(jobVersionKey(version)) : undefined;
      if (table !== undefined) {
        version = { ...version, table };
        await this.store.putVersion(version);
        this.versions.set(jobVersionKey(version), version);
      }
      if (version.partitions !== null) continue;
      const topic = version.topic ?? this.carrierTopic(jobVersionKey(version));
      if (topic === undefined) continue;
      const config = await readTopicConfig(this.options.nc, topic);
      if (config === undefined) {
        this.options.logger.warn({ job: version.job, version: version.version, topic }, 'topic of job version does not exist yet');
        continue;
      }
      const resolved: JobVersionRecord = { ...version, topic, partitions: config.partitions };
      await this.store.putVersion(resolved);
      this.versions.set(jobVersionKey(resolved), resolved);
    }
  }

  /** The serving-table kind a version's carriers write, if they write one. */
  private carrierTable(versionKey: JobVersionKey): TableKind | undefined {
    for (const member of this.membership.live()) {
      const sink = member.registration.carries.find((carry) => jobVersionKey(carry) === versionKey)?.sink;
      if (sink !== undefined) return (TABLE_KINDS as readonly string[]).includes(sink) ? (sink as TableKind) : undefined;
    }
    return undefined;
  }

  private carrierTopic(versionKey: JobVersionKey): string | undefined {
    for (const member of this.membership.live()) {
      const carried = member.registration.carries.find((carry) => jobVersionKey(carry) === versionKey);
      if (carried) return carried.topic;
    }
    return undefined;
  }

  // ---- admin ---------------------------------------------------------------------------------

  private async onAdminRequest(msg: Msg): Promise<void> {
    // Followers stay silent: the requester hears the leader or times out.
    if (!this.election.isLeader() || !this.loaded) return;
    let request: Message;
    try {
      request = decodeMessage(msg.data);
    } catch (error) {
      return this.reply(msg, { type: 'reply.error', code: 'PROTOCOL_SCHEMA', message: (error as Error).message });
    }
    try {
      switch (request.type) {
        case 'job.start':
          return this.reply(msg, await this.startVersion(request));
        case 'job.stop':
          return this.reply(msg, await this.stopVersion(request));
        case 'status.request':
          return this.reply(msg, { type: 'reply.ok', detail: this.status() });
        case 'job.cutover':
          return this.reply(msg, await this.cutoverVersion(request));
        case 'job.retire':
          return this.reply(msg, await this.retireVersion(request));
        default:
          return this.reply(msg, { type: 'reply.error', code: 'PROTOCOL_SCHEMA', message: `'${request.type}' is not an admin request` });
      }
    } catch (error) {
      const code = typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : 'FAILED';
      return this.reply(msg, { type: 'reply.error', code, message: (error as Error).message });
    }
  }

  private reply(msg: Msg, message: Message): void {
    msg.respond(encodeMessage(message));
  }

  private async startVersion(request: MessageOf<'job.start'>): Promise<Message> {
    const key = jobVersionKey(request);
    const existing = this.versions.get(key);
    if (existing?.state === 'stopping') {
      return { type: 'reply.error', code: 'VERSION_STOPPING', message: `job ${request.job} version ${request.version} is still stopping; start it again once its tasks are released` };
    }
    if (existing) return { type: 'reply.ok', detail: { ...this.versionView(existing), alreadyRunning: true } };
    const topic = request.topic ?? this.carrierTopic(key) ?? null;
    let partitions: number | null = null;
    if (topic !== null) {
      const config = await readTopicConfig(this.options.nc, topic);
      if (config === undefined && request.topic !== undefined) {
        return { type: 'reply.error', code: 'TOPIC_NOT_FOUND', message: `topic '${topic}' does not exist (create it with 'kappa topic create ${topic} --partitions P')` };
      }
      partitions = config?.partitions ?? null;
    }
    const record: JobVersionRecord = {
      job: request.job,
      version: request.version,
      topic,
      partitions,
      from: request.from,
      state: 'running',
      startedAtMs: this.options.clock.now(),
      ...(this.carrierTable(key) ? { table: this.carrierTable(key) } : {}),
      ...(request.autoCutover ? { autoCutover: request.autoCutover } : {}),
    };
    await this.store.putVersion(record);
    this.versions.set(key, record);
    this.options.logger.info({ job: record.job, version: record.version, topic, partitions }, 'job version started');
    await this.reconcile();
    return { type: 'reply.ok', detail: this.versionView(record) };
  }

  private async stopVersion(request: MessageOf<'job.stop'>): Promise<Message> {
    const key = jobVersionKey(request);
    const existing = this.versions.get(key);
    if (!existing) {
      return { type: 'reply.error', code: 'VERSION_NOT_FOUND', message: `job ${request.job} version ${request.version} is not running` };
    }
    const held = [...this.tasks.values()].filter((record) => jobVersionKey(record.task) === key && record.worker !== null).length;
    const record: JobVersionRecord = { ...existing, state: 'stopping' };
    await this.store.putVersion(record);
    this.versions.set(key, record);
    this.options.logger.info({ job: record.job, version: record.version, tasks: held }, 'job version stopping');
    await this.reconcile();
    return { type: 'reply.ok', detail: { ...this.versionView(record), releasing: held } };
  }

  private async cutoverVersion(request: MessageOf<'job.cutover'>): Promise<Message> {
    const key = jobVersionKey(request);
    const version = this.versions.get(key);
    if (!version) return { type: 'reply.error', code: 'VERSION_NOT_FOUND', message: `job ${request.job} version ${request.version} is not running (start it with 'kappa replay')` };
    this.updateAssignmentMetrics();
    const entry = await this.reprocessing.cutover(version, this.progress.get(key), request.maxLagMessages);
    if (version.autoCutover) {
      const { autoCutover: _done, ...cutOver } = version;
      await this.store.putVersion(cutOver);
      this.versions.set(key, cutOver);
    }
    this.aliases.set(request.job, request.version);
    return { type: 'reply.ok', detail: entry };
  }

  private async retireVersion(request: MessageOf<'job.retire'>): Promise<Message> {
    const key = jobVersionKey(request);
    const existing = this.versions.get(key);
    if (!existing) return { type: 'reply.error', code: 'VERSION_NOT_FOUND', message: `job ${request.job} version ${request.version} is not running` };
    await this.reprocessing.assertRetirable(request.job, request.version);
    const record: JobVersionRecord = { ...existing, state: existing.state === 'retired' ? 'retired' : 'stopping', retireAtMs: this.options.clock.now() + request.graceMs };
    await this.store.putVersion(record);
    this.versions.set(key, record);
    this.options.logger.info({ job: record.job, version: record.version, graceMs: request.graceMs }, 'retiring job version');
    await this.reconcile();
    return { type: 'reply.ok', detail: { ...this.versionView(record), dropAt: new Date(record.retireAtMs!).toISOString() } };
  }

  private versionView(version: JobVersionRecord) {
    const key = jobVersionKey(version);
    let tasksAssigned = 0;
    let lagMessages = 0;
    for (const record of this.tasks.values()) {
      if (jobVersionKey(record.task) !== key || record.worker === null) continue;
      tasksAssigned++;
      lagMessages += this.membership.get(record.worker)?.reported?.get(taskKey(record.task))?.lagMessages ?? 0;
    }
    const slots = this.membership.live().map((member) => member.slot);
    const progress = this.progress.get(key);
    return {
      job: version.job,
      version: version.version,
      topic: version.topic,
      partitions: version.partitions,
      from: version.from,
      state: versionStatus(version, slots),
      tasksAssigned,
      lagMessages: progress?.lagMessages ?? lagMessages,
      progress: progress?.ratio ?? null,
      etaSeconds: progress?.etaSeconds ?? null,
      table: version.table ?? null,
      served: this.aliases.get(version.job) === version.version,
      ...(version.autoCutover ? { autoCutover: version.autoCutover } : {}),
    };
  }

  /** The cluster as the leader sees it; undefined on a follower. */
  status(): ClusterStatus | undefined {
    const fencingToken = this.election.fencingToken;
    if (fencingToken === undefined || !this.loaded) return undefined;
    const now = this.options.clock.now();
    const assignedTo = new Map<WorkerId, number>();
    for (const record of this.tasks.values()) if (record.worker !== null) assignedTo.set(record.worker, (assignedTo.get(record.worker) ?? 0) + 1);

    const tasks: TaskStatusView[] = [];
    const listed = new Set<TaskKey>();
    // Stopped versions keep their task records (their epochs): only versions still known are shown.
    const records = [...this.tasks.values()].filter((record) => this.versions.has(jobVersionKey(record.task)));
    for (const task of desiredTasks(this.versions)) if (!this.tasks.has(taskKey(task))) records.push({ task, worker: null, epoch: 0 });
    for (const record of records) {
      const key = taskKey(record.task);
      if (listed.has(key)) continue;
      listed.add(key);
      const reported = record.worker === null ? undefined : this.membership.get(record.worker)?.reported?.get(key);
      const current = reported !== undefined && reported.epoch === record.epoch ? reported : undefined;
      tasks.push({
        ...record.task,
        worker: record.worker,
        epoch: record.epoch,
        state: record.worker === null ? 'waiting' : (current?.state ?? 'assigning'),
        sequence: current?.sequence ?? null,
        lagMessages: current?.lagMessages ?? null,
        watermark: current?.watermark ?? null,
        ...(current?.state === 'failed' && current.error !== undefined ? { error: current.error } : {}),
      });
    }
    tasks.sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : a.version < b.version ? -1 : a.version > b.version ? 1 : a.partition - b.partition));

    return {
      leader: { coordinatorId: this.election.candidateId, fencingToken },
      workers: this.membership.live().map((member) => ({
        workerId: member.slot.id,
        capacity: member.registration.capacity,
        carries: member.registration.carries,
        httpUrl: member.registration.httpUrl,
        tasksAssigned: assignedTo.get(member.slot.id) ?? 0,
        lastHeartbeatAgoMs: now - member.lastHeardMs,
      })),
      versions: [...this.versions.values()].map((version) => this.versionView(version)),
      tasks,
    };
  }
}
