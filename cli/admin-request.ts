// Admin requests (`kappa start/stop/status`): NATS request/reply to the leading coordinator.
// Followers stay silent, so "no answer within the timeout" means no leader.
import type { NatsConnection } from '@nats-io/transport-node';
import { AdminRejectedError, connectNats, decodeMessage, encodeMessage, NoLeaderError, subjects, type Message } from '../protocol/index.js';
import { natsSettingsFrom, type NatsFlags } from './nats-options.js';

export const ADMIN_TIMEOUT_MS = 3_000;

/** Sends one admin request and returns the leader's `reply.ok` detail; errors are typed. */
export async function adminRequest(flags: NatsFlags, verb: string, request: Message, timeoutMs = ADMIN_TIMEOUT_MS): Promise<unknown> {
  const nc: NatsConnection = await connectNats(natsSettingsFrom(flags), { timeout: ADMIN_TIMEOUT_MS, name: `kappa ${verb}` });
  try {
    let response;
    try {
      response = await nc.request(subjects.adminRequest(verb), encodeMessage(request), { timeout: timeoutMs });
    } catch {
      // Timeout and "no responders" both mean no coordinator is leading.
      throw new NoLeaderError(`no coordinator leader answered '${verb}' within ${timeoutMs / 1000} s (is 'kappa coordinator' running?)`);
    }
    const reply = decodeMessage(response.data);
    if (reply.type === 'reply.error') throw new AdminRejectedError(reply.code, `${verb} rejected (${reply.code}): ${reply.message}`);
    if (reply.type !== 'reply.ok') throw new AdminRejectedError('PROTOCOL_SCHEMA', `${verb}: expected a reply, found '${reply.type}'`);
    return reply.detail;
  } finally {
    await nc.close();
  }
}
