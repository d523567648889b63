// A short, deterministic name for something a key takes part in (a dead letter's timer or window,
// an output's message id): keys may hold any character, a digest holds only base64url.
import { createHash } from 'node:crypto';

export function digestOf(parts: unknown): string {
  return createHash('sha256')
    .update(typeof parts === 'string' ? parts : JSON.stringify(parts))
    .digest('base64url')
    .slice(0, 22);
}
