// Property tests for the pure window core: assignment, session merging, watermark, lateness —
// and, end to end, the core applied event by event agrees with the independent batch reference.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../protocol/partition.js';
import type { Window } from '../worker/types.js';
import { idleWatermark, Watermark } from '../worker/watermark.js';
import { hoppingWindows } from '../worker/window/hopping.js';
import { cleanupTime, fireTime, isFired, isPurged, judgeEvent } from '../worker/window/lateness.js';
import { assignSession, intersects, mergeSession } from '../worker/window/session.js';
import { floorMod, tumblingWindow } from '../worker/window/tumbling.js';
import { batchWindows, windowId } from './reference/batch-windows.js';
import {
  eventStream,
  lateness,
  windowSpec,
  type GeneratedWindowSpec,
  type StreamEvent,
} from './reference/event-streams.js';

const time = fc.integer({ min: -2_000_000_000_000, max: 4_000_000_000_000 });
const smallTime = fc.integer({ min: -1_000, max: 1_000 });
const size = fc.integer({ min: 1, max: 100_000 });
const offset = fc.integer({ min: -1_000_000, max: 1_000_000 });
const window = fc
  .tuple(smallTime, fc.integer({ min: 1, max: 200 }))
  .map(([start, length]): Window => ({ start, end: start + length }));

describe('floorMod', () => {
  it('is in [0, m) and congruent to x', () => {
    fc.assert(
      fc.property(time, size, (x, m) => {
        const r = floorMod(x, m);
        expect(r).toBeGreaterThanOrEqual(0);
        expect(r).toBeLessThan(m);
        expect((x - r) % m === 0).toBe(true);
      }),
    );
  });
});

describe('tumblingWindow', () => {
  it('contains t, has the window size and is aligned to the offset', () => {
    fc.assert(
      fc.property(time, size, offset, (t, s, o) => {
        const w = tumblingWindow(t, s, o);
        expect(w.start).toBeLessThanOrEqual(t);
        expect(t).toBeLessThan(w.end);
        expect(w.end - w.start).toBe(s);
        expect(floorMod(w.start - o, s)).toBe(0);
      }),
    );
  });

  it('gives every time in a window the same window, and the next one to its end', () => {
    fc.assert(
      fc.property(time, size, offset, (t, s, o) => {
        const w = tumblingWindow(t, s, o);
        expect(tumblingWindow(w.start, s, o)).toEqual(w);
        expect(tumblingWindow(w.end - 1, s, o)).toEqual(w);
        expect(tumblingWindow(w.end, s, o)).toEqual({ start: w.end, end: w.end + s });
      }),
    );
  });

  it('handles negative times with a true modulo', () => {
    expect(tumblingWindow(-1, 10)).toEqual({ start: -10, end: 0 });
    expect(tumblingWindow(-10, 10)).toEqual({ start: -10, end: 0 });
    expect(tumblingWindow(0, 10)).toEqual({ start: 0, end: 10 });
    expect(tumblingWindow(2, 10, 3)).toEqual({ start: -7, end: 3 });
    expect(tumblingWindow(2, 10, -27)).toEqual({ start: -7, end: 3 });
  });
});

describe('hoppingWindows', () => {
  it('returns exactly size/slide windows when size is a multiple of slide, each holding t and aligned', () => {
    fc.assert(
      fc.property(time, fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 12 }), offset, (t, d, k, o) => {
        const windows = hoppingWindows(t, d * k, d, o);
        expect(windows).toHaveLength(k);
        for (const w of windows) {
          expect(w.start).toBeLessThanOrEqual(t);
          expect(t).toBeLessThan(w.end);
          expect(w.end - w.start).toBe(d * k);
          expect(floorMod(w.start - o, d)).toBe(0);
        }
      }),
    );
  });

  it('returns every aligned window holding t, ascending by start, for any size and slide', () => {
    fc.assert(
      fc.property(
        smallTime,
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: -100, max: 100 }),
        (t, s, d, o) => {
          // Oracle: scan every start in a range around t.
          const expected: Window[] = [];
          for (let start = t - s - 2 * d; start <= t + d; start++) {
            if (floorMod(start - o, d) === 0 && start <= t && t < start + s) expected.push({ start, end: start + s });
          }
          expect(hoppingWindows(t, s, d, o)).toEqual(expected);
        },
      ),
    );
  });

  it('equals the tumbling window when slide = size', () => {
    fc.assert(
      fc.property(time, size, offset, (t, s, o) => {
        expect(hoppingWindows(t, s, s, o)).toEqual([tumblingWindow(t, s, o)]);
      }),
    );
  });
});

/** Independent oracle: the existing sessions reachable from `proposed` through intersections. */
function reachable(existing: readonly Window[], proposed: Window): Set<Window> {
  const found = new Set<Window>();
  const frontier: Window[] = [proposed];
  while (frontier.length > 0) {
    const w = frontier.pop()!;
    for (const s of existing) {
      if (!found.has(s) && s.start <= w.end && w.start <= s.end) {
        found.add(s);
        frontier.push(s);
      }
    }
  }
  return found;
}

describe('mergeSession', () => {
  it('absorbs exactly the sessions connected to the proposal, and covers them', () => {
    fc.assert(
      fc.property(fc.array(window, { maxLength: 12 }), window, (existing, proposed) => {
        const { merged, absorbed } = mergeSession(existing, proposed);
        expect(new Set(absorbed)).toEqual(reachable(existing, proposed));
        expect(absorbed).toHaveLength(new Set(absorbed).size);
        // Contains the proposal and every absorbed session, and is no bigger than their cover.
        const all = [proposed, ...absorbed];
        expect(merged).toEqual({
          start: Math.min(...all.map((w) => w.start)),
          end: Math.max(...all.map((w) => w.end)),
        });
        // Nothing left out intersects the result.
        for (const s of existing) if (!absorbed.includes(s)) expect(intersects(s, merged)).toBe(false);
        // Ascending by start.
        for (let i = 1; i < absorbed.length; i++)
          expect(absorbed[i - 1]!.start).toBeLessThanOrEqual(absorbed[i]!.start);
      }),
    );
  });

  it('keeps a live session set pairwise disjoint (non-touching) when used event by event', () => {
    fc.assert(
      fc.property(fc.array(smallTime, { maxLength: 40 }), fc.integer({ min: 1, max: 50 }), (times, gap) => {
        let live: Window[] = [];
        for (const t of times) {
          const { merged, absorbed } = mergeSession(live, { start: t, end: t + gap });
          live = [...live.filter((s) => !absorbed.includes(s)), merged];
        }
        for (const a of live) for (const b of live) if (a !== b) expect(intersects(a, b)).toBe(false);
        // Every event time is in exactly one session.
        for (const t of times) expect(live.filter((s) => s.start <= t && t < s.end)).toHaveLength(1);
      }),
    );
  });

  it('merges touching windows (Flink TimeWindow.intersects)', () => {
    const a = { start: 0, end: 10 };
    const b = { start: 20, end: 30 };
    expect(mergeSession([a, b], { start: 10, end: 20 })).toEqual({ merged: { start: 0, end: 30 }, absorbed: [a, b] });
    expect(mergeSession([a, b], { start: 11, end: 19 })).toEqual({ merged: { start: 11, end: 19 }, absorbed: [] });
  });
});

describe('Watermark', () => {
  const operation = fc.oneof(
    fc.record({ kind: fc.constant('observe' as const), ms: smallTime }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.oneof(smallTime, fc.constant(Infinity)) }),
  );

  it('is max event time − out-of-orderness (or the highest advance), and never decreases', () => {
    fc.assert(
      fc.property(fc.nat({ max: 100 }), fc.array(operation, { maxLength: 50 }), (ooo, operations) => {
        const watermark = new Watermark(ooo);
        expect(watermark.current).toBe(-Infinity);
        let maxEvent = -Infinity;
        let maxAdvance = -Infinity;
        let previous = -Infinity;
        for (const op of operations) {
          if (op.kind === 'observe') {
            watermark.observe(op.ms);
            maxEvent = Math.max(maxEvent, op.ms);
            expect(watermark.atLastEvent).toBe(watermark.current);
          } else {
            watermark.advanceTo(op.ms);
            maxAdvance = Math.max(maxAdvance, op.ms);
          }
          expect(watermark.current).toBeGreaterThanOrEqual(previous);
          expect(watermark.current).toBe(Math.max(maxEvent - ooo, maxAdvance));
          expect(watermark.maxEventTimeMs).toBe(maxEvent);
          previous = watermark.current;
        }
        const restored = new Watermark(ooo, watermark.snapshot());
        expect(restored.snapshot()).toEqual(watermark.snapshot());
      }),
    );
  });

  it('stays at Infinity after end of input', () => {
    const watermark = new Watermark(5);
    watermark.observe(100);
    expect(watermark.current).toBe(95);
    watermark.advanceTo(Infinity);
    watermark.observe(1_000);
    watermark.advanceTo(10);
    expect(watermark.current).toBe(Infinity);
  });
});

describe('idleWatermark', () => {
  it('does not advance before the idle timeout, then advances by the processing time since the task went idle', () => {
    expect(idleWatermark(100, 1_000, 1_999, 1_000)).toBe(100);
    expect(idleWatermark(100, 1_000, 2_000, 1_000)).toBe(100);
    expect(idleWatermark(100, 1_000, 2_500, 1_000)).toBe(600);
    expect(idleWatermark(-Infinity, 1_000, 9_000, 1_000)).toBe(-Infinity);
    expect(idleWatermark(100, 1_000, 9_000, Infinity)).toBe(100);
  });

  it('never goes below the last watermark and never decreases as processing time passes', () => {
    fc.assert(
      fc.property(
        smallTime,
        smallTime,
        fc.nat({ max: 5_000 }),
        fc.nat({ max: 5_000 }),
        fc.nat({ max: 2_000 }),
        (last, lastEventAt, a, b, timeout) => {
          const early = idleWatermark(last, lastEventAt, lastEventAt + Math.min(a, b), timeout);
          const late = idleWatermark(last, lastEventAt, lastEventAt + Math.max(a, b), timeout);
          expect(early).toBeGreaterThanOrEqual(last);
          expect(late).toBeGreaterThanOrEqual(early);
        },
      ),
    );
  });
});

describe('lateness', () => {
  it('fires at end − 1, purges at end − 1 + allowed lateness, and both are monotonic in the watermark', () => {
    fc.assert(
      fc.property(window, smallTime, fc.nat({ max: 100 }), fc.nat({ max: 100 }), (w, wm, allowed, step) => {
        expect(fireTime(w)).toBe(w.end - 1);
        expect(cleanupTime(w, allowed)).toBe(w.end - 1 + allowed);
        expect(isFired(w, wm)).toBe(wm >= w.end - 1);
        expect(isPurged(w, wm, allowed)).toBe(wm >= w.end - 1 + allowed);
        // Purged implies fired; with no allowed lateness they coincide.
        if (isPurged(w, wm, allowed)) expect(isFired(w, wm)).toBe(true);
        expect(isPurged(w, wm, 0)).toBe(isFired(w, wm));
        if (isFired(w, wm)) expect(isFired(w, wm + step)).toBe(true);
        if (isPurged(w, wm, allowed)) expect(isPurged(w, wm + step, allowed)).toBe(true);
      }),
    );
  });

  it('splits an event’s windows into accepted and missed, emitting now the fired ones it updates', () => {
    fc.assert(
      fc.property(
        smallTime,
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 4 }),
        smallTime,
        fc.nat({ max: 30 }),
        (t, d, k, wm, allowed) => {
          const windows = hoppingWindows(t, d * k, d);
          const { accepted, emitNow, missed } = judgeEvent(windows, wm, allowed);
          expect([...accepted, ...missed].sort((a, b) => a.start - b.start)).toEqual(windows);
          for (const w of missed) expect(isPurged(w, wm, allowed)).toBe(true);
          for (const w of accepted) expect(isPurged(w, wm, allowed)).toBe(false);
          expect(emitNow).toEqual(accepted.filter((w) => isFired(w, wm)));
        },
      ),
    );
  });

  it('re-emits an updated window for an event within allowed lateness, and sends a later one to the late output', () => {
    const w = tumblingWindow(5, 10);
    expect(judgeEvent([w], 12, 5)).toEqual({ accepted: [w], emitNow: [w], missed: [] });
    expect(judgeEvent([w], 14, 5)).toEqual({ accepted: [], emitNow: [], missed: [w] });
    expect(judgeEvent([w], 8, 5)).toEqual({ accepted: [w], emitNow: [], missed: [] });
  });

  it('judges a session on the merged window: an otherwise late event joins a live session it touches', () => {
    const live = { start: 50, end: 70 };
    // Alone, [45,55) would be purged at wm 60; merged into [45,70) it is live and not yet fired.
    expect(assignSession([live], 45, 10, 60, 0)).toEqual({
      kind: 'merged',
      merged: { start: 45, end: 70 },
      absorbed: [live],
      emitNow: false,
    });
    // [5,15) touches nothing live: late, and nothing merges.
    expect(assignSession([live], 5, 10, 60, 0)).toEqual({ kind: 'late', missed: { start: 5, end: 15 } });
    // A purged session is frozen: it is not reopened, the event starts its own session.
    const purged = { start: 0, end: 15 };
    expect(assignSession([purged], 12, 10, 20, 0)).toEqual({
      kind: 'merged',
      merged: { start: 12, end: 22 },
      absorbed: [],
      emitNow: false,
    });
  });

  it('marks a session late only when nothing live intersects its proposal', () => {
    fc.assert(
      fc.property(
        fc.array(window, { maxLength: 8 }),
        smallTime,
        fc.integer({ min: 1, max: 50 }),
        smallTime,
        fc.nat({ max: 30 }),
        (sessions, t, gap, wm, allowed) => {
          const assignment = assignSession(sessions, t, gap, wm, allowed);
          const live = sessions.filter((s) => !isPurged(s, wm, allowed));
          if (assignment.kind === 'late') {
            expect(live.some((s) => intersects(s, assignment.missed))).toBe(false);
            expect(isPurged(assignment.missed, wm, allowed)).toBe(true);
          } else {
            expect(isPurged(assignment.merged, wm, allowed)).toBe(false);
            for (const s of assignment.absorbed) expect(live).toContain(s);
            expect(assignment.emitNow).toBe(isFired(assignment.merged, wm));
          }
        },
      ),
    );
  });
});

/**
 * A minimal incremental engine built only from the core: per partition a Watermark, per window an
 * accumulator updated as events arrive, session accumulators merged on merge. A commutative
 * aggregate (count, sum, min id) so merging accumulators equals re-folding the events.
 */
function simulate(
  spec: GeneratedWindowSpec,
  maxOutOfOrdernessMs: number,
  allowedLatenessMs: number,
  events: readonly StreamEvent[],
  partitionCount: number,
) {
  type Accumulator = { count: number; sum: number; minId: number };
  const add = (a: Accumulator, e: StreamEvent): Accumulator => ({
    count: a.count + 1,
    sum: a.sum + e.n,
    minId: Math.min(a.minId, e.id),
  });
  const combine = (a: Accumulator, b: Accumulator): Accumulator => ({
    count: a.count + b.count,
    sum: a.sum + b.sum,
    minId: Math.min(a.minId, b.minId),
  });
  const empty = (): Accumulator => ({ count: 0, sum: 0, minId: Infinity });
  const watermarks = new Map<number, Watermark>();
  const windows = new Map<string, Accumulator>();
  const sessions = new Map<string, Array<Window & { accumulator: Accumulator }>>();
  const late: Array<{ id: number; windows: Window[] }> = [];
  for (const event of events) {
    const partition = partitionOf(event.user, partitionCount);
    let watermark = watermarks.get(partition);
    if (!watermark) watermarks.set(partition, (watermark = new Watermark(maxOutOfOrdernessMs)));
    const before = watermark.current;
    if (spec.kind === 'session') {
      const keySessions = sessions.get(event.user) ?? [];
      const assignment = assignSession(keySessions, event.ts, spec.gapMs, before, allowedLatenessMs);
      if (assignment.kind === 'late') late.push({ id: event.id, windows: [assignment.missed] });
      else {
        let accumulator = add(empty(), event);
        for (const s of assignment.absorbed)
          accumulator = combine(accumulator, (s as Window & { accumulator: Accumulator }).accumulator);
        sessions.set(event.user, [
          ...keySessions.filter((s) => !assignment.absorbed.includes(s)),
          { ...assignment.merged, accumulator },
        ]);
      }
    } else {
      const assigned =
        spec.kind === 'tumbling'
          ? [tumblingWindow(event.ts, spec.sizeMs, spec.offsetMs)]
          : hoppingWindows(event.ts, spec.sizeMs, spec.slideMs, spec.offsetMs);
      const { accepted, missed } = judgeEvent(assigned, before, allowedLatenessMs);
      for (const w of accepted) {
        const id = windowId(event.user, w.start, w.end);
        windows.set(id, add(windows.get(id) ?? empty(), event));
      }
      if (missed.length > 0) late.push({ id: event.id, windows: missed });
    }
    watermark.observe(event.ts);
  }
  for (const [user, keySessions] of sessions)
    for (const s of keySessions) windows.set(windowId(user, s.start, s.end), s.accumulator);
  return { windows, late };
}

describe('the core, applied event by event, agrees with the batch reference', () => {
  it('on random keyed streams with disorder and very late events, for every window kind', () => {
    fc.assert(
      fc.property(
        eventStream(),
        windowSpec(),
        lateness(),
        fc.integer({ min: 1, max: 4 }),
        (events, spec, { maxOutOfOrdernessMs, allowedLatenessMs }, partitionCount) => {
          const expected = batchWindows(
            {
              window: spec,
              maxOutOfOrdernessMs,
              allowedLatenessMs,
              aggregate: {
                init: () => ({ count: 0, sum: 0, minId: Infinity }),
                add: (a, e: StreamEvent) => ({ count: a.count + 1, sum: a.sum + e.n, minId: Math.min(a.minId, e.id) }),
              },
              key: (e) => e.user,
              time: (e) => e.ts,
            },
            events,
            partitionCount,
          );
          const actual = simulate(spec, maxOutOfOrdernessMs, allowedLatenessMs, events, partitionCount);
          expect(Object.fromEntries(actual.windows)).toEqual(
            Object.fromEntries([...expected.windows].map(([id, row]) => [id, row.value])),
          );
          expect(actual.late.sort((a, b) => a.id - b.id)).toEqual(
            expected.late.map((record) => ({ id: record.value.id, windows: record.windows })),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
