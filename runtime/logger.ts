// The process logger: pino JSON lines on stderr, with the fields every line of this process carries.
import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs on stderr (stdout stays free for command output). `fields` go on every
 * line (workerId, coordinatorId, thread); per-task code logs through `logger.child({ job,
 * version, partition })` so every task line can be filtered by those fields.
 */
export function createLogger(fields: Record<string, unknown>, level = process.env.KAPPA_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid, ...fields } }, pino.destination(2));
}
