// The worker process driven by a coordinator: a piscina pool of T threads, each running one
// long-lived task host (task-thread.ts). This main thread speaks the control protocol
// (control-client.ts), places each assigned task on the least-loaded thread, turns the hosts'
// progress into heartbeats, merges their metrics, and replaces a thread that dies.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import {
  jobVersionKey,
  taskKey,
  type MessageOf,
  type StartPosition,
  type TaskId,
  type TaskStatus,
} from '../protocol/index.js';
import { type NatsSettings } from '../runtime/index.js';
import { decideAssign, decideRevoke, leastLoadedThread } from './assignment-rules.js';
import { ControlClient, type Registration } from './control-client.js';
import { notReadyReason } from './readiness.js';
import { PoolMetrics } from './thread-metrics.js';
import type { TaskSettings } from './task-runner.js';
import type { FromTaskHost, HostedTaskProgress, TaskHostOptions, ToTaskHost } from './thread-messages.js';

export interface WorkerPoolOptions {
  nc: NatsConnection;
  /** Settings each thread uses for its own NATS connection. */
  nats: NatsSettings;
  workerId: string;
  threads: number;
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

/** A task assigned to this worker, as the main thread tracks it. */
interface PlacedTask {
  task: TaskId;
  epoch: number;
  from: StartPosition;
  thread: number;
  releasing: boolean;
  /** The epoch to answer task.released with. */
  releaseEpoch: number;
  /** Latest report of the thread running it; undefined until the first. */
  progress: HostedTaskProgress | undefined;
  /** A failure not yet sent in a heartbeat: a runner restarts within 0.5 s, faster than heartbeats. */
  unreportedFailure: string | undefined;
  /** An assign that arrived while the task was being released. */
  nextAssign: { epoch: number; from: StartPosition } | undefined;
}

/** One of the T threads: its port while a host runs on it. */
interface ThreadSlot {
  index: number;
  port: MessagePort | undefined;
  startedAtMs: number;
  restartDelayMs: number;
  /** When the host last posted anything (it posts progress every 250 ms); 0 before its first message. */
  lastHeardMs: number;
}

const THREAD_ENTRY = fileURLToPath(new URL('./task-thread.js', import.meta.url));

export class WorkerPool {
  readonly metrics = new PoolMetrics();
  private readonly piscina: Piscina;
  private readonly control: ControlClient;
  private readonly slots: ThreadSlot[] = [];
  private readonly hostRuns = new Set<Promise<unknown>>();
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
    this.piscina = new Piscina({
      filename: THREAD_ENTRY,
      minThreads: options.threads,
      maxThreads: options.threads,
      // One long-lived task per thread; threads never idle out.
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      atomics: 'disabled',
    });
    // A dying thread rejects its task (handled per slot); anything else is logged, never thrown.
    this.piscina.on('error', (error: unknown) => this.logger.error({ err: error }, 'thread pool error'));
    for (let index = 0; index < options.threads; index++) {
      const slot: ThreadSlot = { index, port: undefined, startedAtMs: 0, restartDelayMs: 1000, lastHeardMs: 0 };
      this.slots.push(slot);
      this.startHost(slot);
    }
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

  private startHost(slot: ThreadSlot): void {
    const { port1, port2 } = new MessageChannel();
    slot.port = port1;
    slot.startedAtMs = Date.now();
    slot.lastHeardMs = 0;
    port1.on('message', (message: FromTaskHost) => this.onHostMessage(slot.index, message));
    const hostOptions: TaskHostOptions & { port: MessagePort } = {
      workerId: this.options.workerId,
      threadIndex: slot.index,
      jobFiles: this.options.jobFiles,
      nats: this.options.nats,
      tasks: this.options.tasks,
      logLevel: this.options.logLevel,
      progressIntervalMs: 250,
      metricsIntervalMs: 1000,
      port: port2,
    };
    const run = this.piscina.run(hostOptions, { transferList: [port2] });
    this.hostRuns.add(run);
    this.metrics.threads.inc();
    run
      .then(
        () => this.onHostEnded(slot, port1, undefined),
        (error: unknown) => this.onHostEnded(slot, port1, error),
      )
      .finally(() => this.hostRuns.delete(run));
    // Tasks already placed on this slot (a replaced thread) start again on the new host.
    for (const placed of this.tasks.values()) {
      if (placed.thread === slot.index && !placed.releasing)
        this.post(slot.index, { type: 'start', task: placed.task, epoch: placed.epoch, from: placed.from });
    }
  }

  /** A host ends normally only on shutdown; otherwise its thread died and is replaced. */
  private onHostEnded(slot: ThreadSlot, port: MessagePort, error: unknown): void {
    port.close();
    if (slot.port === port) slot.port = undefined;
    this.metrics.threads.dec();
    if (this.shuttingDown && error === undefined) return;
    this.metrics.threadRestarts.inc();
    this.metrics.retire(slot.index);
    const reason = error instanceof Error ? error.message : 'the task host ended unexpectedly';
    this.logger.error(
      { err: error, thread: slot.index },
      'task host thread died; replacing it and restarting its tasks',
    );
    for (const placed of [...this.tasks.values()]) {
      if (placed.thread !== slot.index) continue;
      const lastSequence = placed.progress?.sequence ?? 0;
      placed.progress = undefined;
      if (placed.releasing || this.shuttingDown) {
        // Its consumer and state died with the thread: nothing more to flush.
        this.released(placed, lastSequence);
      } else {
        placed.unreportedFailure = `thread ${slot.index} died: ${reason}`;
      }
    }
    if (this.shuttingDown) return;
    // A thread that dies right after starting (a job module failing at load) is retried slower.
    if (Date.now() - slot.startedAtMs > 60_000) slot.restartDelayMs = 1000;
    const delayMs = slot.restartDelayMs;
    slot.restartDelayMs = Math.min(slot.restartDelayMs * 2, 30_000);
    setTimeout(() => {
      if (!this.shuttingDown) this.startHost(slot);
    }, delayMs);
  }

  private post(threadIndex: number, message: ToTaskHost): void {
    // A slot without a port is restarting; startHost re-sends its tasks.
    this.slots[threadIndex]?.port?.postMessage(message);
  }

  private onHostMessage(threadIndex: number, message: FromTaskHost): void {
    const slot = this.slots[threadIndex];
    if (slot) slot.lastHeardMs = Date.now();
    switch (message.type) {
      case 'progress':
        for (const progress of message.tasks) {
          const placed = this.tasks.get(taskKey(progress.task));
          if (placed && placed.thread === threadIndex) placed.progress = progress;
        }
        break;
      case 'metrics':
        this.metrics.update(threadIndex, message.metrics);
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

  private onAssign({ task, epoch, from }: MessageOf<'task.assign'>): void {
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
        this.place(task, epoch, from);
        break;
      case 'raise-epoch':
        placed!.epoch = epoch;
        this.post(placed!.thread, { type: 'epoch', task, epoch });
        break;
      case 'start-after-release':
        placed!.nextAssign = { epoch, from };
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

  private place(task: TaskId, epoch: number, from: StartPosition): void {
    // Restarting threads only get work when every thread is restarting.
    const counts = this.slots.map((slot) => (slot.port ? 0 : 1_000_000));
    for (const placed of this.tasks.values()) counts[placed.thread]! += 1;
    const thread = leastLoadedThread(counts);
    const placed: PlacedTask = {
      task,
      epoch,
      from,
      thread,
      releasing: false,
      releaseEpoch: epoch,
      progress: undefined,
      unreportedFailure: undefined,
      nextAssign: undefined,
    };
    this.tasks.set(taskKey(task), placed);
    this.post(thread, { type: 'start', task, epoch, from });
    this.logger.info({ ...task, epoch, thread }, 'task assigned');
  }

  private release(placed: PlacedTask, epoch: number): void {
    placed.releasing = true;
    placed.releaseEpoch = Math.max(epoch, placed.epoch);
    this.post(placed.thread, { type: 'stop', task: placed.task });
  }

  private released(placed: PlacedTask, sequence: number): void {
    const key = taskKey(placed.task);
    this.tasks.delete(key);
    this.releasedSequences.set(key, sequence);
    this.control.released(placed.task, placed.releaseEpoch, sequence);
    this.logger.info({ ...placed.task, epoch: placed.releaseEpoch, sequence }, 'task released');
    if (placed.nextAssign && this.accepting) this.place(placed.task, placed.nextAssign.epoch, placed.nextAssign.from);
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
    return [...this.tasks.values()].map((placed) => {
      const progress = placed.progress;
      const failure = placed.unreportedFailure ?? (progress?.state === 'failed' ? progress.error : undefined);
      const state = placed.releasing
        ? 'releasing'
        : failure !== undefined
          ? 'failed'
          : (progress?.state ?? 'restoring');
      return {
        ...placed.task,
        epoch: placed.epoch,
        state,
        sequence: progress?.sequence ?? 0,
        lagMessages: progress?.lagMessages ?? 0,
        watermark: progress?.watermark ?? null,
        ...(state === 'failed' && failure !== undefined ? { error: failure } : {}),
        ...(state === 'failed' && progress?.fencedBy !== undefined ? { fencedBy: progress.fencedBy } : {}),
      };
    });
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

  /**
   * /healthz beyond the main event loop: a task host thread that reported before but has been
   * silent past `threadSilenceLimitMs` is stuck (a handler in an endless loop, a thread starved):
   * its tasks neither progress nor stop, and only a restart frees them.
   */
  notLiveReason(): string | undefined {
    const limitMs = this.options.threadSilenceLimitMs ?? 60_000;
    const now = Date.now();
    for (const slot of this.slots) {
      if (slot.port !== undefined && slot.lastHeardMs > 0 && now - slot.lastHeardMs > limitMs) {
        return `task host thread ${slot.index} silent for ${Math.round((now - slot.lastHeardMs) / 1000)} s (limit ${limitMs / 1000} s)`;
      }
    }
    return undefined;
  }

  status(): unknown {
    return {
      workerId: this.options.workerId,
      threads: this.slots.map((slot) => ({
        index: slot.index,
        alive: slot.port !== undefined,
        tasks: [...this.tasks.values()].filter((t) => t.thread === slot.index).length,
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
    for (const slot of this.slots) this.post(slot.index, { type: 'shutdown' });
    await Promise.allSettled([...this.hostRuns]);
    await this.piscina.destroy();
    this.logger.info({ workerId: this.options.workerId }, 'worker left');
  }
}
