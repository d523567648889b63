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
  state: 'running' | 'stopping' | 'waiting-for-capacity';
  tasksAssigned: number;
  /** Sum of the reported lag of its tasks. */
  lagMessages: number;
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
}
