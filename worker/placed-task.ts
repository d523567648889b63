// A task assigned to this worker, as the pool's main thread tracks it, and what a heartbeat
// reports of it (its state, sequence, lag, watermark; a failure not yet reported; `fencedBy`).
import type { JobPlan, StartPosition, TaskId, TaskStatus } from '../protocol/index.js';
import type { HostedTaskProgress } from './thread-messages.js';

export interface PlacedTask {
  task: TaskId;
  epoch: number;
  from: StartPosition;
  /** The version's stages as the coordinator planned them; undefined from a coordinator before plans. */
  plan: JobPlan | undefined;
  thread: number;
  releasing: boolean;
  /** The epoch to answer task.released with. */
  releaseEpoch: number;
  /** Latest report of the thread running it; undefined until the first. */
  progress: HostedTaskProgress | undefined;
  /** A failure not yet sent in a heartbeat: a runner restarts within 0.5 s, faster than heartbeats. */
  unreportedFailure: string | undefined;
  /** An assign that arrived while the task was being released. */
  nextAssign: { epoch: number; from: StartPosition; plan: JobPlan | undefined } | undefined;
}

/** A task just placed on `thread`, not yet reported by it. */
export function placedTask(
  task: TaskId,
  epoch: number,
  from: StartPosition,
  plan: JobPlan | undefined,
  thread: number,
): PlacedTask {
  return {
    task,
    epoch,
    from,
    plan,
    thread,
    releasing: false,
    releaseEpoch: epoch,
    progress: undefined,
    unreportedFailure: undefined,
    nextAssign: undefined,
  };
}

/** What a heartbeat reports for a task this worker holds. */
export function placedTaskStatus(placed: PlacedTask): TaskStatus {
  const progress = placed.progress;
  const failure = placed.unreportedFailure ?? (progress?.state === 'failed' ? progress.error : undefined);
  const state = placed.releasing ? 'releasing' : failure !== undefined ? 'failed' : (progress?.state ?? 'restoring');
  return {
    ...placed.task,
    epoch: placed.epoch,
    state,
    sequence: progress?.sequence ?? 0,
    lagMessages: progress?.lagMessages ?? 0,
    watermark: progress?.watermark ?? null,
    ...(state === 'failed' && failure !== undefined ? { error: failure } : {}),
    ...(state === 'failed' && progress?.fencedBy !== undefined ? { fencedBy: progress.fencedBy } : {}),
    ...(progress?.phase === 'archive' ? { phase: 'archive' as const } : {}),
  };
}
