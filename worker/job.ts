// The job API: what a developer writes, and its validation into a JobSpec the engine trusts.
// A job module's default export is a plain object; `defineJob` only adds types, so a `.mjs`
// file with no imports works the same.
import { z } from 'zod';
import { assertName, KappaError, SinkKind, type JobDeclaration, type SourceKeying } from '../protocol/index.js';
import { parseDuration } from './duration.js';
import type { ActorContext, TimerInfo } from './actor-context.js';
import type { Duration, WindowKind } from './types.js';

export interface AggregateFunction<E = any, A = any, R = any> {
  /** A fresh accumulator. */
  init: () => A;
  /** Adds one event's value to an accumulator and returns the accumulator; `source` names its input (`sources`). */
  add: (accumulator: A, event: E, source: string) => A;
  /** Combines two accumulators; required for session windows, which merge (as in Flink). */
  merge?: (left: A, right: A) => A;
  /** The result to emit; the accumulator itself when absent. */
  result?: (accumulator: A) => R;
}

export interface ActorHandlers<E = any> {
  onEvent: (ctx: ActorContext, event: E) => void;
  onTimer?: (ctx: ActorContext, timer: TimerInfo) => void;
}

/** A serving table (NATS KV, PostgreSQL, Redis), the JetStream output subject, a topic, or nowhere. */
export type { SinkKind };

/** The key of an event: a field of its value, or a function of it. */
export type KeyDefinition<E = any> = string | ((event: E) => string);
/** Event time in ms since the epoch (a Date or ISO string is accepted too). */
export type TimeDefinition<E = any> = (event: E) => number | Date | string;

/** One input of a job over several topics; `key` and `time` default to the job's. */
export interface SourceDefinition<E = any> {
  topic: string;
  key?: KeyDefinition<E>;
  time?: TimeDefinition<E>;
}

export interface JobDefinition<E = any> {
  name: string;
  version: string;
  /** The one topic the job reads (its source is named after the topic). */
  source?: { topic: string };
  /**
   * Several topics, by source name (`ctx.source` in a handler): events of one key from all of them
   * reach the same actor, and the task's watermark is the minimum of its inputs'. Such a job always
   * reads through its repartition topic, one ordered log per partition that makes the merge replay
   * exactly (README "Keys and partitions").
   */
  sources?: Record<string, SourceDefinition<E>>;
  /**
   * The key of an event: a field name (`'user'`) or a function. Absent: the key it was published
   * with. A key other than the topic's (its recorded `--key` field) makes the runtime insert a
   * repartition stage (README "Keys and partitions").
   */
  key?: KeyDefinition<E>;
  /** Event time in ms since the epoch (a Date or ISO string is accepted too); each source may give its own. */
  time?: TimeDefinition<E>;
  /** Partitions of the keyed stage when the job is repartitioned (default: the most any source has). */
  partitions?: number;
  /**
   * maxOutOfOrderness: how far behind the newest event time an event may come and still count.
   * idleTimeout: advance an idle task's watermark by processing time (then results depend on it).
   * maxFutureSkew (default '1h', `false` to turn off): an event whose time is more than this after
   * the log received it is dead-lettered (`future-time`) instead of dragging the watermark ahead.
   */
  watermark: { maxOutOfOrderness: Duration; idleTimeout?: Duration; maxFutureSkew?: Duration | false };
  window?: { kind: WindowKind; size?: Duration; slide?: Duration; gap?: Duration; offset?: Duration };
  allowedLateness?: Duration;
  aggregate?: AggregateFunction<E>;
  actor?: ActorHandlers<E>;
  /**
   * Where outputs go: the version's serving table in NATS KV (default), PostgreSQL
   * (KAPPA_POSTGRES_URL) or Redis (KAPPA_REDIS_URL), the JetStream output subject, a topic that
   * other jobs read (`{ kind: 'topic', topic, key? }`, README "Chained jobs"), or nowhere.
   */
  sink?: { kind: Exclude<SinkKind, 'topic'> } | TopicSinkDefinition;
  /** Times a throwing handler is retried before the event is dead-lettered (default 2). */
  handlerRetries?: number;
}

/**
 * Outputs as events of a topic: key = `key` of the output (a field of the output's value, or a
 * function of the output; default the output's key), event time = the window's end − 1 or the
 * time of the event or timer that emitted it, value = the output (id, revision, kind, key, row,
 * window, value).
 */
export interface TopicSinkDefinition {
  kind: 'topic';
  topic: string;
  key?: string | ((output: any) => string);
}

/** Types a job definition; returns it unchanged. */
export function defineJob<E = any>(definition: JobDefinition<E>): JobDefinition<E> {
  return definition;
}

export interface WindowSpec {
  kind: WindowKind;
  sizeMs: number;
  slideMs: number;
  gapMs: number;
  offsetMs: number;
}

/** One validated input: the job's functions for it, and how it is keyed (what the plan decides on). */
export interface SourceSpec {
  /** The key of `sources`, or the topic's name for `source`. */
  name: string;
  topic: string;
  /** undefined: the key the event was published with. */
  key: ((event: any) => unknown) | undefined;
  keying: SourceKeying;
  time: (event: any) => unknown;
}

/** What every validated job has: durations in ms, defaults filled in. */
interface JobSpecBase {
  name: string;
  version: string;
  /** Inputs, in declaration order (a routed event names its source by this index). */
  sources: SourceSpec[];
  /** The first source's topic, key and time (a job with one source has only these). */
  topic: string;
  key: ((event: any) => unknown) | undefined;
  time: (event: any) => unknown;
  /** Requested partitions of a repartitioned keyed stage. */
  partitions: number | undefined;
  maxOutOfOrdernessMs: number;
  idleTimeoutMs: number | undefined;
  /** undefined: the far-future guard is off. */
  maxFutureSkewMs: number | undefined;
  allowedLatenessMs: number;
  sink: SinkKind;
  /** With `sink: 'topic'`: where outputs go and how they are keyed. */
  sinkTopic: { topic: string; key: (output: any) => unknown } | undefined;
  handlerRetries: number;
}

/** A windowed aggregation (`window` + `aggregate`). */
export interface WindowJobSpec extends JobSpecBase {
  kind: 'window';
  window: WindowSpec;
  aggregate: AggregateFunction;
}

/** An actor (`actor: { onEvent, onTimer? }`). */
export interface ActorJobSpec extends JobSpecBase {
  kind: 'actor';
  actor: ActorHandlers;
}

/** A validated job, tagged by what runs its events. */
export type JobSpec = WindowJobSpec | ActorJobSpec;

/** How far after the log received it an event's time may be (README "Bad input"). */
export const DEFAULT_MAX_FUTURE_SKEW_MS = 3_600_000;

export class JobDefinitionError extends KappaError {
  constructor(message: string) {
    super('JOB_INVALID', message);
  }
}

const fn = z.custom<(...args: any[]) => unknown>((value) => typeof value === 'function', 'expected a function');
const duration = z.union([z.number(), z.string()]);

const keyDefinition = z.union([z.string().min(1), fn]);

const definitionSchema = z.object({
  name: z.string(),
  version: z.string(),
  source: z.object({ topic: z.string() }).optional(),
  sources: z
    .record(z.string(), z.object({ topic: z.string(), key: keyDefinition.optional(), time: fn.optional() }))
    .optional(),
  key: keyDefinition.optional(),
  time: fn.optional(),
  partitions: z.number().int().positive().max(4096).optional(),
  watermark: z.object({
    maxOutOfOrderness: duration,
    idleTimeout: duration.optional(),
    maxFutureSkew: z.union([duration, z.literal(false)]).optional(),
  }),
  window: z
    .object({
      kind: z.enum(['tumbling', 'hopping', 'session']),
      size: duration.optional(),
      slide: duration.optional(),
      gap: duration.optional(),
      offset: duration.optional(),
    })
    .optional(),
  allowedLateness: duration.optional(),
  aggregate: z.object({ init: fn, add: fn, merge: fn.optional(), result: fn.optional() }).optional(),
  actor: z.object({ onEvent: fn, onTimer: fn.optional() }).optional(),
  sink: z
    .union([
      z.object({ kind: SinkKind.exclude(['topic']) }),
      z.object({ kind: z.literal('topic'), topic: z.string(), key: keyDefinition.optional() }),
    ])
    .optional(),
  handlerRetries: z.number().int().min(0).max(100).optional(),
});

/** Validates a job definition; throws JobDefinitionError naming the first bad field. */
export function validateJob(definition: unknown, origin = 'job definition'): JobSpec {
  const parsed = definitionSchema.safeParse(definition);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || '(root)';
    throw new JobDefinitionError(`${origin}: field '${field}': ${issue.message}`);
  }
  const job = parsed.data;
  const fail = (field: string, message: string): never => {
    throw new JobDefinitionError(`${origin}: field '${field}': ${message}`);
  };
  const ms = (field: string, value: Duration | undefined, fallback?: number, allowNegative = false): number => {
    if (value === undefined) return fallback ?? fail(field, 'is required');
    const result = parseDuration(value, allowNegative);
    return typeof result === 'number' ? result : fail(field, result);
  };
  const checkName = (field: string, kind: string, value: string) => {
    try {
      assertName(kind, value);
    } catch (error) {
      fail(field, (error as Error).message);
    }
  };
  checkName('name', 'job', job.name);
  checkName('version', 'version', job.version);
  if (job.source && job.sources) fail('sources', "give 'source' (one topic) or 'sources' (several), not both");
  const declared: Array<
    [string, { topic: string; key?: string | ((event: any) => unknown); time?: (event: any) => unknown }]
  > = job.sources
    ? Object.entries(job.sources)
    : job.source
      ? [[job.source.topic, job.source]]
      : fail('source', "is required: 'source: { topic }' or 'sources: { name: { topic } }'");
  if (declared.length === 0) fail('sources', 'needs at least one source');
  const sources: SourceSpec[] = declared.map(([sourceName, source]) => {
    const field = job.sources ? `sources.${sourceName}` : 'source';
    if (job.sources) checkName(field, 'source', sourceName);
    checkName(`${field}.topic`, 'topic', source.topic);
    if (sourceName.length > 58) fail(field, 'a source name has at most 58 characters');
    const key = source.key ?? job.key;
    const time = source.time ?? job.time ?? fail(job.sources ? `${field}.time` : 'time', 'is required');
    return { name: sourceName, topic: source.topic, key: keyFunction(key), keying: keyingOf(key), time };
  });
  let sinkTopic: JobSpecBase['sinkTopic'];
  const sink = job.sink;
  if (sink?.kind === 'topic') {
    checkName('sink.topic', 'topic', sink.topic);
    if (sources.some((source) => source.topic === sink.topic))
      fail('sink.topic', 'a job cannot read its own output topic');
    sinkTopic = { topic: sink.topic, key: outputKeyFunction(sink.key) };
  }

  let window: WindowSpec | undefined;
  if (job.window) {
    const kind = job.window.kind;
    // Flink allows negative offsets (e.g. '-8h' for a time zone).
    const offsetMs = ms('window.offset', job.window.offset, 0, true);
    if (kind === 'session') {
      const gapMs = ms('window.gap', job.window.gap);
      if (gapMs <= 0) fail('window.gap', 'must be greater than 0');
      if (job.aggregate && !job.aggregate.merge)
        fail('aggregate.merge', 'is required for session windows, which merge');
      window = { kind, sizeMs: 0, slideMs: 0, gapMs, offsetMs };
    } else {
      const sizeMs = ms('window.size', job.window.size);
      if (sizeMs <= 0) fail('window.size', 'must be greater than 0');
      const slideMs = kind === 'hopping' ? ms('window.slide', job.window.slide) : sizeMs;
      if (slideMs <= 0) fail('window.slide', 'must be greater than 0');
      window = { kind, sizeMs, slideMs, gapMs: 0, offsetMs };
    }
    if (!job.aggregate) fail('aggregate', 'is required with a window');
    if (job.actor) fail('actor', 'cannot be combined with a window; use one or the other');
  } else if (!job.actor) {
    fail('actor', 'a job needs a window with an aggregate, or an actor');
  } else if (job.aggregate) {
    fail('aggregate', 'needs a window');
  }

  const base: JobSpecBase = {
    name: job.name,
    version: job.version,
    sources,
    topic: sources[0]!.topic,
    key: sources[0]!.key,
    time: sources[0]!.time,
    partitions: job.partitions,
    maxOutOfOrdernessMs: ms('watermark.maxOutOfOrderness', job.watermark.maxOutOfOrderness),
    idleTimeoutMs:
      job.watermark.idleTimeout === undefined ? undefined : ms('watermark.idleTimeout', job.watermark.idleTimeout),
    maxFutureSkewMs:
      job.watermark.maxFutureSkew === false
        ? undefined
        : ms('watermark.maxFutureSkew', job.watermark.maxFutureSkew, DEFAULT_MAX_FUTURE_SKEW_MS),
    allowedLatenessMs: ms('allowedLateness', job.allowedLateness, 0),
    sink: job.sink?.kind ?? 'kv',
    sinkTopic,
    handlerRetries: job.handlerRetries ?? 2,
  };
  return window
    ? { ...base, kind: 'window', window, aggregate: job.aggregate as AggregateFunction }
    : { ...base, kind: 'actor', actor: job.actor as ActorHandlers };
}

function keyFunction(key: string | ((event: any) => unknown) | undefined): ((event: any) => unknown) | undefined {
  if (key === undefined || typeof key === 'function') return key;
  return (event: any) => (event === null || typeof event !== 'object' ? undefined : event[key]);
}

function keyingOf(key: string | ((event: any) => unknown) | undefined): SourceKeying {
  if (key === undefined) return { kind: 'event' };
  return typeof key === 'string' ? { kind: 'field', field: key } : { kind: 'function' };
}

/** A topic sink's key: a field of the output's value, a function of the output, or the output's key. */
function outputKeyFunction(key: string | ((output: any) => unknown) | undefined): (output: any) => unknown {
  if (key === undefined) return (output: { key: string }) => output.key;
  if (typeof key === 'function') return key;
  return (output: { value: unknown }) =>
    output.value !== null && typeof output.value === 'object'
      ? (output.value as Record<string, unknown>)[key]
      : undefined;
}

/** What a worker tells the coordinator about a job's inputs, so the leader can plan its stages. */
export function declarationOf(job: JobSpec): JobDeclaration {
  return {
    sources: job.sources.map((source) => ({ name: source.name, topic: source.topic, keying: source.keying })),
    ...(job.partitions === undefined ? {} : { partitions: job.partitions }),
  };
}

/** Loads a job module (its default export, or the module itself) and validates it. */
export async function loadJob(file: string): Promise<JobSpec> {
  const { pathToFileURL } = await import('node:url');
  const { resolve } = await import('node:path');
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(resolve(file)).href)) as Record<string, unknown>;
  } catch (error) {
    throw new JobDefinitionError(`cannot load job module ${file}: ${(error as Error).message}`);
  }
  return validateJob(module.default ?? module, file);
}
