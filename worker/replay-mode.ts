// Replay mode: a task this far behind the end of its partition reads batches REPLAY_BATCH_FACTOR
// times larger (fewer table writes: re-emissions of a window within a batch collapse to one) and
// checkpoints REPLAY_CHECKPOINT_FACTOR times less often; below REPLAY_EXIT_LAG it returns to
// low-latency settings.
const REPLAY_ENTER_LAG = 100_000;
const REPLAY_EXIT_LAG = 10_000;
export const REPLAY_BATCH_FACTOR = 4;
export const REPLAY_CHECKPOINT_FACTOR = 6;

/** Whether a task `lagMessages` behind its partition's end replays next, given whether it replays now. */
export function replayingAt(replaying: boolean, lagMessages: number): boolean {
  return replaying ? lagMessages > REPLAY_EXIT_LAG : lagMessages > REPLAY_ENTER_LAG;
}
