// Asking the leading coordinator for its view, as the cluster-level tests do.
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeMessage, encodeMessage, parseAdminReply, subjects, type ClusterStatus } from '../../protocol/index.js';

/** The leader's answer to `status.request` (what `kappa status --json` prints). */
export async function leaderStatus(nc: NatsConnection): Promise<ClusterStatus> {
  const reply = decodeMessage(
    (await nc.request(subjects.adminRequest('status'), encodeMessage({ type: 'status.request' }), { timeout: 3_000 }))
      .data,
  );
  if (reply.type !== 'reply.ok') throw new Error(`status failed: ${JSON.stringify(reply)}`);
  return parseAdminReply('status', reply.detail);
}
