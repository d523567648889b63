// Riding through a NATS node loss. When a node of a JetStream cluster dies, the streams it led
// elect new leaders (a few seconds), and meanwhile their API requests and publishes time out or
// get "no responders"; a client that reconnects to another node is back a moment later. Those
// failures are retried with back-off for a bounded time (the producer's retryForMs); anything
// else (a topic that does not exist, a refused request) fails at once.
import { ConnectionError as NatsConnectError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';
import { ConnectionError } from '../protocol/index.js';

/** Default for how long a producer keeps retrying through a leader election or a lost node. */
export const DEFAULT_RETRY_FOR_MS = 60_000;

/** What a client is waiting for right now, for a progress line. */
export interface NatsWait {
  /** Why, e.g. "no leader for stream KAPPA_orders_3 (leader election?)". */
  reason: string;
  /** When the retrying stops (ms since the epoch). */
  retryUntilMs: number;
}

/**
 * NATS did not answer for the whole retry window: no server reachable, or a stream or the
 * JetStream meta group without a leader (a majority of its nodes down). A ConnectionError, so the
 * CLI exits with "NATS unreachable" (4).
 */
export class NatsUnavailableError extends ConnectionError {}

export interface RetryOptions {
  /** Retry for this long from the first try, then throw NatsUnavailableError. */
  retryForMs: number;
  /** Told when a retry starts waiting (with why and until when) and when the wait is over (undefined). */
  onWait?: (wait: NatsWait | undefined) => void;
}

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 2_000;

/** Back-off before retry number `retry` (0-based): 250 ms doubling up to 2 s. */
export function retryDelayMs(retry: number): number {
  return Math.min(FIRST_DELAY_MS * 2 ** Math.min(retry, 10), MAX_DELAY_MS);
}

/**
 * Runs `request` until it succeeds, retrying failures that a leader election or a lost node
 * explains (isTransientNatsError) for up to retryForMs; `what` names the request in the reason
 * and the final error ("reading topic orders from the registry").
 */
export async function retryThroughElections<T>(
  what: string,
  request: () => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const retryUntilMs = Date.now() + options.retryForMs;
  for (let retry = 0; ; retry++) {
    try {
      const result = await request();
      if (retry > 0) options.onWait?.(undefined);
      return result;
    } catch (error) {
      if (!isTransientNatsError(error)) {
        if (retry > 0) options.onWait?.(undefined);
        throw error;
      }
      const reason = `${what}: ${transientReason(error)}`;
      const remainingMs = retryUntilMs - Date.now();
      if (remainingMs <= 0) {
        options.onWait?.(undefined);
        throw new NatsUnavailableError(`${reason} (gave up after retrying for ${formatSeconds(options.retryForMs)})`, {
          cause: error,
        });
      }
      options.onWait?.({ reason, retryUntilMs });
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryDelayMs(retry), remainingMs)));
    }
  }
}

/** A failure a leader election or a lost node explains, which the same request may not meet again in a moment. */
export function isTransientNatsError(error: unknown): boolean {
  // A request nobody answered in time: the stream or meta leader is being elected, or the
  // connection is down and nats.js is reconnecting.
  if (error instanceof TimeoutError) return true;
  if (error instanceof RequestError) return error.isNoResponders() || error.cause instanceof TimeoutError;
  // nats.js reports a JetStream API request without responders as "jetstream is not enabled",
  // with the no-responders RequestError as its cause (the account's real "not enabled" answer,
  // err_code 10039, has a JetStreamApiError cause instead).
  if (isNoResponders(error)) return true;
  // 503: "JetStream system temporarily unavailable" and the like.
  if (error instanceof JetStreamApiError) return error.status === 503;
  // connectNats() when no server of the list accepts a connection, or one accepts it but does not
  // answer in time (stalled, overloaded): not an authorization failure.
  if (error instanceof ConnectionError)
    return error.cause instanceof NatsConnectError || error.cause instanceof TimeoutError;
  return false;
}

function isNoResponders(error: unknown): boolean {
  return error instanceof Error && error.cause instanceof RequestError && error.cause.isNoResponders();
}

function transientReason(error: unknown): string {
  if (isNoResponders(error) || (error instanceof RequestError && error.isNoResponders()))
    return 'JetStream did not respond (no responders)';
  if (error instanceof TimeoutError || error instanceof RequestError)
    return 'no answer in time (a leader election, or the connection is down)';
  return (error as Error).message;
}

/** "42 s", for messages and progress lines. */
export function formatSeconds(ms: number): string {
  return `${Math.max(0, Math.ceil(ms / 1000))} s`;
}
