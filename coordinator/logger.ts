import { pino, type Logger } from 'pino';

/** Structured JSON logs on stderr, so stdout stays free for command output. */
export function createCoordinatorLogger(fields: Record<string, unknown>, level = 'info'): Logger {
  return pino({ level, base: { pid: process.pid, ...fields } }, pino.destination(2));
}
