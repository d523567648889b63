// The batch reference against examples worked out by hand (the reasoning is in the comments).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../protocol/partition.js';
import { batchWindows, type ReferenceJob, type ReferenceWindowSpec } from './batch-windows.js';
import { eventStream, type StreamEvent } from './event-streams.js';

type Event = { key: string; ts: number };
const at = (key: string, ts: number): Event => ({ key, ts });

/** Collects the event times of a window in arrival order. */
function job(
  window: ReferenceWindowSpec,
  maxOutOfOrdernessMs: number,
  allowedLatenessMs: number,
): ReferenceJob<Event, number[]> {
  return {
    window,
    maxOutOfOrdernessMs,
    allowedLatenessMs,
    aggregate: { init: () => [], add: (times, event) => [...times, event.ts] },
    key: (event) => event.key,
    time: (event) => event.ts,
  };
}

function table(result: ReturnType<typeof batchWindows<Event, number[]>>): Record<string, number[]> {
  return Object.fromEntries([...result.windows].map(([id, row]) => [id, row.value]));
}

function lateTimes(result: ReturnType<typeof batchWindows<Event, number[]>>): Array<[number, string[]]> {
  return result.late.map((record) => [record.time, record.windows.map((w) => `${w.start}-${w.end}`)]);
}

describe('batch reference, tumbling', () => {
  const times = [1, 7, 12, 16, 3, 9, 25, 14];

  it('sends an event for a purged window to the late output (size 10, ooo 5, lateness 0)', () => {
    // wm before each: -inf, -4, 2, 7, 11, 11, 11, 20.
    // 3 and 9 (wm 11 >= 9 + 0) miss [0,10); 14 (wm 20 >= 19) misses [10,20).
    const result = batchWindows(
      job({ kind: 'tumbling', sizeMs: 10 }, 5, 0),
      times.map((t) => at('a', t)),
      4,
    );
    expect(table(result)).toEqual({ 'a|0|10': [1, 7], 'a|10|20': [12, 16], 'a|20|30': [25] });
    expect(lateTimes(result)).toEqual([
      [3, ['0-10']],
      [9, ['0-10']],
      [14, ['10-20']],
    ]);
    expect(result.late[0]).toEqual({ key: 'a', time: 3, value: at('a', 3), windows: [{ start: 0, end: 10 }] });
  });

  it('updates a fired window within allowed lateness (size 10, ooo 5, lateness 3)', () => {
    // Purge of [0,10) at wm >= 12, of [10,20) at wm >= 22. Then 30 (wm 20), and 8 (wm 25): late.
    const result = batchWindows(
      job({ kind: 'tumbling', sizeMs: 10 }, 5, 3),
      [...times, 30, 8].map((t) => at('a', t)),
      1,
    );
    expect(table(result)).toEqual({
      'a|0|10': [1, 7, 3, 9],
      'a|10|20': [12, 16, 14],
      'a|20|30': [25],
      'a|30|40': [30],
    });
    expect(lateTimes(result)).toEqual([[8, ['0-10']]]);
  });

  it('aligns windows to the offset, negative times included (size 10, offset 3)', () => {
    const result = batchWindows(
      job({ kind: 'tumbling', sizeMs: 10, offsetMs: 3 }, 100, 0),
      [-8, -7, 2, 3].map((t) => at('a', t)),
      1,
    );
    expect(table(result)).toEqual({ 'a|-17|-7': [-8], 'a|-7|3': [-7, 2], 'a|3|13': [3] });
  });

  it('keeps a watermark per partition: a key is not late because of another partition', () => {
    const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const x = keys.find((k) => partitionOf(k, 2) === 0)!;
    const y = keys.find((k) => partitionOf(k, 2) === 1)!;
    const events = [at(x, 50), at(y, 5)];
    // Two partitions: y's partition has seen nothing, its wm is -inf.
    expect(lateTimes(batchWindows(job({ kind: 'tumbling', sizeMs: 10 }, 0, 0), events, 2))).toEqual([]);
    // One partition: wm before y@5 is 50 >= 9, so it is late.
    expect(lateTimes(batchWindows(job({ kind: 'tumbling', sizeMs: 10 }, 0, 0), events, 1))).toEqual([[5, ['0-10']]]);
  });
});

describe('batch reference, hopping', () => {
  it('lists only the windows an event missed (size 10, slide 5, ooo 0, lateness 0)', () => {
    // 2 → [-5,5) [0,10); 7 (wm 2) → [0,10) [5,15); 12 (wm 7) → [5,15) [10,20);
    // 4 (wm 12): [-5,5) purged (4 <= 12), [0,10) purged (9 <= 12) → late with both;
    // 9 (wm 12): [0,10) purged, [5,15) not (14 > 12) → updates [5,15), late with [0,10).
    const result = batchWindows(
      job({ kind: 'hopping', sizeMs: 10, slideMs: 5 }, 0, 0),
      [2, 7, 12, 4, 9].map((t) => at('a', t)),
      3,
    );
    expect(table(result)).toEqual({
      'a|-5|5': [2],
      'a|0|10': [2, 7],
      'a|5|15': [7, 12, 9],
      'a|10|20': [12],
    });
    expect(lateTimes(result)).toEqual([
      [4, ['-5-5', '0-10']],
      [9, ['0-10']],
    ]);
  });
});

describe('batch reference, sessions', () => {
  it('merges touching sessions, judges the merged window, and freezes purged sessions (gap 10, ooo 0, lateness 0)', () => {
    // One partition, so one watermark for a and b.
    // a0 (wm -inf) → [0,10); a5 (wm 0) → [0,15); a30 (wm 5) → [30,40);
    // a15 (wm 30): [0,15) purged (14 <= 30) and frozen; [15,25) touches nothing live, purged → late;
    // a22 (wm 30): [22,32) meets [30,40) → [22,40), not purged (39 > 30) → accepted;
    // b31 (wm 30) → [31,41); b41 (wm 31): [41,51) touches [31,41) → [31,51);
    // a3 (wm 41): [3,13) purged, the frozen [0,15) is not reopened → late;
    // a28 (wm 41): [22,40) is now purged (39 <= 41) → frozen; [28,38) purged → late.
    const events = [
      at('a', 0),
      at('a', 5),
      at('a', 30),
      at('a', 15),
      at('a', 22),
      at('b', 31),
      at('b', 41),
      at('a', 3),
      at('a', 28),
    ];
    const result = batchWindows(job({ kind: 'session', gapMs: 10 }, 0, 0), events, 1);
    expect(table(result)).toEqual({ 'a|0|15': [0, 5], 'a|22|40': [30, 22], 'b|31|51': [31, 41] });
    expect(lateTimes(result)).toEqual([
      [15, ['15-25']],
      [3, ['3-13']],
      [28, ['28-38']],
    ]);
  });

  it('bridges two sessions with one event and keeps the absorbed rows out of the result (gap 10, ooo 100)', () => {
    // 0 → [0,10); 25 → [25,35), apart; 10 → [10,20) touches [0,10) → [0,20);
    // 15 → [15,25) overlaps [0,20) and touches [25,35) → one session [0,35).
    const result = batchWindows(
      job({ kind: 'session', gapMs: 10 }, 100, 0),
      [0, 25, 10, 15].map((t) => at('a', t)),
      1,
    );
    expect(table(result)).toEqual({ 'a|0|35': [0, 25, 10, 15] });
    const result2 = batchWindows(
      job({ kind: 'session', gapMs: 10 }, 100, 0),
      [0, 25, 13].map((t) => at('a', t)),
      1,
    );
    // 13 → [13,23): 13 > 10, so not [0,10); 23 < 25, so not [25,35).
    expect(table(result2)).toEqual({ 'a|0|10': [0], 'a|13|23': [13], 'a|25|35': [25] });
  });
});

describe('batch reference, invariants over random streams', () => {
  it('accounts for every event: in at least one window, or late', () => {
    fc.assert(
      fc.property(eventStream(), fc.integer({ min: 1, max: 4 }), (events, partitionCount) => {
        const result = batchWindows<StreamEvent, number[]>(
          {
            window: { kind: 'tumbling', sizeMs: 10 },
            maxOutOfOrdernessMs: 5,
            allowedLatenessMs: 0,
            aggregate: { init: () => [], add: (ids, event) => [...ids, event.id] },
            key: (event) => event.user,
            time: (event) => event.ts,
          },
          events,
          partitionCount,
        );
        const inWindows = [...result.windows.values()].flatMap((row) => row.value);
        const late = result.late.map((record) => record.value.id);
        expect([...inWindows, ...late].sort((a, b) => a - b)).toEqual(events.map((event) => event.id));
      }),
    );
  });
});
