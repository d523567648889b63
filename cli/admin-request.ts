// Admin requests (`kappa start/stop/replay/cutover/retire/status`): NATS request/reply to the
// leading coordinator. Followers stay silent, so "no answer within the timeout" means no leader.
// A coordinator that was just started (or is taking over from a dead leader) has none yet, so a
// request that meets no leader is sent again with back-off for `--leader-timeout` before it fails.
// The reply is checked against its verb's schema (protocol/messages.ts `adminReplies`), so a
// command reads typed fields and a malformed reply is one clear ProtocolError, not a crash later.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
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
import { formatSeconds, isTransientNatsError, retryDelayMs } from '../client/index.js';
import { natsConnection, type NatsFlags } from './nats-options.js';
import { principalHeadersOf } from './principal.js';
import { duration, formatDurationMs } from './setting-values.js';
import { defineSettings } from './settings.js';

/** How long one request waits for the leader's answer (and the connection for the server). */
export const ADMIN_TIMEOUT_MS = 3_000;

/** The settings every admin command takes: the NATS connection and how long to wait for a leader. */
export const adminSettings = defineSettings({
  leaderTimeout: {
    flag: '--leader-timeout <duration>',
    env: 'KAPPA_LEADER_TIMEOUT',
    schema: duration.default(15_000),
    help: 'keep asking this long while no coordinator leads (one just started is still electing one); 0 asks once',
  },
  nats: natsConnection,
});

export function addAdminOptions(command: Command): Command {
  return adminSettings.addOptions(command);
}

/**
 * Sends one admin request and returns the leader's reply for that verb; errors are typed. While
 * no leader answers it asks again (each request waits ADMIN_TIMEOUT_MS) until `--leader-timeout`
 * has passed, then throws NoLeaderError.
 */
export async function adminRequest<V extends AdminVerb>(
  flags: NatsFlags,
  verb: V,
  request: AdminRequest<V>,
): Promise<AdminReply<V>> {
  const settings = adminSettings.load(flags);
  const nc = await connectNats(settings.nats, { timeout: ADMIN_TIMEOUT_MS, name: `kappa ${verb}` });
  // Who is asking, for the coordinator's audit line (the server's permissions decide whether it may).
  const principal = principalHeadersOf(settings.nats);
  const askedAtMs = Date.now();
  const giveUpAtMs = askedAtMs + settings.leaderTimeout;
  try {
    for (let retry = 0; ; retry++) {
      const startedAtMs = Date.now();
      try {
        const response = await nc.request(subjects.adminRequest(verb), encodeMessage(request), {
          timeout: ADMIN_TIMEOUT_MS,
          headers: principal,
        });
        return replyOf(verb, response.data);
      } catch (error) {
        if (!isNoLeader(error)) throw error;
        const remainingMs = giveUpAtMs - Date.now();
        if (remainingMs <= 0) {
          throw new NoLeaderError(
            `no coordinator leader answered '${verb}' in ${formatSeconds(Date.now() - askedAtMs)} ` +
              `(--leader-timeout ${formatDurationMs(settings.leaderTimeout)}; is 'kappa coordinator' running?)`,
          );
        }
        // "No responders" comes back at once (no coordinator subscribed yet): wait before asking
        // again. A request that timed out has waited already.
        const waitedMs = Date.now() - startedAtMs;
        await sleep(Math.min(Math.max(0, retryDelayMs(retry) - waitedMs), remainingMs));
      }
    }
  } finally {
    await nc.close();
  }
}

/**
 * Whether an admin request failed because no coordinator leads right now: nobody subscribed (no
 * responders), only followers heard it (timeout), or the leader stepped down while answering.
 */
function isNoLeader(error: unknown): boolean {
  if (error instanceof AdminRejectedError) return error.reason === 'NO_LEADER';
  return isTransientNatsError(error);
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
