// Repartition bundles (protocol/routed-event.ts): a route task stores a batch's records for one
// keyed partition as one message. The records come back as they went in; a malformed bundle is a
// ProtocolError; a keyed task takes every record of a bundle, dead-letters a bad one alone, and
// names each record's late and dead-letter records apart although they share the bundle's sequence.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeRoutedRecord,
  encodeRoutedBundle,
  encodeRoutedEvent,
  encodeWatermarkMark,
  ManualClock,
  partitionOf,
  PROTOCOL_MAJOR,
  ProtocolError,
  routedRecordsOf,
  type RoutedRecord,
} from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { validateJob } from '../worker/job.js';
import { TaskProcessor } from '../worker/task-processor.js';

const upstream = fc.record({
  source: fc.nat({ max: 3 }),
  partition: fc.nat({ max: 15 }),
  sequence: fc.nat({ max: 2 ** 40 }),
  watermarkMs: fc.oneof(fc.constant(-Infinity), fc.integer({ min: -1e12, max: 1e13 })),
});
const record: fc.Arbitrary<RoutedRecord> = fc.oneof(
  fc
    .record({
      upstream,
      key: fc.string({ minLength: 1, maxLength: 12 }),
      time: fc.integer({ min: -1e12, max: 1e13 }),
      // What an event can hold: msgpack refuses a `__proto__` key when decoding (protocol.test.ts).
      value: fc.jsonValue().filter((value) => !JSON.stringify(value).includes('"__proto__"')),
    })
    .map(({ upstream, key, time, value }) => ({ kind: 'event' as const, ...upstream, key, time, value })),
  fc
    .record({ upstream, idle: fc.boolean() })
    .map(({ upstream, idle }) => ({ kind: 'mark' as const, ...upstream, idle })),
);

function encodeRecord(routed: RoutedRecord): Uint8Array {
  return routed.kind === 'event' ? encodeRoutedEvent(routed) : encodeWatermarkMark(routed);
}

describe('a repartition bundle', () => {
  it('holds its records in order, each decoding to what was encoded; a lone record is its own message', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 20 }), (records) => {
        const encoded = records.map(encodeRecord);
        const unbundled = routedRecordsOf(encodeRoutedBundle(encoded));
        expect(unbundled.map((bytes) => [...bytes])).toEqual(encoded.map((bytes) => [...bytes]));
        expect(unbundled.map(decodeRoutedRecord)).toEqual(
          records.map((each) => decodeRoutedRecord(encodeRecord(each))),
        );
        expect(routedRecordsOf(encoded[0]!)).toEqual([encoded[0]]);
      }),
    );
  });

  it('is refused with what is wrong when malformed', () => {
    const good = encodeRoutedEvent({
      source: 0,
      partition: 0,
      sequence: 1,
      watermarkMs: 0,
      key: 'k',
      time: 1,
      value: 1,
    });
    const cases: Array<[Uint8Array, string, RegExp]> = [
      [encode([PROTOCOL_MAJOR + 1, 'b', [good]]), 'PROTOCOL_VERSION', /protocol version/],
      [encode([PROTOCOL_MAJOR, 'x', [good]]), 'PROTOCOL_SCHEMA', /routed bundle/],
      [encode([PROTOCOL_MAJOR, 'b', [good, 'not bytes']]), 'PROTOCOL_SCHEMA', /routed bundle/],
      [encode([PROTOCOL_MAJOR, 'b', 7]), 'PROTOCOL_SCHEMA', /routed bundle/],
      [encodeRoutedBundle([good]).subarray(0, 12), 'PROTOCOL_GARBAGE', /not msgpack/],
    ];
    for (const [bytes, code, message] of cases) {
      let caught: unknown;
      try {
        routedRecordsOf(bytes);
      } catch (error) {
        caught = error;
      }
      expect(caught, code).toBeInstanceOf(ProtocolError);
      expect((caught as ProtocolError).code).toBe(code);
      expect((caught as Error).message).toMatch(message);
    }
  });
});

describe('a keyed task reading bundles', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'kappa-routed-bundle-'));
  let store: TaskStore;
  beforeAll(async () => {
    store = await TaskStore.open(stateDir);
  });
  afterAll(async () => {
    await store.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const KEYED_PARTITIONS = 2;
  const PARTITION = 1;
  const keysOfPartition = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].filter(
    (key) => partitionOf(key, KEYED_PARTITIONS) === PARTITION,
  );
  const job = validateJob({
    name: 'counts',
    version: 'v1',
    source: { topic: 'clicks' },
    key: (click: { user: string }) => click.user,
    time: (click: { t: number }) => click.t,
    watermark: { maxOutOfOrderness: 0 },
    window: { kind: 'tumbling', size: 10 },
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
  });

  function event(sequence: number, key: string, time: number, watermarkMs: number): Uint8Array {
    return encodeRoutedEvent({
      source: 0,
      partition: 0,
      sequence,
      watermarkMs,
      key,
      time,
      value: { user: key, t: time },
    });
  }

  it('takes every record, drops repeats across bundles, and names late and bad records by sequence and part', async () => {
    const processor = new TaskProcessor(job, PARTITION, new KeyedState(store), new ManualClock(), undefined, {
      kind: 'merged',
      partitions: KEYED_PARTITIONS,
      upstreamPartitions: [1],
    });
    const [k1, k2] = keysOfPartition as [string, string];
    const wrongKey = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].find(
      (key) => partitionOf(key, KEYED_PARTITIONS) !== PARTITION,
    )!;
    const result = await processor.processBatch([
      // Sequence 1: three events of window [0, 10), the upstream watermark reaching 25 after the last.
      { data: encodeRoutedBundle([event(1, k1, 1, 1), event(2, k2, 2, 2), event(3, k1, 25, 25)]), sequence: 1 },
      // Sequence 2, a route task's re-publish cut elsewhere: 3 again, then two events late for
      // window [0, 10), an undecodable record, and an event of the other keyed partition.
      {
        data: encodeRoutedBundle([
          event(3, k1, 25, 25),
          event(4, k1, 3, 25),
          event(5, k2, 4, 25),
          new Uint8Array([0xc1]),
          event(6, wrongKey, 26, 26),
        ]),
        sequence: 2,
      },
    ]);
    expect(result.processed).toBe(5);
    const counted = Object.fromEntries(
      result.outputs.map((output) => [`${output.key}@${output.window!.start}`, output.value]),
    );
    expect(counted).toEqual({ [`${k1}@0`]: 1, [`${k2}@0`]: 1 });
    expect(result.late.map((late) => [late.key, late.sequence, late.part])).toEqual([
      [k1, 2, 1],
      [k2, 2, 2],
    ]);
    // Its sequence is the bundle's; its part (the Kappa-Part header) names the record in it.
    expect(result.deadLetters.map((letter) => [letter.reason, letter.id, letter.sequence, letter.part])).toEqual([
      ['undecodable', `${PARTITION}/2.3`, 2, 3],
      ['wrong-partition', `${PARTITION}/2.4`, 2, 4],
    ]);
    // A dead letter holds its own record, not the whole bundle.
    expect([...result.deadLetters[0]!.data]).toEqual([0xc1]);
  });

  it('dead-letters a bundle that is not one, whole, under its sequence', async () => {
    const processor = new TaskProcessor(job, PARTITION, new KeyedState(store), new ManualClock(), undefined, {
      kind: 'merged',
      partitions: KEYED_PARTITIONS,
      upstreamPartitions: [1],
    });
    const result = await processor.processBatch([{ data: encode([PROTOCOL_MAJOR, 'b', 3]), sequence: 9 }]);
    expect(result.deadLetters.map((letter) => [letter.reason, letter.id, letter.part])).toEqual([
      ['undecodable', `${PARTITION}/9`, undefined],
    ]);
    expect(result.processed).toBe(0);
  });
});
