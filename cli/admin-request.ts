// Admin requests (`kappa start/stop/replay/cutover/retire/status`): NATS request/reply to the
// leading coordinator. Followers stay silent, so "no answer within the timeout" means no leader.
// The reply is checked against its verb's schema (protocol/messages.ts `adminReplies`), so a
// command reads typed fields and a malformed reply is one clear ProtocolError, not a crash later.
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AdminRejectedError,
  decodeMessage,
  encodeMessage,
  NoLeaderError,
  parseAdminReply,
  ProtocolError,
  subjects,
  type AdminReply,
  type AdminRequest,
  type AdminVerb,
} from '../protocol/index.js';
import { connectNats } from '../runtime/index.js';
import { natsSettingsFrom, type NatsFlags } from './nats-options.js';

export const ADMIN_TIMEOUT_MS = 3_000;

/** Sends one admin request and returns the leader's reply for that verb; errors are typed. */
export async function adminRequest<V extends AdminVerb>(
  flags: NatsFlags,
  verb: V,
  request: AdminRequest<V>,
  timeoutMs = ADMIN_TIMEOUT_MS,
): Promise<AdminReply<V>> {
  const nc: NatsConnection = await connectNats(natsSettingsFrom(flags), {
    timeout: ADMIN_TIMEOUT_MS,
    name: `kappa ${verb}`,
  });
  try {
    let response;
    try {
      response = await nc.request(subjects.adminRequest(verb), encodeMessage(request), { timeout: timeoutMs });
    } catch {
      // Timeout and "no responders" both mean no coordinator is leading.
      throw new NoLeaderError(
        `no coordinator leader answered '${verb}' within ${timeoutMs / 1000} s (is 'kappa coordinator' running?)`,
      );
    }
    return replyOf(verb, response.data);
  } finally {
    await nc.close();
  }
}

/** The leader's answer to `verb`: its typed detail, an AdminRejectedError, or a ProtocolError when malformed. */
export function replyOf<V extends AdminVerb>(verb: V, data: Uint8Array): AdminReply<V> {
  let reply;
  try {
    reply = decodeMessage(data);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    throw new ProtocolError(error.code, `the leader's reply to '${verb}' is malformed: ${error.message}`, {
      cause: error,
    });
  }
  if (reply.type === 'reply.error')
    throw new AdminRejectedError(reply.code, `${verb} rejected (${reply.code}): ${reply.message}`);
  if (reply.type !== 'reply.ok')
    throw new ProtocolError(
      'PROTOCOL_SCHEMA',
      `the leader's reply to '${verb}' is malformed: expected a reply, found '${reply.type}'`,
    );
  return parseAdminReply(verb, reply.detail);
}
