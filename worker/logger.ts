import { pino, type Logger } from 'pino';

/** Structured JSON logs on stderr (stdout stays free for command output). */
export function createLogger(fields: Record<string, unknown>, level = process.env.KAPPA_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid, ...fields } }, pino.destination(2));
}
