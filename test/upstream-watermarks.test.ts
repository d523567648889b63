// The keyed stage's watermark behind a repartition hop (worker/upstream-watermarks.ts): after any
// sequence of events and marks it is the minimum over the upstream partitions that are not idle,
// each holding the largest watermark it reported; repeats are recognised by upstream sequence.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { UpstreamWatermarks } from '../worker/upstream-watermarks.js';

const step = fc.oneof(
  fc.record({
    kind: fc.constant('event' as const),
    source: fc.nat(1),
    partition: fc.nat(2),
    watermark: fc.integer({ min: -5, max: 50 }),
  }),
  fc.record({
    kind: fc.constant('mark' as const),
    source: fc.nat(1),
    partition: fc.nat(2),
    watermark: fc.integer({ min: -5, max: 50 }),
    idle: fc.boolean(),
  }),
);

it('is the minimum over non-idle upstreams of the largest watermark each reported, after any steps and a restore', () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), fc.nat(60), (steps, restoreAt) => {
      const partitions = [2, 3];
      let upstreams = new UpstreamWatermarks(partitions);
      // The naive model: per upstream its largest watermark, idleness, last event sequence.
      const model = new Map<string, { watermark: number; idle: boolean; sequence: number }>();
      for (let source = 0; source < 2; source++)
        for (let partition = 0; partition < partitions[source]!; partition++)
          model.set(`${source}/${partition}`, { watermark: -Infinity, idle: false, sequence: 0 });
      steps.forEach((each, index) => {
        if (index === restoreAt) upstreams = new UpstreamWatermarks(partitions, upstreams.snapshot());
        const partition = each.partition % partitions[each.source]!;
        const at = upstreams.indexOf(each.source, partition);
        const state = model.get(`${each.source}/${partition}`)!;
        const sequence = index + 1;
        if (each.kind === 'event') {
          expect(upstreams.isRepeat(at, sequence)).toBe(false);
          upstreams.acceptEvent(at, sequence, each.watermark);
          expect(upstreams.isRepeat(at, sequence)).toBe(true);
          state.sequence = sequence;
          state.watermark = Math.max(state.watermark, each.watermark);
          state.idle = false;
        } else {
          upstreams.acceptMark(at, sequence, each.watermark, each.idle);
          state.watermark = Math.max(state.watermark, each.watermark);
          state.idle = each.idle;
        }
        const active = [...model.values()].filter((upstream) => !upstream.idle);
        const expected = active.length === 0 ? -Infinity : Math.min(...active.map((upstream) => upstream.watermark));
        expect(upstreams.minimum()).toBe(expected);
      });
    }),
    { numRuns: 300 },
  );
});

it('has no index for a partition the plan does not have', () => {
  const upstreams = new UpstreamWatermarks([2, 1]);
  expect(upstreams.indexOf(0, 1)).toBe(1);
  expect(upstreams.indexOf(1, 0)).toBe(2);
  expect(upstreams.indexOf(0, 2)).toBe(-1);
  expect(upstreams.indexOf(1, 1)).toBe(-1);
  expect(upstreams.indexOf(2, 0)).toBe(-1);
});
