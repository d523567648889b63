// The public surface: what a job module imports from 'kappa-runtime'. Everything else is
// internal. A job module may also import nothing and export a plain object.
export { defineJob } from './worker/job.js';
export type { JobDefinition, AggregateFunction, ActorHandlers, SinkKind } from './worker/job.js';
export type {
  ActorContext,
  EmitOptions,
  ValueState,
  MapState,
  TimerInfo,
  TimerDomain,
} from './worker/actor-context.js';
export type { Duration, Window, WindowKind, Output, LateRecord, DeadLetter, DeadLetterReason } from './worker/types.js';
export { tumblingWindow } from './worker/window/tumbling.js';
export { hoppingWindows } from './worker/window/hopping.js';
export { windowJoin } from './worker/joins/window-join.js';
export type { WindowJoinOptions, WindowJoinInfo } from './worker/joins/window-join.js';
export { intervalJoin } from './worker/joins/interval-join.js';
export type { IntervalJoinOptions, IntervalJoinInfo } from './worker/joins/interval-join.js';
export { partitionOf } from './protocol/partition.js';
export { TaskTestDriver } from './worker/task-test-driver.js';
export type { DriverInput, TaskTestDriverOptions } from './worker/task-test-driver.js';
export { latestRevisions } from './worker/latest-revisions.js';
export type { LatestRevisions, RevisionChange, RevisionOutcome } from './worker/latest-revisions.js';
export type { OutputEvent } from './worker/topic-sink.js';
