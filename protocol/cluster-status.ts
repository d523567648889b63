// The shape of the leader's answer to `status.request` (in `reply.ok.detail`) and of the
// coordinator's `/v1/status`: what `kappa status` prints. Built from the workers' heartbeats.
import type { StartPosition } from './messages.js';

export interface ClusterStatus {
  leader: { coordinatorId: string; fencingToken: number };
  workers: WorkerStatusView[];
  versions: JobVersionStatusView[];
  tasks: TaskStatusView[];
}

export interface WorkerStatusView {
  workerId: string;
  capacity: number;
  carries: { job: string; version: string; topic: string }[];
  httpUrl?: string;
  /** How many tasks the leader has assigned to it. */
  tasksAssigned: number;
  lastHeartbeatAgoMs: number;
}

export interface JobVersionStatusView {
  job: string;
  version: string;
  topic: string | null;
  partitions: number | null;
  from: StartPosition;
  state: 'running' | 'stopping' | 'retired' | 'waiting-for-capacity';
  tasksAssigned: number;
  /** Messages its tasks have still to read: Σ (partition end − processed sequence). */
  lagMessages: number;
  /** 0..1 through its topic (1 = caught up); null until known. */
  progress: number | null;
  /** Seconds until caught up at the recent rate; null while unknown. */
  etaSeconds: number | null;
  /** Its serving table's kind, when it writes one. */
  table: 'kv' | 'postgres' | 'redis' | null;
  /** True when the job's alias points at this version (apps read it). */
  served: boolean;
  /** Present while a `--cutover auto` replay waits to catch up. */
  autoCutover?: { maxLagMessages: number };
}

export interface TaskStatusView {
  job: string;
  version: string;
  partition: number;
  /** Null while no live worker carries the version. */
  worker: string | null;
  epoch: number;
  /** The holder's reported state; `assigning` until its heartbeat lists the task at this epoch. */
  state: string;
  sequence: number | null;
  lagMessages: number | null;
  watermark: number | null;
  /** While `failed`: the holder's last error (it retries the task with back-off). */
  error?: string;
}
