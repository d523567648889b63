// The archive's segment format (archive/segment-format.ts): a round trip keeps every column and
// every message's bytes exactly, bad messages included; DuckDB reads a segment file directly.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodeSegment,
  encodeSegment,
  REPLAY_COLUMNS,
  segmentEventsOf,
  segmentRangeOf,
} from '../archive/segment-format.js';
import { encodeEvent } from '../protocol/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-segment-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({
        key: fc.string({ unit: 'binary', minLength: 0, maxLength: 20 }),
        time: fc.integer({ min: 0, max: 4_102_444_800_000 }),
        value: fc.jsonValue(),
      })
      .map((event) => encodeEvent(event)),
  },
  // Not envelopes: the archive keeps them as they were, the engine dead-letters them on replay.
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 30 }) },
);

describe('segment format', () => {
  it('round-trips sequences, keys, event times, log times and the exact message bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(message, { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 2 ** 40 }),
        async (datas, start) => {
          const messages = datas.map((data, index) => ({
            sequence: start + index * 2,
            logTimeMs: 1_700_000_000_000 + index,
            data,
          }));
          const events = segmentEventsOf(messages);
          const back = await decodeSegment(encodeSegment(events));
          expect([...back.sequences]).toEqual(messages.map((each) => each.sequence));
          expect([...back.logTimes]).toEqual(messages.map((each) => each.logTimeMs));
          expect(back.keys).toEqual(events.keys);
          expect([...back.times]).toEqual([...events.times]);
          expect(back.data.map((data) => Buffer.from(data).toString('hex'))).toEqual(
            datas.map((data) => Buffer.from(data).toString('hex')),
          );
          // What a replay reads: the same messages, without the key and event-time columns.
          const replayed = await decodeSegment(encodeSegment(events), REPLAY_COLUMNS);
          expect([...replayed.sequences]).toEqual([...back.sequences]);
          expect([...replayed.logTimes]).toEqual([...back.logTimes]);
          expect(replayed.data).toEqual(back.data);
          expect(replayed.keys.every((key) => key === null)).toBe(true);
          expect([...replayed.times].every((time) => Number.isNaN(time))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('records its range in the file metadata', () => {
    const events = segmentEventsOf([{ sequence: 7, logTimeMs: 5, data: encodeEvent({ key: 'a', time: 9, value: 1 }) }]);
    const range = {
      topic: 't',
      partition: 3,
      firstSequence: 4,
      lastSequence: 7,
      count: 1,
      minEventTimeMs: 9,
      maxEventTimeMs: 9,
      maxLogTimeMs: 5,
      streamBytes: 100,
    };
    expect(segmentRangeOf(encodeSegment(events, range))).toEqual(range);
  });

  it('is read by DuckDB directly: the same counts per key and tumbling minute', async () => {
    const messages = Array.from({ length: 20_000 }, (_, index) => {
      const user = `user-${(index * 7919) % 97}`;
      const ts = 1_767_225_600_000 + index * 37;
      return {
        sequence: index + 1,
        logTimeMs: ts + 5,
        data: encodeEvent({ key: user, time: ts, value: { user, ts, page: `/p/${index % 13}` } }),
      };
    });
    messages.push({ sequence: 20_001, logTimeMs: 0, data: new Uint8Array([1, 2, 3]) });
    const file = join(dir, 'segment.parquet');
    writeFileSync(file, encodeSegment(segmentEventsOf(messages)));

    const expected = new Map<string, number>();
    for (const { data } of messages.slice(0, -1)) {
      const [, key, time] = decodeFields(data) as [0, string, number];
      const window = `${key}@${time - (time % 60_000)}`;
      expected.set(window, (expected.get(window) ?? 0) + 1);
    }
    const instance = await DuckDBInstance.create(':memory:');
    const db = await instance.connect();
    try {
      const result = await db.runAndReadAll(
        `SELECT key, event_time - event_time % 60000 AS start, count(*) AS n, min(sequence), max(sequence)
           FROM read_parquet('${file}') WHERE key IS NOT NULL GROUP BY ALL`,
      );
      const actual = new Map(result.getRows().map(([key, start, n]) => [`${String(key)}@${String(start)}`, Number(n)]));
      expect(actual).toEqual(expected);
      const all = await db.runAndReadAll(`SELECT count(*), count(key), max(sequence) FROM read_parquet('${file}')`);
      expect(all.getRows()[0]!.map(Number)).toEqual([20_001, 20_000, 20_001]);
    } finally {
      db.closeSync();
      instance.closeSync();
    }
  });
});

function decodeFields(data: Uint8Array): unknown[] {
  const events = segmentEventsOf([{ sequence: 1, logTimeMs: 0, data }]);
  return [0, events.keys[0], events.times[0]];
}
