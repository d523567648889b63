// The worker pool's T threads: a piscina pool in which each thread runs one long-lived task host
// (task-thread.ts) with a MessagePort to this main thread. A host that dies is replaced (after
// 1 s, doubling to 30 s while replacements keep dying young) and the tasks placed on its thread
// start again on the new one; a host silent too long makes the worker not live (/healthz).
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import type { PoolMetrics } from './thread-metrics.js';
import type { FromTaskHost, TaskHostOptions, ToTaskHost } from './thread-messages.js';

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

export interface TaskHostThreadsOptions {
  threads: number;
  /**
   * Each thread's young heap generation, in MB. A replaying thread allocates per event (decoded
   * values, outputs) and holds a batch across collections; with V8's default young generation
   * it spends up to half its time in scavenges that copy the open windows again and again.
   */
  youngGenerationMb?: number;
  /**
   * Each thread's old heap generation, in MB (V8's default, sized from the machine's memory, when
   * unset): a container's memory limit is the sum of its threads' heaps and RocksDB's memory, and
   * open windows spill when half of a thread's heap is live (worker/heap-pressure.ts).
   */
  heapMb?: number;
  /** What every host starts with (besides its thread index). */
  host: Pick<TaskHostOptions, 'workerId' | 'jobFiles' | 'nats' | 'tasks' | 'logLevel'>;
  logger: Logger;
  metrics: PoolMetrics;
  /** The pool is shutting down: a host that ends is not replaced. */
  shuttingDown(): boolean;
  /** What a host posts but its metrics (merged here, into PoolMetrics). */
  onMessage(threadIndex: number, message: Exclude<FromTaskHost, { type: 'metrics' }>): void;
  /** The start commands of the tasks placed on a thread, sent again to its new host. */
  startsFor(threadIndex: number): ToTaskHost[];
  /** A thread died (not on shutdown), before it is replaced: `reason` says why. */
  onDied(threadIndex: number, reason: string): void;
}

export class TaskHostThreads {
  private readonly piscina: Piscina;
  private readonly slots: ThreadSlot[] = [];
  private readonly hostRuns = new Set<Promise<unknown>>();
  private readonly logger: Logger;
  private readonly metrics: PoolMetrics;

  constructor(private readonly options: TaskHostThreadsOptions) {
    this.logger = options.logger;
    this.metrics = options.metrics;
    this.piscina = new Piscina({
      filename: THREAD_ENTRY,
      minThreads: options.threads,
      maxThreads: options.threads,
      // One long-lived task per thread; threads never idle out.
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      atomics: 'disabled',
      resourceLimits: {
        ...(options.youngGenerationMb === undefined ? {} : { maxYoungGenerationSizeMb: options.youngGenerationMb }),
        ...(options.heapMb === undefined ? {} : { maxOldGenerationSizeMb: options.heapMb }),
      },
    });
    // A dying thread rejects its task (handled per slot); anything else is logged, never thrown.
    this.piscina.on('error', (error: unknown) => this.logger.error({ err: error }, 'thread pool error'));
    for (let index = 0; index < options.threads; index++) {
      const slot: ThreadSlot = { index, port: undefined, startedAtMs: 0, restartDelayMs: 1000, lastHeardMs: 0 };
      this.slots.push(slot);
      this.startHost(slot);
    }
  }

  private startHost(slot: ThreadSlot): void {
    const { port1, port2 } = new MessageChannel();
    slot.port = port1;
    slot.startedAtMs = Date.now();
    slot.lastHeardMs = 0;
    port1.on('message', (message: FromTaskHost) => this.onHostMessage(slot.index, message));
    const hostOptions: TaskHostOptions & { port: MessagePort } = {
      ...this.options.host,
      threadIndex: slot.index,
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
    for (const message of this.options.startsFor(slot.index)) this.post(slot.index, message);
  }

  /** A host ends normally only on shutdown; otherwise its thread died and is replaced. */
  private onHostEnded(slot: ThreadSlot, port: MessagePort, error: unknown): void {
    port.close();
    if (slot.port === port) slot.port = undefined;
    this.metrics.threads.dec();
    if (this.options.shuttingDown() && error === undefined) return;
    this.metrics.threadRestarts.inc();
    this.metrics.retire(slot.index);
    const reason = error instanceof Error ? error.message : 'the task host ended unexpectedly';
    this.logger.error(
      { err: error, thread: slot.index },
      'task host thread died; replacing it and restarting its tasks',
    );
    this.options.onDied(slot.index, reason);
    if (this.options.shuttingDown()) return;
    // A thread that dies right after starting (a job module failing at load) is retried slower.
    if (Date.now() - slot.startedAtMs > 60_000) slot.restartDelayMs = 1000;
    const delayMs = slot.restartDelayMs;
    slot.restartDelayMs = Math.min(slot.restartDelayMs * 2, 30_000);
    setTimeout(() => {
      if (!this.options.shuttingDown()) this.startHost(slot);
    }, delayMs);
  }

  post(threadIndex: number, message: ToTaskHost): void {
    // A slot without a port is restarting; startHost re-sends its tasks.
    this.slots[threadIndex]?.port?.postMessage(message);
  }

  private onHostMessage(threadIndex: number, message: FromTaskHost): void {
    const slot = this.slots[threadIndex];
    if (slot) slot.lastHeardMs = Date.now();
    if (message.type === 'metrics') this.metrics.update(threadIndex, message.metrics);
    else this.options.onMessage(threadIndex, message);
  }

  /** Per thread, by index: whether a host runs on it (false while it is being replaced). */
  alive(): boolean[] {
    return this.slots.map((slot) => slot.port !== undefined);
  }

  /**
   * /healthz beyond the main event loop: a task host thread that reported before but has been
   * silent past `limitMs` is stuck (a handler in an endless loop, a thread starved): its tasks
   * neither progress nor stop, and only a restart frees them.
   */
  notLiveReason(limitMs: number): string | undefined {
    const now = Date.now();
    for (const slot of this.slots) {
      if (slot.port !== undefined && slot.lastHeardMs > 0 && now - slot.lastHeardMs > limitMs) {
        return `task host thread ${slot.index} silent for ${Math.round((now - slot.lastHeardMs) / 1000)} s (limit ${limitMs / 1000} s)`;
      }
    }
    return undefined;
  }

  /** Tells every host to end (their tasks already stopped), waits for them, and ends the threads. */
  async shutdown(): Promise<void> {
    for (const slot of this.slots) this.post(slot.index, { type: 'shutdown' });
    await Promise.allSettled([...this.hostRuns]);
    await this.piscina.destroy();
  }
}
