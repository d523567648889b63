// Control messages between coordinators and workers, and the admin requests of `kappa` with the
// leader's replies. Each is a msgpack map carrying the protocol version `v: [major, minor]` and a
// `type`; decode validates the shape with zod at the boundary so the code behind it can trust the
// values. An admin reply's `detail` is checked against its verb's schema (`parseAdminReply`).
import { Decoder, Encoder } from '@msgpack/msgpack';
import { z } from 'zod';
import { KAPPA_ERROR_CODES, ProtocolError } from './errors.js';
import { describe } from './event.js';
import { JobDeclaration, JobPlan } from './job-plan.js';
import { NAME_PATTERN } from './names.js';
import { PROTOCOL_MAJOR, PROTOCOL_MINOR } from './version.js';

/**
 * Topic, job, version and worker names: the pattern the CLI enforces (names.ts), so a name that
 * would make two jobs share a bucket, a subject or a cluster-state key never gets past decode.
 */
const name = z.string().regex(NAME_PATTERN, "expected 1–64 characters of letters, digits, '_' or '-'");

/**
 * A task: one partition of one stage of a job version. `stage` is absent for the keyed stage (the
 * one that runs the job's windows or actor) and names a repartition stage (`route-<source>`,
 * job-plan.ts) otherwise. Added in 1.2, optional.
 */
export const TaskId = z.object({
  job: name,
  version: name,
  partition: z.number().int().min(0),
  stage: name.optional(),
});
export type TaskId = z.infer<typeof TaskId>;

/** `${job}/${version}[/${stage}]/${partition}`: how coordinators and workers name a task in maps and KV keys. */
export type TaskKey = string;
/** `${job}/${version}`: a deployment of a job, the unit of code a worker carries. */
export type JobVersionKey = string;

export function taskKey(task: TaskId): TaskKey {
  return task.stage === undefined
    ? `${task.job}/${task.version}/${task.partition}`
    : `${task.job}/${task.version}/${task.stage}/${task.partition}`;
}

export function jobVersionKey(ref: Pick<TaskId, 'job' | 'version'>): JobVersionKey {
  return `${ref.job}/${ref.version}`;
}

/** Where a new job version starts reading: the earliest event, only new events, a sequence, or a time. */
export const StartPosition = z.union([
  z.object({ kind: z.literal('earliest') }),
  z.object({ kind: z.literal('latest') }),
  z.object({ kind: z.literal('sequence'), sequence: z.number().int().min(1) }),
  z.object({ kind: z.literal('time'), timeMs: z.number() }),
]);
export type StartPosition = z.infer<typeof StartPosition>;

export const JobVersionRef = z.object({ job: name, version: name });
export type JobVersionRef = z.infer<typeof JobVersionRef>;

export const TaskState = z.enum(['restoring', 'running', 'releasing', 'failed']);

export const TaskStatus = TaskId.extend({
  epoch: z.number().int().min(0),
  state: TaskState,
  /** Last stream sequence processed. */
  sequence: z.number().int().min(0),
  lagMessages: z.number().int().min(0),
  /** Watermark in ms since the epoch; null before the first event. */
  watermark: z.number().nullable(),
  error: z.string().optional(),
  /**
   * Set while the task is fenced: its claim or commit met a checkpoint owned under this epoch (a
   * higher one, or the same under another worker). The coordinator reassigns it above. Added in 1.1, optional.
   */
  fencedBy: z.number().int().min(0).optional(),
  /** `archive` while the task reads its partition's archived segments (hybrid replay); added in 1.4, optional (absent: live). */
  phase: z.enum(['archive', 'live']).optional(),
});
export type TaskStatus = z.infer<typeof TaskStatus>;

/** Where a job version's outputs go; the first three are serving tables (tables/). */
/** Where a job version's outputs go (the one list of sink kinds; tables/ and the job API use it). */
export const SinkKind = z.enum(['kv', 'postgres', 'redis', 'stream', 'topic', 'none']);
export type SinkKind = z.infer<typeof SinkKind>;
export const ServingTableKind = SinkKind.extract(['kv', 'postgres', 'redis']);
export type ServingTableKind = z.infer<typeof ServingTableKind>;

/**
 * A job version a worker carries: its (first) topic, (added in 1.1, optional) its sink kind and
 * (added in 1.2, optional) how it reads its topics, from which the coordinator plans its stages,
 * and the topic a `topic` sink writes (no two versions of a job may write one: coordinator/sink-topics.ts).
 */
export const CarriedVersion = JobVersionRef.extend({
  topic: name,
  sink: SinkKind.optional(),
  declaration: JobDeclaration.optional(),
  sinkTopic: name.optional(),
});
export type CarriedVersion = z.infer<typeof CarriedVersion>;

/**
 * How many rows a new version may change before a cutover to it is refused (added in 1.3): rows
 * that differ from the served version's (changed, or in one version only), as a count or as a
 * percentage of the rows compared (`--max-changed N|P%`).
 */
export const ChangeBound = z.union([
  z.object({ rows: z.number().int().min(0) }),
  z.object({ percent: z.number().min(0).max(100) }),
]);
export type ChangeBound = z.infer<typeof ChangeBound>;

export const AutoCutover = z.object({
  maxLagMessages: z.number().int().min(0),
  /** Added in 1.3: hold the flip while the diff against the served version exceeds this. */
  maxChanged: ChangeBound.optional(),
});
export type AutoCutover = z.infer<typeof AutoCutover>;

/** A version's diff against the version the alias served when it was computed (tables/diff.ts). */
export const VersionDiffSummary = z.object({
  from: name,
  compared: z.number().int().min(0),
  same: z.number().int().min(0),
  changed: z.number().int().min(0),
  onlyInFrom: z.number().int().min(0),
  onlyInTo: z.number().int().min(0),
  /** Windows ending at or before this (ms) were compared; null: none yet; absent: every row. */
  finalThroughMs: z.number().nullable().optional(),
  /** When it was computed (ISO time). */
  at: z.string(),
  /** Whether it is within the version's `maxChanged`. */
  withinBound: z.boolean(),
});
export type VersionDiffSummary = z.infer<typeof VersionDiffSummary>;

const messageSchemas = {
  'worker.register': z.object({
    workerId: name,
    /** Threads, i.e. how many tasks the worker runs at full speed at once. */
    capacity: z.number().int().min(1),
    /** The job versions whose code this worker has, with the topic each reads. */
    carries: z.array(CarriedVersion),
    httpUrl: z.string().optional(),
  }),
  'worker.heartbeat': z.object({
    workerId: name,
    tasks: z.array(TaskStatus),
    // Optional copy of the registration: lets a coordinator that missed `worker.register` (it
    // started later, or none was up) admit the worker without a round trip. Added in 1.0, optional.
    capacity: z.number().int().min(1).optional(),
    carries: z.array(CarriedVersion).optional(),
    httpUrl: z.string().optional(),
  }),
  'worker.leave': z.object({ workerId: name }),
  /** `plan` (added in 1.2, optional): the version's stages; absent means the job reads its one topic directly. */
  'task.assign': z.object({
    task: TaskId,
    epoch: z.number().int().min(1),
    from: StartPosition,
    plan: JobPlan.optional(),
  }),
  'task.revoke': z.object({ task: TaskId, epoch: z.number().int().min(1) }),
  'task.released': z.object({
    workerId: name,
    task: TaskId,
    epoch: z.number().int().min(1),
    sequence: z.number().int().min(0),
  }),
  /** `topic` is optional: without it the coordinator learns the topic from a worker carrying the version. */
  'job.start': z.object({
    job: name,
    version: name,
    from: StartPosition,
    topic: name.optional(),
    /**
     * Replay with `--cutover auto`: flip the alias to this version once its lag is within the bound
     * (and, with `maxChanged`, added in 1.3, once its diff against the served version is too).
     */
    autoCutover: AutoCutover.optional(),
  }),
  /** Flip the job's alias to this version if its lag is within the bound, else refuse. */
  'job.cutover': z.object({ job: name, version: name, maxLagMessages: z.number().int().min(0) }),
  /** Stop a version that apps no longer read, and drop its table and checkpoints after the grace period. */
  'job.retire': z.object({ job: name, version: name, graceMs: z.number().int().min(0) }),
  'job.stop': z.object({ job: name, version: name }),
  /** With `job`, the reply lists only that job's versions and tasks (every worker still). */
  'status.request': z.object({ job: name.optional() }),
  /** `detail` is the verb's reply (`adminReplies`), checked by `parseAdminReply`. */
  'reply.ok': z.object({ detail: z.unknown().optional() }),
  'reply.error': z.object({ code: z.enum(KAPPA_ERROR_CODES), message: z.string() }),
} as const;

type Schemas = typeof messageSchemas;
export type MessageType = keyof Schemas;
export type Message = { [T in MessageType]: { type: T } & z.infer<Schemas[T]> }[MessageType];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

export function encodeMessage(message: Message): Uint8Array {
  return encoder.encode({ ...message, v: [PROTOCOL_MAJOR, PROTOCOL_MINOR] });
}

/** Decodes and validates a control message; any fault is a ProtocolError saying what was found. */
export function decodeMessage(bytes: Uint8Array): Message {
  let decoded: unknown;
  try {
    decoded = decoder.decode(bytes);
  } catch (error) {
    throw new ProtocolError('PROTOCOL_GARBAGE', `control message is not msgpack: ${(error as Error).message}`);
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) {
    throw new ProtocolError('PROTOCOL_GARBAGE', `expected a control message map, found ${describe(decoded)}`);
  }
  const { v, type, ...body } = decoded as Record<string, unknown>;
  if (!Array.isArray(v) || typeof v[0] !== 'number') {
    throw new ProtocolError('PROTOCOL_SCHEMA', `control message has no protocol version 'v', found ${describe(v)}`);
  }
  if (v[0] !== PROTOCOL_MAJOR) {
    throw new ProtocolError(
      'PROTOCOL_VERSION',
      `control message has protocol version ${v.join('.')}, this process speaks ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}`,
    );
  }
  if (typeof type !== 'string' || !(type in messageSchemas)) {
    throw new ProtocolError('PROTOCOL_SCHEMA', `unknown control message type ${JSON.stringify(type)}`);
  }
  const parsed = messageSchemas[type as MessageType].safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProtocolError(
      'PROTOCOL_SCHEMA',
      `control message '${type}' field '${issue?.path.join('.') || '(root)'}': ${issue?.message ?? 'invalid'}`,
    );
  }
  return { type, ...(parsed.data as object) } as Message;
}

// ---- admin replies -------------------------------------------------------------------------
// What the leader answers in `reply.ok.detail`, one schema per admin verb. The status views are
// also the coordinator's `/v1/status` and what `kappa status --json` prints; the leader builds
// them from the workers' heartbeats (coordinator/status-view.ts).

export const WorkerStatusView = z.object({
  workerId: name,
  capacity: z.number().int().min(1),
  carries: z.array(CarriedVersion),
  httpUrl: z.string().optional(),
  /** How many tasks the leader has assigned to it. */
  tasksAssigned: z.number().int().min(0),
  lastHeartbeatAgoMs: z.number(),
});
export type WorkerStatusView = z.infer<typeof WorkerStatusView>;

/** One stage of a job version's plan in the status (added in 1.2): the topic its tasks read, and their lag. */
export const StageStatusView = z.object({
  /** Absent for the keyed stage; `route-<source>` for a route stage (job-plan.ts). */
  stage: name.optional(),
  topic: name,
  partitions: z.number().int().min(1),
  /** Messages its tasks have still to read in their own topic, like the version's `lagMessages`. */
  lagMessages: z.number().int().min(0),
});
export type StageStatusView = z.infer<typeof StageStatusView>;

export const JobVersionStatusView = z.object({
  job: name,
  version: name,
  topic: name.nullable(),
  partitions: z.number().int().min(1).nullable(),
  from: StartPosition,
  /** `waiting-for-capacity` when no live worker carries it (or its topic is unknown). */
  state: z.enum(['running', 'stopping', 'retired', 'waiting-for-capacity']),
  tasksAssigned: z.number().int().min(0),
  /** Messages its tasks have still to read: Σ (partition end − processed sequence). */
  lagMessages: z.number().int().min(0),
  /** 0..1 through its topic (1 = caught up); null until known. */
  progress: z.number().nullable(),
  /** Seconds until caught up at the recent rate; null while unknown. */
  etaSeconds: z.number().nullable(),
  /** Its serving table's kind, when it writes one. */
  table: ServingTableKind.nullable(),
  /** True when the job's alias points at this version (apps read it). */
  served: z.boolean(),
  /** Present while a `--cutover auto` replay waits to catch up. */
  autoCutover: AutoCutover.optional(),
  /** The leader's latest diff of this version against the served one (added in 1.3): a `--max-changed` replay. */
  diff: VersionDiffSummary.optional(),
  /** Tasks reading their partition's archive (hybrid replay) rather than the live stream (added in 1.4, optional). */
  tasksInArchive: z.number().int().min(0).optional(),
  /** Its plan's stages, route stages first (added in 1.2, optional): absent until it is planned. */
  stages: z.array(StageStatusView).optional(),
});
export type JobVersionStatusView = z.infer<typeof JobVersionStatusView>;

/** A task as the leader sees it: its holder's report, or why there is none yet. */
export const TaskViewState = z.enum(['waiting', 'assigning', ...TaskState.options]);
export type TaskViewState = z.infer<typeof TaskViewState>;

export const TaskStatusView = TaskId.extend({
  /** Null while no live worker carries the version. */
  worker: name.nullable(),
  epoch: z.number().int().min(0),
  /** The holder's reported state; `assigning` until its heartbeat lists the task at this epoch. */
  state: TaskViewState,
  sequence: z.number().int().min(0).nullable(),
  lagMessages: z.number().int().min(0).nullable(),
  watermark: z.number().nullable(),
  /** Where its holder reads: `archive` during hybrid replay's archive phase (added in 1.4, optional). */
  phase: z.enum(['archive', 'live']).optional(),
  /** While `failed`: the holder's last error (it retries the task with back-off). */
  error: z.string().optional(),
});
export type TaskStatusView = z.infer<typeof TaskStatusView>;

export const ClusterStatus = z.object({
  leader: z.object({ coordinatorId: name, fencingToken: z.number().int().min(1) }),
  workers: z.array(WorkerStatusView),
  versions: z.array(JobVersionStatusView),
  tasks: z.array(TaskStatusView),
});
export type ClusterStatus = z.infer<typeof ClusterStatus>;

/** The reply to each admin verb (`subjects.adminRequest(verb)`). */
export const adminReplies = {
  /** `kappa start` and `kappa replay`. */
  start: JobVersionStatusView.extend({ alreadyRunning: z.boolean().optional() }),
  /** `releasing`: how many of its tasks are still held and being released. */
  stop: JobVersionStatusView.extend({ releasing: z.number().int().min(0) }),
  /** The job's alias after the flip. */
  cutover: z.object({ version: name, table: ServingTableKind, since: z.string(), previous: name.optional() }),
  /** `dropAt`: when its table and checkpoints are dropped (ISO time). */
  retire: JobVersionStatusView.extend({ dropAt: z.string() }),
  status: ClusterStatus,
} as const;

export type AdminVerb = keyof typeof adminReplies;
export type AdminReply<V extends AdminVerb> = z.infer<(typeof adminReplies)[V]>;

/** The request each verb carries (`kappa replay` sends a `job.start` too). */
interface AdminRequestTypes extends Record<AdminVerb, MessageType> {
  start: 'job.start';
  stop: 'job.stop';
  cutover: 'job.cutover';
  retire: 'job.retire';
  status: 'status.request';
}

export type AdminRequest<V extends AdminVerb = AdminVerb> = MessageOf<AdminRequestTypes[V]>;

/** Checks a `reply.ok` detail against its verb's schema; a mismatch is a ProtocolError naming the field. */
export function parseAdminReply<V extends AdminVerb>(verb: V, detail: unknown): AdminReply<V> {
  const parsed = adminReplies[verb].safeParse(detail);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProtocolError(
      'PROTOCOL_SCHEMA',
      `the leader's reply to '${verb}' is malformed: field '${issue?.path.join('.') || '(root)'}': ${issue?.message ?? 'invalid'} (is the coordinator another version of kappa?)`,
    );
  }
  return parsed.data as AdminReply<V>;
}
