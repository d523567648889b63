// The audit line of an admin request: who sent it (the principal headers the CLI sets,
// protocol/principal.ts), which verb on which job version, and how it ended. One JSON log line
// with msg 'audit' per request, at info for the verbs that change the cluster and at debug for
// status (asked every second by `kappa status --watch` and by tests).
import type { MsgHdrs } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { decodeMessage, principalHeaders, type Message } from '../protocol/index.js';

export interface AdminAuditEntry {
  verb: string;
  principal: string;
  principalKey?: string;
  origin?: string;
  job?: string;
  version?: string;
  outcome: 'ok' | 'rejected';
  /** The rejection's code (NO_SUCH_VERSION, …) when rejected. */
  code?: string;
}

/** The audit entry of one answered request: `subject` is `kappa.admin.<verb>`. */
export function adminAuditEntry(
  subject: string,
  headers: MsgHdrs | undefined,
  data: Uint8Array,
  reply: Message,
): AdminAuditEntry {
  const header = (name: string) => headers?.get(name) || undefined;
  const target = requestTarget(data);
  return {
    verb: subject.slice(subject.lastIndexOf('.') + 1),
    principal: header(principalHeaders.name) ?? 'unknown',
    ...optional('principalKey', header(principalHeaders.key)),
    ...optional('origin', header(principalHeaders.origin)),
    ...optional('job', target.job),
    ...optional('version', target.version),
    outcome: reply.type === 'reply.error' ? 'rejected' : 'ok',
    ...optional('code', reply.type === 'reply.error' ? reply.code : undefined),
  };
}

export function logAdminAudit(logger: Pick<Logger, 'info' | 'debug'>, entry: AdminAuditEntry): void {
  if (entry.verb === 'status') logger.debug(entry, 'audit');
  else logger.info(entry, 'audit');
}

/** The job and version a request names, read leniently: a malformed request is audited too. */
function requestTarget(data: Uint8Array): { job?: string; version?: string } {
  try {
    const request = decodeMessage(data) as { job?: unknown; version?: unknown };
    return {
      job: typeof request.job === 'string' ? request.job : undefined,
      version: typeof request.version === 'string' ? request.version : undefined,
    };
  } catch {
    return {};
  }
}

function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, string>);
}
