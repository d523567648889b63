// The worker process driven by a coordinator: a piscina pool of T threads (task-host-threads.ts),
// each running one long-lived task host (task-thread.ts). This main thread speaks the control
// protocol (control-client.ts), places each assigned task on the least-loaded thread, turns the
// hosts' progress into heartbeats (placed-task.ts), and restarts a dead thread's tasks on its
// replacement.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  jobVersionKey,
  taskKey,
  type JobPlan,
  type MessageOf,
  type StartPosition,
  type TaskId,
  type TaskStatus,
} from '../protocol/index.js';
import { type NatsSettings } from '../runtime/index.js';
import { decideAssign, decideRevoke, leastLoadedThread } from './assignment-rules.js';
import { ControlClient, type Registration } from './control-client.js';
import { placedTask, placedTaskStatus, type PlacedTask } from './placed-task.js';
import { notReadyReason } from './readiness.js';
import { TaskHostThreads } from './task-host-threads.js';
import { PoolMetrics } from './thread-metrics.js';
import type { TaskSettings } from './task-settings.js';
import type { FromTaskHost, ToTaskHost } from './thread-messages.js';

export interface WorkerPoolOptions {
  nc: NatsConnection;
  /** Settings each thread uses for its own NATS connection. */
  nats: NatsSettings;
  workerId: string;
  threads: number;
  /** Each thread's young heap generation in MB (default: V8's, 16 MB on 64-bit). */
  threadYoungGenerationMb?: number;
  /** Each task thread's old heap generation in MB (V8's default when unset). */
  threadHeapMb?: number;
  /** Absolute paths of the job modules; every thread loads each. */
  jobFiles: string[];
  /** The job versions those modules define, with their topics (sent in worker.register). */
  carries: Registration['carries'];
  /** What each task runs with; handed to every thread as it is. */
  tasks: TaskSettings;
  logLevel: string;
  logger: Logger;
  httpUrl?: string;
  heartbeatIntervalMs?: number;
  /** Re-register every this many heartbeats, in case a new coordinator leader does not know us. */
  registerEveryHeartbeats?: number;
  /** Longest wait for tasks to stop on shutdown. */
  releaseTimeoutMs?: number;
  /** A thread silent this long makes the worker not live (/healthz). */
  threadSilenceLimitMs?: number;
}

export class WorkerPool {
  readonly metrics = new PoolMetrics();
  private readonly threads: TaskHostThreads;
  private readonly control: ControlClient;
  private readonly tasks = new Map<string, PlacedTask>();
  /** Last released sequence per task, to answer a repeated revoke the same way. */
  private readonly releasedSequences = new Map<string, number>();
  private readonly carried: Set<string>;
  private readonly refusedLogged = new Set<string>();
  private readonly heartbeatTimer: NodeJS.Timeout;
  private heartbeats = 0;
  private accepting = true;
  private shuttingDown = false;
  private onAllReleased: (() => void) | undefined;
  private readonly logger: Logger;

  constructor(private readonly options: WorkerPoolOptions) {
    this.logger = options.logger;
    this.carried = new Set(options.carries.map((carry) => jobVersionKey(carry)));
    const { workerId, jobFiles, nats, tasks, logLevel } = options;
    this.threads = new TaskHostThreads({
      threads: options.threads,
      ...(options.threadYoungGenerationMb === undefined ? {} : { youngGenerationMb: options.threadYoungGenerationMb }),
      ...(options.threadHeapMb === undefined ? {} : { heapMb: options.threadHeapMb }),
      host: { workerId, jobFiles, nats, tasks, logLevel },
      logger: this.logger,
      metrics: this.metrics,
      shuttingDown: () => this.shuttingDown,
      onMessage: (threadIndex, message) => this.onHostMessage(threadIndex, message),
      startsFor: (threadIndex) => this.startsFor(threadIndex),
      onDied: (threadIndex, reason) => this.onThreadDied(threadIndex, reason),
    });
    this.control = new ControlClient(
      options.nc,
      options.workerId,
      {
        onAssign: (message) => this.onAssign(message),
        onRevoke: (message) => this.onRevoke(message),
      },
      this.logger,
    );
    this.register();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), options.heartbeatIntervalMs ?? 1000);
    void this.registerOnReconnect();
    this.logger.info(
      { workerId: options.workerId, threads: options.threads, carries: options.carries },
      'worker pool started',
    );
  }

  // ── threads ──────────────────────────────────────────────────────────────

  /** The tasks placed on a thread, started again on its new host (a replaced thread). */
  private startsFor(threadIndex: number): ToTaskHost[] {
    return [...this.tasks.values()]
      .filter((placed) => placed.thread === threadIndex && !placed.releasing)
      .map((placed) => ({
        type: 'start',
        task: placed.task,
        epoch: placed.epoch,
        from: placed.from,
        plan: placed.plan,
      }));
  }

  /** A thread died: its tasks start again on its replacement, or are released if they were stopping. */
  private onThreadDied(threadIndex: number, reason: string): void {
    for (const placed of [...this.tasks.values()]) {
      if (placed.thread !== threadIndex) continue;
      const lastSequence = placed.progress?.sequence ?? 0;
      placed.progress = undefined;
      if (placed.releasing || this.shuttingDown) {
        // Its consumer and state died with the thread: nothing more to flush.
        this.released(placed, lastSequence);
      } else {
        placed.unreportedFailure = `thread ${threadIndex} died: ${reason}`;
      }
    }
  }

  private onHostMessage(threadIndex: number, message: Exclude<FromTaskHost, { type: 'metrics' }>): void {
    switch (message.type) {
      case 'progress':
        for (const progress of message.tasks) {
          const placed = this.tasks.get(taskKey(progress.task));
          if (placed && placed.thread === threadIndex) placed.progress = progress;
        }
        break;
      case 'failed': {
        const placed = this.tasks.get(taskKey(message.task));
        // Counted by the thread (kappa_task_failures_total{reason}), merged into /metrics.
        if (placed) placed.unreportedFailure = message.error;
        this.logger.warn(
          { ...message.task, thread: threadIndex, error: message.error },
          'task failed; its thread restarts it with back-off',
        );
        break;
      }
      case 'stopped': {
        const placed = this.tasks.get(taskKey(message.task));
        if (placed && placed.releasing && placed.thread === threadIndex) this.released(placed, message.sequence);
        break;
      }
    }
  }

  // ── control protocol ─────────────────────────────────────────────────────

  private registration() {
    return {
      capacity: this.options.threads,
      carries: this.options.carries,
      ...(this.options.httpUrl ? { httpUrl: this.options.httpUrl } : {}),
    };
  }

  private register(): void {
    this.control.register(this.registration());
  }

  private async registerOnReconnect(): Promise<void> {
    for await (const status of this.options.nc.status()) {
      if (status.type === 'reconnect' && !this.shuttingDown) this.register();
    }
  }

  private onAssign({ task, epoch, from, plan }: MessageOf<'task.assign'>): void {
    const key = taskKey(task);
    if (!this.carried.has(jobVersionKey(task))) {
      if (!this.refusedLogged.has(key)) {
        this.refusedLogged.add(key);
        this.logger.error({ ...task, epoch }, 'assigned a job version this worker does not carry; ignoring it');
      }
      return;
    }
    const placed = this.tasks.get(key);
    switch (decideAssign(placed, epoch, this.accepting)) {
      case 'start':
        this.place(task, epoch, from, plan);
        break;
      case 'raise-epoch':
        this.logger.info(
          { ...task, epoch, runningEpoch: placed!.epoch, thread: placed!.thread },
          'task assigned again under a higher epoch; it keeps running and commits under the new one',
        );
        placed!.epoch = epoch;
        this.threads.post(placed!.thread, { type: 'epoch', task, epoch });
        break;
      case 'start-after-release':
        placed!.nextAssign = { epoch, from, plan };
        break;
      case 'ignore':
      case 'refuse':
        break;
    }
  }

  private onRevoke({ task, epoch }: MessageOf<'task.revoke'>): void {
    const key = taskKey(task);
    const placed = this.tasks.get(key);
    switch (decideRevoke(placed, epoch)) {
      case 'answer-released':
        this.control.released(task, epoch, this.releasedSequences.get(key) ?? 0);
        break;
      case 'release':
        this.release(placed!, epoch);
        break;
      case 'ignore':
        break;
      case 'ignore-stale':
        this.logger.info(
          { ...task, epoch, runningEpoch: placed!.epoch },
          'ignoring a revoke older than the running epoch',
        );
        break;
    }
  }

  private place(task: TaskId, epoch: number, from: StartPosition, plan: JobPlan | undefined): void {
    // Restarting threads only get work when every thread is restarting.
    const counts = this.threads.alive().map((alive) => (alive ? 0 : 1_000_000));
    for (const placed of this.tasks.values()) counts[placed.thread]! += 1;
    const thread = leastLoadedThread(counts);
    this.tasks.set(taskKey(task), placedTask(task, epoch, from, plan, thread));
    this.threads.post(thread, { type: 'start', task, epoch, from, plan });
    this.logger.info({ ...task, epoch, thread }, 'task assigned');
  }

  private release(placed: PlacedTask, epoch: number): void {
    placed.releasing = true;
    placed.releaseEpoch = Math.max(epoch, placed.epoch);
    this.threads.post(placed.thread, { type: 'stop', task: placed.task });
  }

  private released(placed: PlacedTask, sequence: number): void {
    const key = taskKey(placed.task);
    this.tasks.delete(key);
    this.releasedSequences.set(key, sequence);
    this.control.released(placed.task, placed.releaseEpoch, sequence);
    this.logger.info({ ...placed.task, epoch: placed.releaseEpoch, sequence }, 'task released');
    if (placed.nextAssign && this.accepting)
      this.place(placed.task, placed.nextAssign.epoch, placed.nextAssign.from, placed.nextAssign.plan);
    if (this.tasks.size === 0) this.onAllReleased?.();
  }

  private heartbeat(): void {
    const statuses = this.statuses();
    for (const placed of this.tasks.values()) placed.unreportedFailure = undefined;
    // The registration rides along, so a coordinator that missed `worker.register` admits us anyway.
    this.control.heartbeat(statuses, this.shuttingDown ? undefined : this.registration());
    this.heartbeats++;
    if (this.heartbeats % (this.options.registerEveryHeartbeats ?? 10) === 0 && !this.shuttingDown) this.register();
    this.metrics.tasks.reset();
    for (const status of statuses)
      this.metrics.tasks.inc({ job: status.job, version: status.version, state: status.state });
  }

  /** What a heartbeat reports for every task this worker holds. */
  statuses(): TaskStatus[] {
    return [...this.tasks.values()].map(placedTaskStatus);
  }

  /** /readyz: every assigned task restored and consuming. */
  isReady(): boolean {
    return this.notReadyReason() === undefined;
  }

  /** Why /readyz says not ready (a task restoring, releasing or failed, with its error), or undefined. */
  notReadyReason(): string | undefined {
    if (!this.accepting) return 'shutting down';
    return notReadyReason(
      this.statuses().map((status) => ({ task: taskKey(status), state: status.state, error: status.error })),
    );
  }

  /** /healthz beyond the main event loop: a task host thread silent too long (task-host-threads.ts). */
  notLiveReason(): string | undefined {
    return this.threads.notLiveReason(this.options.threadSilenceLimitMs ?? 60_000);
  }

  status(): unknown {
    return {
      workerId: this.options.workerId,
      threads: this.threads.alive().map((alive, index) => ({
        index,
        alive,
        tasks: [...this.tasks.values()].filter((t) => t.thread === index).length,
      })),
      tasks: this.statuses(),
    };
  }

  /**
   * Graceful shutdown: take no more assigns, stop every task after its current batch (final
   * flush), answer task.released for each, then worker.leave, then end the threads.
   */
  async stop(): Promise<void> {
    this.accepting = false;
    const allReleased = new Promise<void>((resolve) => {
      this.onAllReleased = resolve;
      if (this.tasks.size === 0) resolve();
    });
    for (const placed of this.tasks.values()) {
      if (!placed.releasing) this.release(placed, placed.epoch);
      placed.nextAssign = undefined;
    }
    const releaseTimeoutMs = this.options.releaseTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), releaseTimeoutMs)));
    if (await Promise.race([allReleased.then(() => false), timedOut])) {
      this.logger.error(
        { tasks: this.statuses(), releaseTimeoutMs },
        'tasks did not stop in time; leaving without releasing them',
      );
    }
    clearTimeout(timer);
    this.shuttingDown = true;
    clearInterval(this.heartbeatTimer);
    await this.control.leave();
    this.control.close();
    await this.threads.shutdown();
    this.logger.info({ workerId: this.options.workerId }, 'worker left');
  }
}
