// How the leader plans a job version (protocol/job-plan.ts, pure): read directly only when the
// job's key is the topic's (the producer's key, or the field the topic records) with the topic's
// partition count; any other key, several sources or another partition count go through the
// version's repartition topic. The expected plans are written out by hand.
import { describe, expect, it } from 'vitest';
import {
  directPlan,
  isRepartitionTopic,
  planJob,
  plannedStages,
  repartitionTopic,
  routeStage,
  stageOf,
  type JobDeclaration,
  type TopicConfig,
} from '../protocol/index.js';

const CREATED_AT = '2026-12-01T00:00:00.000Z';

/** The registry: clicks (4 partitions, keyed by page), views (8, no key recorded). */
function registry(topic: string): TopicConfig | undefined {
  if (topic === 'clicks') return { partitions: 4, replicas: 1, createdAt: CREATED_AT, key: 'page' };
  if (topic === 'views') return { partitions: 8, replicas: 1, createdAt: CREATED_AT };
  return undefined;
}

function single(keying: JobDeclaration['sources'][number]['keying'], partitions?: number): JobDeclaration {
  return {
    sources: [{ name: 'clicks', topic: 'clicks', keying }],
    ...(partitions === undefined ? {} : { partitions }),
  };
}

const CLICKS_DIRECT = { sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }], repartition: null };

describe('planJob', () => {
  it('reads the topic directly when the job has no key (the producer’s key)', () => {
    expect(planJob('counts', 'v1', single({ kind: 'event' }), registry)).toEqual({ plan: CLICKS_DIRECT });
  });

  it('reads the topic directly when the job keys by the field the topic records', () => {
    expect(planJob('counts', 'v1', single({ kind: 'field', field: 'page' }), registry)).toEqual({
      plan: CLICKS_DIRECT,
    });
    // Asking for the topic's own partition count changes nothing.
    expect(planJob('counts', 'v1', single({ kind: 'field', field: 'page' }, 4), registry)).toEqual({
      plan: CLICKS_DIRECT,
    });
  });

  it('repartitions a job keyed by another field, into as many partitions as the topic has', () => {
    expect(planJob('counts', 'v1', single({ kind: 'field', field: 'user' }), registry)).toEqual({
      plan: {
        sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }],
        repartition: { topic: 'rp_6_counts_v1', partitions: 4 },
      },
    });
  });

  it('repartitions a job keyed by a function, even one that might return the topic’s key', () => {
    expect(planJob('counts', 'v2', single({ kind: 'function' }), registry)).toEqual({
      plan: {
        sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }],
        repartition: { topic: 'rp_6_counts_v2', partitions: 4 },
      },
    });
  });

  it('repartitions a field key when the topic records none', () => {
    const declaration: JobDeclaration = {
      sources: [{ name: 'views', topic: 'views', keying: { kind: 'field', field: 'page' } }],
    };
    expect(planJob('counts', 'v1', declaration, registry)).toEqual({
      plan: {
        sources: [{ name: 'views', topic: 'views', partitions: 8 }],
        repartition: { topic: 'rp_6_counts_v1', partitions: 8 },
      },
    });
  });

  it('repartitions the topic’s own key when the job asks for another partition count', () => {
    expect(planJob('counts', 'v1', single({ kind: 'event' }, 12), registry)).toEqual({
      plan: {
        sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }],
        repartition: { topic: 'rp_6_counts_v1', partitions: 12 },
      },
    });
  });

  it('repartitions two sources, even both keyed as their topics are, into the most partitions either has', () => {
    const declaration: JobDeclaration = {
      sources: [
        { name: 'clicks', topic: 'clicks', keying: { kind: 'field', field: 'page' } },
        { name: 'views', topic: 'views', keying: { kind: 'event' } },
      ],
    };
    expect(planJob('joined', 'v1', declaration, registry)).toEqual({
      plan: {
        sources: [
          { name: 'clicks', topic: 'clicks', partitions: 4 },
          { name: 'views', topic: 'views', partitions: 8 },
        ],
        repartition: { topic: 'rp_6_joined_v1', partitions: 8 },
      },
    });
  });

  it('names the first source topic missing from the registry, and plans nothing', () => {
    const declaration: JobDeclaration = {
      sources: [
        { name: 'clicks', topic: 'clicks', keying: { kind: 'event' } },
        { name: 'orders', topic: 'orders', keying: { kind: 'event' } },
      ],
    };
    expect(planJob('joined', 'v1', declaration, registry)).toEqual({ missingTopic: 'orders' });
  });
});

describe('plannedStages', () => {
  it('has the one keyed stage over the topic for a direct plan', () => {
    expect(plannedStages(directPlan('clicks', 'clicks', 4))).toEqual([
      { stage: undefined, topic: 'clicks', partitions: 4, sourceIndex: undefined },
    ]);
  });

  it('has a route stage per source, then the keyed stage over the repartition topic', () => {
    const plan = {
      sources: [
        { name: 'clicks', topic: 'clicks', partitions: 4 },
        { name: 'views', topic: 'views', partitions: 8 },
      ],
      repartition: { topic: 'rp_6_joined_v1', partitions: 8 },
    };
    expect(plannedStages(plan)).toEqual([
      { stage: 'route-clicks', topic: 'clicks', partitions: 4, sourceIndex: 0 },
      { stage: 'route-views', topic: 'views', partitions: 8, sourceIndex: 1 },
      { stage: undefined, topic: 'rp_6_joined_v1', partitions: 8, sourceIndex: undefined },
    ]);
    expect(stageOf(plan, routeStage('views'))?.sourceIndex).toBe(1);
    expect(stageOf(plan, 'route-orders')).toBeUndefined();
  });
});

describe('repartition topic names', () => {
  it('keep job and version apart by the job’s length, and fall back to a digest past 64 characters', () => {
    expect(repartitionTopic('a_b', 'c')).toBe('rp_3_a_b_c');
    expect(repartitionTopic('a', 'b_c')).toBe('rp_1_a_b_c');
    const long = repartitionTopic('j'.repeat(60), 'v1');
    expect(long).toMatch(/^rp_[0-9a-f]{40}$/);
    for (const name of ['rp_3_a_b_c', long]) expect(isRepartitionTopic(name)).toBe(true);
    for (const name of ['clicks', 'rp_', 'rp_x', 'rpm_1_a_b']) expect(isRepartitionTopic(name)).toBe(false);
  });
});
