// Why a worker is not ready (/readyz answers 503 with it), from its tasks' states: ready means
// every task restored and consuming. One rule for the pool and the standalone worker.

export interface TaskReadiness {
  /** `<job>/<version>/<partition>` */
  task: string;
  state: 'restoring' | 'running' | 'releasing' | 'failed';
  error?: string;
}

/** Undefined when every task runs; else the first few tasks that do not, with their errors. */
export function notReadyReason(tasks: Iterable<TaskReadiness>): string | undefined {
  const reasons: string[] = [];
  let count = 0;
  for (const { task, state, error } of tasks) {
    if (state === 'running') continue;
    count++;
    if (reasons.length < 3)
      reasons.push(
        state === 'failed' && error !== undefined
          ? `task ${task} failed (retrying with back-off): ${error}`
          : `task ${task} ${state}`,
      );
  }
  if (count === 0) return undefined;
  return reasons.join('; ') + (count > reasons.length ? `; and ${count - reasons.length} more` : '');
}
