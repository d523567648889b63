// The JetStream streams every job shares besides its serving table: dead letters (`kappa.dlq.>`),
// late data (`kappa.late.>`) and the `stream` sink's outputs (`kappa.out.>`). They hold whole
// payloads and nothing consumes them away, so each is bounded by age and size with discard-old:
// a flood of bad events ages the oldest records out instead of filling the JetStream store and
// halting ingestion. What the limits discard is shown on the coordinator's /metrics
// (coordinator/job-stream-usage.ts).
import type { NatsConnection } from '@nats-io/transport-node';
import { DiscardPolicy, jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { streams } from '../protocol/index.js';
import { internalReplicas } from '../runtime/index.js';

/** How much of a stream is kept: the oldest messages go once either bound is passed; 0 is no bound. */
export interface StreamLimits {
  maxAgeMs: number;
  maxBytes: number;
}

export type JobStream = 'deadLetter' | 'lateData' | 'output';
export type JobStreamLimits = Record<JobStream, StreamLimits>;

const DAY_MS = 24 * 60 * 60 * 1000;
const GIB = 1024 ** 3;

/** Dead letters and late data are kept a week to be looked at; outputs a day, for apps to read. */
export const DEFAULT_JOB_STREAM_LIMITS: JobStreamLimits = {
  deadLetter: { maxAgeMs: 7 * DAY_MS, maxBytes: GIB },
  lateData: { maxAgeMs: 7 * DAY_MS, maxBytes: GIB },
  output: { maxAgeMs: DAY_MS, maxBytes: GIB },
};

const JOB_STREAMS: ReadonlyArray<{ kind: JobStream; name: string; subjects: string[] }> = [
  { kind: 'deadLetter', name: streams.deadLetter, subjects: ['kappa.dlq.>'] },
  { kind: 'lateData', name: streams.lateData, subjects: ['kappa.late.>'] },
  { kind: 'output', name: streams.output, subjects: ['kappa.out.>'] },
];

/**
 * How long the server remembers a message id. A re-emission after a restore repeats at most what
 * followed the last checkpoint, so this must outlast a checkpoint interval plus an outage. JetStream
 * wants it no longer than the stream's max age, so a shorter max age shortens it.
 */
const OUTPUT_DEDUP_WINDOW_MS = 15 * 60 * 1000;

const NANOS_PER_MS = 1_000_000;

/** The part of a job stream's configuration its limits decide. */
export function limitConfig(
  limits: StreamLimits,
): Pick<StreamConfig, 'max_age' | 'max_bytes' | 'discard' | 'duplicate_window'> {
  const dedupMs = limits.maxAgeMs > 0 ? Math.min(OUTPUT_DEDUP_WINDOW_MS, limits.maxAgeMs) : OUTPUT_DEDUP_WINDOW_MS;
  return {
    max_age: limits.maxAgeMs * NANOS_PER_MS,
    max_bytes: limits.maxBytes > 0 ? limits.maxBytes : -1,
    discard: DiscardPolicy.Old,
    duplicate_window: dedupMs * NANOS_PER_MS,
  };
}

export interface JobStreamChange {
  stream: string;
  change: 'created' | 'updated';
  limits: StreamLimits;
  /** The limits it had before an update. */
  previous?: StreamLimits;
}

/**
 * Creates the job streams that do not exist, with `limits`. Given `limits`, it also updates an
 * existing stream whose limits differ: the worker process does that once at start with its
 * settings. Without, existing streams are left as they are: each task's sinks call it only to be
 * sure the streams exist, and must not undo the limits the process applied.
 */
export async function ensureJobStreams(nc: NatsConnection, limits?: JobStreamLimits): Promise<JobStreamChange[]> {
  const jsm = await jetstreamManager(nc);
  const changes: JobStreamChange[] = [];
  for (const stream of JOB_STREAMS) {
    const wanted = (limits ?? DEFAULT_JOB_STREAM_LIMITS)[stream.kind];
    const config = limitConfig(wanted);
    let existing;
    try {
      existing = await jsm.streams.info(stream.name);
    } catch {
      try {
        await jsm.streams.add({
          name: stream.name,
          subjects: stream.subjects,
          ...config,
          num_replicas: internalReplicas(),
        });
        changes.push({ stream: stream.name, change: 'created', limits: wanted });
        continue;
      } catch (error) {
        // Another worker created it first: compare with what it created.
        if (!/already in use|exists/i.test((error as Error).message)) throw error;
        existing = await jsm.streams.info(stream.name);
      }
    }
    if (!limits) continue;
    const current = existing.config;
    if (
      current.max_age === config.max_age &&
      current.max_bytes === config.max_bytes &&
      current.discard === config.discard &&
      current.duplicate_window === config.duplicate_window
    )
      continue;
    await jsm.streams.update(stream.name, { ...current, ...config });
    changes.push({
      stream: stream.name,
      change: 'updated',
      limits: wanted,
      previous: { maxAgeMs: current.max_age / NANOS_PER_MS, maxBytes: Math.max(0, current.max_bytes) },
    });
  }
  return changes;
}
