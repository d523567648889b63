// The fast msgpack reader gives exactly what @msgpack/msgpack's Decoder gives, or leaves the bytes
// to it (undefined): for any plain value, for values with what it does not read, and for garbage.
import { decode, encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readPlainEnvelope, readPlainMsgpack, type EnvelopeParts } from '../protocol/event-reader.js';

/** Deep equality that tells −0 from 0 and compares NaN with itself, as a decoded value must be exact. */
function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b);
  if (Array.isArray(a))
    return Array.isArray(b) && a.length === b.length && a.every((item, index) => same(item, b[index]));
  if (a instanceof Uint8Array || b instanceof Uint8Array) return false; // bin is never read here
  if (a !== null && typeof a === 'object') {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) return false;
    const keys = Object.keys(a);
    const other = Object.keys(b);
    return (
      keys.length === other.length &&
      keys.every((key, index) => key === other[index] && same((a as never)[key], (b as never)[key]))
    );
  }
  return a === b;
}

const plain = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.integer({ min: -(2 ** 53), max: 2 ** 53 }),
    fc.double(),
    fc.float().map((value) => Math.fround(value)),
    fc.string({ unit: 'binary-ascii', maxLength: 40 }),
    fc.string({ unit: 'binary-ascii', minLength: 200, maxLength: 70_000 }),
    fc.array(tie('value'), { maxLength: 20 }),
    // The library refuses a `__proto__` key, so that one is not plain (tested below).
    fc.dictionary(
      fc.string({ unit: 'binary-ascii', maxLength: 40 }).filter((key) => key !== '__proto__'),
      tie('value'),
      { maxKeys: 20 },
    ),
  ),
})).value;

describe('reading plain msgpack', () => {
  it('reads every plain value as the library decodes it', () => {
    fc.assert(
      fc.property(plain, (value) => {
        const bytes = encode(value);
        const read = readPlainMsgpack(bytes);
        expect(read).not.toBe(undefined);
        expect(same(read, decode(bytes))).toBe(true);
      }),
      { numRuns: 3_000 },
    );
  });

  it('reads 16-, 32- and 64-bit sizes and integers, float32 and both signs of zero', () => {
    const value = {
      big: Array.from({ length: 70_000 }, (_, index) => index % 7),
      many: Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`k${index}`, -index])),
      ints: [
        255,
        256,
        65_535,
        65_536,
        2 ** 32 - 1,
        2 ** 32,
        2 ** 53 - 1,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        -(2 ** 31),
        -(2 ** 31) - 1,
        -(2 ** 53),
      ],
      zeros: [0, -0],
      time: 1_796_130_226_169,
    };
    const bytes = encode(value);
    expect(same(readPlainMsgpack(bytes), decode(bytes))).toBe(true);
    const float32 = new Uint8Array([0xca, 0x3f, 0xc0, 0x00, 0x00]); // 1.5
    expect(readPlainMsgpack(float32)).toBe(1.5);
    const uint64 = new Uint8Array([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(readPlainMsgpack(uint64)).toBe(decode(uint64));
    const int64 = new Uint8Array([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    expect(readPlainMsgpack(int64)).toBe(decode(int64));
  });

  it('hands the same short string out again, and a different one for different bytes of the same hash slot', () => {
    const first = readPlainMsgpack(encode('user1234'));
    expect(readPlainMsgpack(encode('user1234'))).toBe(first);
    for (let index = 0; index < 200_000; index++) {
      const text = `u${index}`;
      expect(readPlainMsgpack(encode(text))).toBe(text);
    }
  });

  it('leaves bin, ext, non-ASCII strings, number keys, __proto__ and trailing bytes to the library', () => {
    for (const bytes of [
      encode(new Uint8Array([1, 2])),
      encode({ a: [1, new Uint8Array(3)] }),
      encode(new Date(0)),
      encode('héllo'),
      encode({ ключ: 1 }),
      new Uint8Array([0x81, 0x01, 0x02]), // {1: 2}
      new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode('__proto__'), 0x01]),
      new Uint8Array([0x01, 0x02]),
    ]) {
      expect(readPlainMsgpack(bytes)).toBe(undefined);
    }
  });

  it('never reads garbage differently from the library: undefined, or what it decodes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const read = readPlainMsgpack(bytes);
        if (read === undefined) return true;
        return same(read, decode(bytes));
      }),
      { numRuns: 20_000 },
    );
  });

  it('reads an envelope of four plain values into its parts, and refuses anything else', () => {
    fc.assert(
      fc.property(fc.array(plain, { minLength: 0, maxLength: 6 }), (items) => {
        const bytes = encode(items);
        const parts: EnvelopeParts = { version: 'x', key: 'x', time: 'x', value: 'x' };
        const read = readPlainEnvelope(bytes, parts);
        expect(read).toBe(items.length === 4);
        if (read) expect(same([parts.version, parts.key, parts.time, parts.value], decode(bytes))).toBe(true);
      }),
      { numRuns: 2_000 },
    );
    const parts: EnvelopeParts = { version: 0, key: 0, time: 0, value: 0 };
    expect(readPlainEnvelope(encode([1, 'k', 5, { a: 1 }, 'extra']), parts)).toBe(false);
    expect(readPlainEnvelope(new Uint8Array([...encode([1, 'k', 5, 1]), 0]), parts)).toBe(false);
    expect(readPlainEnvelope(encode([1, 'k', 5, new Uint8Array(2)]), parts)).toBe(false);
    expect(readPlainEnvelope(new Uint8Array(0), parts)).toBe(false);
  });
});
