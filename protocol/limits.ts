// Limits every edge checks (producer, decode, sinks), so one oversized input is rejected or
// dead-lettered with its reason instead of stalling a produce or poisoning a task downstream.

/**
 * Longest event key, in UTF-8 bytes. A key travels in subjects (`<topic>.<p>.<key-token>`, base64url
 * behind '~' when it is not a plain token), in KV row keys and in message-id headers, and NATS
 * control lines are 4 KiB by default: 1 KiB of key leaves room for the rest after base64 growth.
 */
export const MAX_KEY_BYTES = 1024;

/** UTF-8 length of a key, for the MAX_KEY_BYTES check. */
export function keyBytes(key: string): number {
  return Buffer.byteLength(key, 'utf8');
}

/** Why a key cannot be used, or undefined when it can. */
export function keyProblem(key: string): string | undefined {
  if (key.length === 0) return 'the key is empty';
  // PostgreSQL text cannot hold NUL: a serving-table write of such a key would fail the task.
  if (key.includes('\u0000')) return 'the key contains a NUL character (U+0000)';
  // Checked per event at decode: a UTF-16 unit is at most 3 UTF-8 bytes, so short keys skip the count.
  if (key.length * 3 <= MAX_KEY_BYTES) return undefined;
  const bytes = keyBytes(key);
  if (bytes > MAX_KEY_BYTES) return `the key is ${bytes} bytes, more than the limit of ${MAX_KEY_BYTES}`;
  return undefined;
}
