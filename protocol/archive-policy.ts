// A topic's archive policy, as the topic registry records it (`kappa topic create --archive-after
// <count|duration> --hot-retention <duration|bytes>`). Pure: the flags' parsing and the shape.
import ms from 'ms';
import { z } from 'zod';
import { ConfigError } from './errors.js';

export const ArchivePolicySchema = z.object({
  /** Seal a segment once this many messages are unarchived (the segment's size). */
  afterMessages: z.number().int().positive().optional(),
  /** Seal the messages the log received longer ago than this. */
  afterMs: z.number().int().positive().optional(),
  /** The stream keeps at least the messages of this last stretch of log time. */
  hotRetentionMs: z.number().int().positive().optional(),
  /** The stream keeps at least this many bytes. */
  hotRetentionBytes: z.number().int().positive().optional(),
});
export type ArchivePolicy = z.infer<typeof ArchivePolicySchema>;

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** `--archive-after`: a whole number of messages (`100000`) or a duration (`1h`, `7d`). */
export function parseArchiveAfter(raw: string): Pick<ArchivePolicy, 'afterMessages' | 'afterMs'> {
  if (/^\d+$/.test(raw.trim())) {
    const count = Number(raw);
    if (count >= 1) return { afterMessages: count };
  }
  const duration = durationMs(raw);
  if (duration !== undefined) return { afterMs: duration };
  throw new ConfigError(
    `--archive-after must be a message count (100000) or a duration (30m, 1h, 7d), found ${JSON.stringify(raw)}`,
  );
}

/** `--hot-retention`: a duration (`7d`) or a size (`10GB`, `500MiB`). */
export function parseHotRetention(raw: string): Pick<ArchivePolicy, 'hotRetentionMs' | 'hotRetentionBytes'> {
  const size = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$/i.exec(raw);
  if (size) {
    const bytes = Math.floor(Number(size[1]) * BYTE_UNITS[size[2]!.toLowerCase()]!);
    if (bytes >= 1) return { hotRetentionBytes: bytes };
  }
  const duration = durationMs(raw);
  if (duration !== undefined) return { hotRetentionMs: duration };
  throw new ConfigError(
    `--hot-retention must be a duration (7d, 12h) or a size (10GB, 500MiB), found ${JSON.stringify(raw)}`,
  );
}

function durationMs(raw: string): number | undefined {
  // ms('100') is 100 ms: a bare number is not a duration here.
  if (!/[a-z]\s*$/i.test(raw)) return undefined;
  const value = ms(raw as ms.StringValue);
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

/** How the policy reads back: `after 100000 messages, hot 7d`. */
export function describeArchivePolicy(policy: ArchivePolicy | undefined): string {
  if (!policy) return 'no archive policy';
  const after =
    policy.afterMessages !== undefined
      ? `after ${policy.afterMessages} messages`
      : policy.afterMs !== undefined
        ? `after ${ms(policy.afterMs)}`
        : 'on demand';
  const hot = [
    policy.hotRetentionMs !== undefined ? ms(policy.hotRetentionMs) : undefined,
    policy.hotRetentionBytes !== undefined ? `${policy.hotRetentionBytes} bytes` : undefined,
  ].filter((part) => part !== undefined);
  return `archive ${after}, hot retention ${hot.length > 0 ? hot.join(' and ') : 'unlimited'}`;
}
