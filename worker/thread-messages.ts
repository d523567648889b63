// Messages between the pool's main thread and a task host thread, over the MessagePort each
// long-lived piscina task receives. Both ends are our own code in one process, so these are
// plain structured-clone objects, not the msgpack control protocol.
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { JobPlan, StartPosition, TaskId } from '../protocol/index.js';
import type { NatsSettings } from '../runtime/index.js';
import type { TaskSettings } from './task-settings.js';

/** What a task host needs to start; passed as the piscina task's argument. */
export interface TaskHostOptions {
  workerId: string;
  threadIndex: number;
  /** Job modules loaded in the thread by path (functions cannot be cloned across threads). */
  jobFiles: string[];
  nats: NatsSettings;
  /** What each task runs with, as the pool was given it. */
  tasks: TaskSettings;
  logLevel: string;
  /** How often the host posts task progress. */
  progressIntervalMs: number;
  /** How often the host posts its metrics snapshot. */
  metricsIntervalMs: number;
}

export type ToTaskHost =
  | { type: 'start'; task: TaskId; epoch: number; from: StartPosition; plan: JobPlan | undefined }
  /** The coordinator raised the epoch of a task this host runs (checkpoints will be fenced by it). */
  | { type: 'epoch'; task: TaskId; epoch: number }
  /** Stop after the current batch and report the final sequence. */
  | { type: 'stop'; task: TaskId }
  /** Every task is stopped: close the NATS connection and end the piscina task. */
  | { type: 'shutdown' };

export type HostedTaskState = 'restoring' | 'running' | 'failed';

export interface HostedTaskProgress {
  task: TaskId;
  state: HostedTaskState;
  sequence: number;
  lagMessages: number;
  /** null before the first event. */
  watermark: number | null;
  error?: string;
  /** While fenced: the epoch that owns the task's checkpoint (see TaskRunner.fencedBy). */
  fencedBy?: number;
  /** Where the task reads (TaskProgress.phase). */
  phase?: 'archive' | 'live';
}

export type FromTaskHost =
  | { type: 'progress'; tasks: HostedTaskProgress[] }
  /** The host's `kappa_*` metrics, as `registry.getMetricsAsJSON()` gives them. */
  | { type: 'metrics'; metrics: MetricObjectWithValues<MetricValue<string>>[] }
  | { type: 'failed'; task: TaskId; error: string }
  | { type: 'stopped'; task: TaskId; sequence: number };
