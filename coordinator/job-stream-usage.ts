// How full the shared dead-letter, late-data and output streams are, and how much their limits
// have thrown away (worker/job-streams.ts bounds them by age and size, discarding the oldest). Read
// from JetStream when /metrics is scraped, one stream-info request per stream, shared by every
// gauge of the scrape.
//
// Discarded = last sequence − messages held: every message the stream ever stored and no longer
// holds. Kappa never deletes from these streams and nothing acks them away, so that is what the age
// and size limits removed (or an operator's purge or delete). It is exact, survives coordinator
// restarts, and restarts from 0 only if the stream itself is deleted and created again.
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { streams } from '../protocol/index.js';

const JOB_STREAMS = [streams.deadLetter, streams.lateData, streams.output];
/** One read serves a whole scrape (every gauge asks for it at once). */
const FRESH_FOR_MS = 500;
/** A scrape must not hang on an unreachable JetStream. */
const REQUEST_TIMEOUT_MS = 2_000;

export interface JobStreamState {
  stream: string;
  messages: number;
  bytes: number;
  firstSequence: number;
  lastSequence: number;
  /** Messages stored once and no longer held: what the limits discarded. */
  discardedMessages: number;
  /** The stream's size bound (0: none). */
  maxBytes: number;
  /** The stream's age bound in seconds (0: none). */
  maxAgeSeconds: number;
}

export class JobStreamUsage {
  private jsm: Promise<JetStreamManager> | undefined;
  private last: { atMs: number; states: Promise<JobStreamState[] | undefined> } | undefined;
  private failureLogged = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
  ) {}

  /** The state of each job stream that exists; undefined when JetStream cannot be read. */
  read(): Promise<JobStreamState[] | undefined> {
    const now = Date.now();
    if (!this.last || now - this.last.atMs > FRESH_FOR_MS) this.last = { atMs: now, states: this.readNow() };
    return this.last.states;
  }

  private async readNow(): Promise<JobStreamState[] | undefined> {
    try {
      this.jsm ??= jetstreamManager(this.nc, { timeout: REQUEST_TIMEOUT_MS });
      const jsm = await this.jsm;
      const states: JobStreamState[] = [];
      for (const name of JOB_STREAMS) {
        let info;
        try {
          info = await jsm.streams.info(name);
        } catch (error) {
          // Created by the first worker that starts; until then there is nothing to show.
          if (/not found/i.test((error as Error).message)) continue;
          throw error;
        }
        const { state, config } = info;
        states.push({
          stream: name,
          messages: state.messages,
          bytes: state.bytes,
          firstSequence: state.first_seq,
          lastSequence: state.last_seq,
          discardedMessages: Math.max(0, state.last_seq - state.messages),
          maxBytes: Math.max(0, config.max_bytes),
          maxAgeSeconds: config.max_age / 1e9,
        });
      }
      this.failureLogged = false;
      return states;
    } catch (error) {
      // Say so once per outage rather than on every scrape.
      if (!this.failureLogged)
        this.logger.warn(
          { err: error },
          'cannot read the job streams; their gauges are left out until JetStream answers',
        );
      this.failureLogged = true;
      this.jsm = undefined;
      return undefined;
    }
  }
}
