// The job API: what a developer writes, and its validation into a JobSpec the engine trusts.
// A job module's default export is a plain object; `defineJob` only adds types, so a `.mjs`
// file with no imports works the same.
import { z } from 'zod';
import { assertName, KappaError, SinkKind } from '../protocol/index.js';
import { parseDuration } from './duration.js';
import type { ActorContext, TimerInfo } from './actor-context.js';
import type { Duration, WindowKind } from './types.js';

export interface AggregateFunction<E = any, A = any, R = any> {
  /** A fresh accumulator. */
  init: () => A;
  /** Adds one event's value to an accumulator and returns the accumulator. */
  add: (accumulator: A, event: E) => A;
  /** Combines two accumulators; required for session windows, which merge (as in Flink). */
  merge?: (left: A, right: A) => A;
  /** The result to emit; the accumulator itself when absent. */
  result?: (accumulator: A) => R;
}

export interface ActorHandlers<E = any> {
  onEvent: (ctx: ActorContext, event: E) => void;
  onTimer?: (ctx: ActorContext, timer: TimerInfo) => void;
}

/** A serving table (NATS KV, PostgreSQL, Redis), the JetStream output subject, or nowhere. */
export type { SinkKind };

export interface JobDefinition<E = any> {
  name: string;
  version: string;
  source: { topic: string };
  /** The key of an event; the key it was published with when absent. */
  key?: (event: E) => string;
  /** Event time in ms since the epoch (a Date or ISO string is accepted too). */
  time: (event: E) => number | Date | string;
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
   * (KAPPA_POSTGRES_URL) or Redis (KAPPA_REDIS_URL), the JetStream output subject, or nowhere.
   */
  sink?: { kind: SinkKind };
  /** Times a throwing handler is retried before the event is dead-lettered (default 2). */
  handlerRetries?: number;
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

/** What every validated job has: durations in ms, defaults filled in. */
interface JobSpecBase {
  name: string;
  version: string;
  topic: string;
  key: ((event: any) => unknown) | undefined;
  time: (event: any) => unknown;
  maxOutOfOrdernessMs: number;
  idleTimeoutMs: number | undefined;
  /** undefined: the far-future guard is off. */
  maxFutureSkewMs: number | undefined;
  allowedLatenessMs: number;
  sink: SinkKind;
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

const definitionSchema = z.object({
  name: z.string(),
  version: z.string(),
  source: z.object({ topic: z.string() }),
  key: fn.optional(),
  time: fn,
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
  sink: z.object({ kind: SinkKind }).optional(),
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
  for (const [field, kind, value] of [
    ['name', 'job', job.name],
    ['version', 'version', job.version],
    ['source.topic', 'topic', job.source.topic],
  ] as const) {
    try {
      assertName(kind, value);
    } catch (error) {
      fail(field, (error as Error).message);
    }
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
    topic: job.source.topic,
    key: job.key,
    time: job.time,
    maxOutOfOrdernessMs: ms('watermark.maxOutOfOrderness', job.watermark.maxOutOfOrderness),
    idleTimeoutMs:
      job.watermark.idleTimeout === undefined ? undefined : ms('watermark.idleTimeout', job.watermark.idleTimeout),
    maxFutureSkewMs:
      job.watermark.maxFutureSkew === false
        ? undefined
        : ms('watermark.maxFutureSkew', job.watermark.maxFutureSkew, DEFAULT_MAX_FUTURE_SKEW_MS),
    allowedLatenessMs: ms('allowedLateness', job.allowedLateness, 0),
    sink: job.sink?.kind ?? 'kv',
    handlerRetries: job.handlerRetries ?? 2,
  };
  return window
    ? { ...base, kind: 'window', window, aggregate: job.aggregate as AggregateFunction }
    : { ...base, kind: 'actor', actor: job.actor as ActorHandlers };
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
