// How a worker answers task.assign and task.revoke, as pure functions. The coordinator
// reconciles on every heartbeat and resends whatever differs, so every answer is idempotent.

/** What the worker holds of a task: its epoch, and whether it is being released. */
export interface HeldTask {
  epoch: number;
  releasing: boolean;
}

export type AssignDecision =
  /** Not held: place it on a thread and start it. */
  | 'start'
  /** Held with this epoch or a newer one: a resend. */
  | 'ignore'
  /** Held with an older epoch and running: keep running under the new epoch. */
  | 'raise-epoch'
  /** Being released: start it again once the release is done. */
  | 'start-after-release'
  /** Shutting down: take nothing new (the coordinator moves it after worker.leave). */
  | 'refuse';

export function decideAssign(held: HeldTask | undefined, epoch: number, acceptingAssignments: boolean): AssignDecision {
  if (!acceptingAssignments) return 'refuse';
  if (!held) return 'start';
  if (held.releasing) return epoch > held.epoch ? 'start-after-release' : 'ignore';
  return epoch > held.epoch ? 'raise-epoch' : 'ignore';
}

export type RevokeDecision =
  /** Stop it after its current batch, then answer task.released. */
  | 'release'
  /** Not held: answer task.released at once (the coordinator may have missed an earlier answer). */
  | 'answer-released'
  /** Already releasing: the answer comes when it is done. */
  | 'ignore'
  /** Older than the epoch the task runs under: a revoke from before a re-assignment. */
  | 'ignore-stale';

export function decideRevoke(held: HeldTask | undefined, epoch: number): RevokeDecision {
  if (!held) return 'answer-released';
  if (epoch < held.epoch) return 'ignore-stale';
  return held.releasing ? 'ignore' : 'release';
}

/** Index of the thread with the fewest tasks (the lowest index on a tie); -1 when there is none. */
export function leastLoadedThread(taskCounts: readonly number[]): number {
  let best = -1;
  for (let index = 0; index < taskCounts.length; index++) {
    if (best === -1 || taskCounts[index]! < taskCounts[best]!) best = index;
  }
  return best;
}
