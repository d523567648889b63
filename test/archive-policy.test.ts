// The archive policy flags (protocol/archive-policy.ts): counts, durations and sizes, and refusals
// naming the flag; and the registry keeps reading entries written before the policy existed.
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  describeArchivePolicy,
  parseArchiveAfter,
  parseHotRetention,
  TopicConfigSchema,
} from '../protocol/index.js';

describe('archive policy flags', () => {
  it('reads --archive-after as a message count or a duration', () => {
    expect(parseArchiveAfter('100000')).toEqual({ afterMessages: 100_000 });
    expect(parseArchiveAfter('1h')).toEqual({ afterMs: 3_600_000 });
    expect(parseArchiveAfter('7d')).toEqual({ afterMs: 7 * 86_400_000 });
    for (const bad of ['0', '-5', '', 'soon', '1.5', '10GB'])
      expect(() => parseArchiveAfter(bad), bad).toThrow(ConfigError);
    expect(() => parseArchiveAfter('soon')).toThrow(/--archive-after/);
  });

  it('reads --hot-retention as a duration or a size', () => {
    expect(parseHotRetention('7d')).toEqual({ hotRetentionMs: 7 * 86_400_000 });
    expect(parseHotRetention('10GB')).toEqual({ hotRetentionBytes: 10e9 });
    expect(parseHotRetention('500MiB')).toEqual({ hotRetentionBytes: 500 * 2 ** 20 });
    expect(parseHotRetention('1B')).toEqual({ hotRetentionBytes: 1 });
    for (const bad of ['100', '', 'forever', '0B']) expect(() => parseHotRetention(bad), bad).toThrow(ConfigError);
  });

  it('describes a policy in one line', () => {
    expect(describeArchivePolicy(undefined)).toBe('no archive policy');
    expect(describeArchivePolicy({ afterMessages: 400, hotRetentionBytes: 1 })).toBe(
      'archive after 400 messages, hot retention 1 bytes',
    );
    expect(describeArchivePolicy({ afterMs: 3_600_000 })).toBe('archive after 1h, hot retention unlimited');
  });

  it('keeps registry entries from before the policy readable, and the policy optional', () => {
    const old = { partitions: 4, replicas: 1, createdAt: '2026-01-01T00:00:00.000Z', key: 'user' };
    expect(TopicConfigSchema.parse(old)).toEqual(old);
    expect(TopicConfigSchema.parse({ ...old, archive: { afterMessages: 10 } }).archive).toEqual({ afterMessages: 10 });
    expect(TopicConfigSchema.safeParse({ ...old, archive: { afterMessages: 0 } }).success).toBe(false);
  });
});
