// Asking the leading coordinator for its view, and waiting for a condition on it, as the
// cluster-level tests do.
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeMessage, encodeMessage, subjects, type ClusterStatus } from '../../protocol/index.js';

/** The leader's answer to `status.request` (what `kappa status --json` prints). */
export async function leaderStatus(nc: NatsConnection): Promise<ClusterStatus> {
  const reply = decodeMessage((await nc.request(subjects.adminRequest('status'), encodeMessage({ type: 'status.request' }), { timeout: 3_000 })).data);
  if (reply.type !== 'reply.ok') throw new Error(`status failed: ${JSON.stringify(reply)}`);
  return reply.detail as ClusterStatus;
}

/**
 * Polls `probe` until it returns something other than undefined (errors count as "not yet"), and
 * returns it; on timeout throws naming `what`, the last error and `context()` (process logs).
 */
export async function pollUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, context: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what} (${String(last ?? '')})\n${context()}`);
}
