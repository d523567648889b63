// The leader plans a version from what its workers declare and what the topics record
// (coordinator/topic-resolution.ts `planVersion`), but never moves a version that already ran to
// another input: its checkpoints are positions in the topic it read. A version that ran behind its
// repartition topic keeps it even when the source topic has since recorded the job's key.
import pino from 'pino';
import { expect, it } from 'vitest';
import { repartitionTopic, type TopicConfig } from '../protocol/index.js';
import type { JobVersionRecord } from '../coordinator/cluster-state.js';
import { planVersion, type VersionPlanning } from '../coordinator/topic-resolution.js';

const version: JobVersionRecord = {
  job: 'per-user',
  version: 'v1',
  topic: null,
  partitions: null,
  from: { kind: 'earliest' },
  state: 'running',
  startedAtMs: 0,
};

function planning(
  recordedKey: string | undefined,
  ran: { direct?: boolean; keyedBehindHop?: number },
): VersionPlanning {
  const config: TopicConfig = {
    partitions: 4,
    replicas: 1,
    createdAt: '2026-12-01T00:00:00Z',
    ...(recordedKey ? { key: recordedKey } : {}),
  };
  return {
    carrier: () => ({
      topic: 'clicks',
      table: 'kv',
      declaration: { sources: [{ name: 'clicks', topic: 'clicks', keying: { kind: 'field', field: 'user' } }] },
    }),
    topicConfig: async (topic) => (topic === 'clicks' ? config : undefined),
    createRepartitionTopic: async () => {},
    ranDirect: () => ran.direct ?? false,
    ranRepartitioned: () => ran.keyedBehindHop,
    logger: pino({ level: 'silent' }),
  };
}

it('reads directly a version keyed by the field its topic records, and repartitions one keyed otherwise', async () => {
  expect((await planVersion(planning('user', {}), version)).plan?.repartition).toBeNull();
  expect((await planVersion(planning('page', {}), version)).plan?.repartition).toEqual({
    topic: repartitionTopic('per-user', 'v1'),
    partitions: 4,
  });
});

it('keeps a version that ran behind its repartition topic there, with the keyed partitions it had, after the topic recorded the job’s key', async () => {
  const planned = await planVersion(planning('user', { keyedBehindHop: 6 }), version);
  expect(planned.plan).toEqual({
    sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }],
    repartition: { topic: repartitionTopic('per-user', 'v1'), partitions: 6 },
  });
  expect(planned.partitions).toBe(6);
});

it('keeps a version that ran directly reading its topic, whatever its key is now', async () => {
  expect((await planVersion(planning('page', { direct: true }), version)).plan?.repartition).toBeNull();
});
