import fc from 'fast-check';
import { encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import {
  decodeEvent,
  decodeMessage,
  encodeEvent,
  encodeMessage,
  fnv1a32,
  keyToken,
  partitionOf,
  ProtocolError,
  PROTOCOL_MAJOR,
  type Message,
} from '../protocol/index.js';

describe('event envelope', () => {
  it('round-trips any key, finite time and msgpack-able value', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.double({ noNaN: true, noDefaultInfinity: true }).map((t) => t + 0),
        fc.jsonValue().filter((value) => !JSON.stringify(value).includes('"__proto__"')),
        (key, time, value) => {
          const decoded = decodeEvent(encodeEvent({ key, time, value }));
          expect(decoded.key).toBe(key);
          expect(decoded.time).toBe(time);
          // msgpack, like JSON, has no integer -0: compare with the value's JSON form.
          expect(decoded.value).toEqual(JSON.parse(JSON.stringify(value)));
        },
      ),
    );
  });

  it('throws a ProtocolError, never anything else, for random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeEvent(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });

  it('refuses a value with a __proto__ key (prototype pollution) as undecodable, so it is dead-lettered', () => {
    const bytes = encodeEvent({ key: 'k', time: 1, value: JSON.parse('{"__proto__": {"admin": true}}') });
    expect(() => decodeEvent(bytes)).toThrow(ProtocolError);
  });

  it('refuses a newer major version and says which', () => {
    const bytes = encode([PROTOCOL_MAJOR + 1, 'k', 1, null]);
    expect(() => decodeEvent(bytes)).toThrow(/protocol version 2, this reader understands 1/);
  });

  it('names a missing time', () => {
    expect(() => decodeEvent(encode([1, 'k', null, {}]))).toThrow(
      /event time must be a finite number of ms, found null/,
    );
  });
});

describe('control messages', () => {
  const samples: Message[] = [
    {
      type: 'worker.register',
      workerId: 'w1',
      capacity: 2,
      carries: [{ job: 'clicks', version: 'v1', topic: 'clicks' }],
    },
    {
      type: 'worker.heartbeat',
      workerId: 'w1',
      tasks: [
        {
          job: 'clicks',
          version: 'v1',
          partition: 3,
          epoch: 2,
          state: 'running',
          sequence: 10,
          lagMessages: 0,
          watermark: null,
        },
      ],
    },
    { type: 'task.assign', task: { job: 'clicks', version: 'v2', partition: 0 }, epoch: 1, from: { kind: 'earliest' } },
    { type: 'job.start', job: 'clicks', version: 'v2', from: { kind: 'time', timeMs: 1_700_000_000_000 } },
  ];

  it.each(samples)('round-trips $type', (message) => {
    expect(decodeMessage(encodeMessage(message))).toEqual(message);
  });

  it('refuses a newer major version', () => {
    const bytes = encode({ v: [PROTOCOL_MAJOR + 1, 0], type: 'worker.leave', workerId: 'w1' });
    expect(() => decodeMessage(bytes)).toThrow(ProtocolError);
    expect(() => decodeMessage(bytes)).toThrow(/version 2\.0/);
  });

  it('accepts a newer minor version and ignores fields it does not know', () => {
    const bytes = encode({ v: [PROTOCOL_MAJOR, 9], type: 'worker.leave', workerId: 'w1', futureField: true });
    expect(decodeMessage(bytes)).toEqual({ type: 'worker.leave', workerId: 'w1' });
  });

  it('names the bad field', () => {
    const bytes = encode({ v: [1, 0], type: 'worker.register', workerId: 'w1', capacity: 0, carries: [] });
    expect(() => decodeMessage(bytes)).toThrow(/'worker.register' field 'capacity'/);
  });

  it('refuses job, version, topic and worker names the CLI would refuse, naming the field', () => {
    const start = (job: string, version: string, topic = 'clicks') =>
      encode({ v: [PROTOCOL_MAJOR, 0], type: 'job.start', job, version, topic, from: { kind: 'earliest' } });
    for (const [job, version] of [
      ['a.b', 'c'],
      ['a', 'b.c'],
      ['a/b', 'c'],
      ['a', 'b c'],
      ['a', 'b>'],
      ['x'.repeat(65), 'v1'],
      ['', 'v1'],
    ] as const) {
      expect(() => decodeMessage(start(job, version))).toThrow(ProtocolError);
    }
    expect(() => decodeMessage(start('a', 'b.c'))).toThrow(/'job.start' field 'version'/);
    expect(() => decodeMessage(start('a', 'b', 'clicks.*'))).toThrow(/'job.start' field 'topic'/);
    expect(() => decodeMessage(encode({ v: [PROTOCOL_MAJOR, 0], type: 'worker.leave', workerId: 'w.1' }))).toThrow(
      /field 'workerId'/,
    );
    const assign = encode({
      v: [PROTOCOL_MAJOR, 0],
      type: 'task.assign',
      task: { job: 'a_b', version: 'c.d', partition: 0 },
      epoch: 1,
      from: { kind: 'earliest' },
    });
    expect(() => decodeMessage(assign)).toThrow(/field 'task.version'/);
    expect(decodeMessage(start('a_b-C9', 'v_1-x'))).toMatchObject({ job: 'a_b-C9', version: 'v_1-x' });
  });

  it('throws a ProtocolError for random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(() => decodeMessage(bytes)).toThrow(ProtocolError);
      }),
    );
  });
});

describe('partitioner', () => {
  it('is FNV-1a-32 (published test vectors)', () => {
    const utf8 = new TextEncoder();
    expect(fnv1a32(utf8.encode(''))).toBe(0x811c9dc5);
    expect(fnv1a32(utf8.encode('a'))).toBe(0xe40c292c);
    expect(fnv1a32(utf8.encode('foobar'))).toBe(0xbf9cf968);
  });

  it('hashes non-ASCII keys over their UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.integer({ min: 1, max: 4096 }), (key, count) => {
        expect(partitionOf(key, count)).toBe(fnv1a32(new TextEncoder().encode(key)) % count);
      }),
    );
  });

  it('makes a subject token of any key', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (key) => {
        expect(keyToken(key)).toMatch(/^[^\s.*>]+$/);
      }),
    );
  });
});
