import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareKeys, decodeKey, encodeKey, prefixUpperBound, type KeyPart } from '../state/key-encoding.js';
import { StateError } from '../state/errors.js';

// The tuple order the encoding must reproduce, written independently of the encoding:
// numbers before strings, numbers by value, strings by Unicode code point, shorter tuple first.
function compareTuples(a: readonly KeyPart[], b: readonly KeyPart[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (typeof x === 'number' && typeof y === 'string') return -1;
    if (typeof x === 'string' && typeof y === 'number') return 1;
    if (typeof x === 'number' && typeof y === 'number') {
      if (x !== y) return x < y ? -1 : 1;
      continue;
    }
    const xs = Array.from(x as string, (c) => c.codePointAt(0)!);
    const ys = Array.from(y as string, (c) => c.codePointAt(0)!);
    for (let j = 0; j < Math.min(xs.length, ys.length); j++) {
      if (xs[j] !== ys[j]) return xs[j]! - ys[j]!;
    }
    if (xs.length !== ys.length) return xs.length - ys.length;
  }
  return a.length - b.length;
}

const sign = (n: number) => Math.sign(n);

const keyPart: fc.Arbitrary<KeyPart> = fc.oneof(
  fc.double({ noNaN: true }).map((n) => n + 0),
  fc.integer({ min: -1000, max: 1000 }),
  // 'binary' covers every code point, including NUL (escaped) and astral characters.
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.constantFrom('', '\u0000', 'a', 'a\u0000', 'a\u0000b', '\uffff', '\u{10000}'),
);
const tuple = fc.array(keyPart, { maxLength: 4 });

describe('state key encoding', () => {
  it('round-trips every tuple of strings and numbers', () => {
    fc.assert(
      fc.property(tuple, (parts) => {
        expect(decodeKey(encodeKey(parts))).toEqual(parts);
      }),
      { numRuns: 2_000 },
    );
  });

  it('orders bytes exactly as tuples, including negative numbers, floats and NULs', () => {
    fc.assert(
      fc.property(tuple, tuple, (a, b) => {
        expect(sign(compareKeys(encodeKey(a), encodeKey(b)))).toBe(sign(compareTuples(a, b)));
      }),
      { numRuns: 5_000 },
    );
  });

  it('sorting by bytes equals sorting by tuple', () => {
    fc.assert(
      fc.property(fc.array(tuple, { maxLength: 50 }), (tuples) => {
        const byTuple = [...tuples].sort(compareTuples);
        const byBytes = tuples
          .map((parts) => ({ parts, bytes: encodeKey(parts) }))
          .sort((x, y) => compareKeys(x.bytes, y.bytes))
          .map((entry) => entry.parts);
        expect(byBytes.map((parts) => encodeKey(parts))).toEqual(byTuple.map((parts) => encodeKey(parts)));
      }),
    );
  });

  it('encodes a tuple as a byte prefix of every extension, bounded above by prefixUpperBound', () => {
    fc.assert(
      fc.property(tuple, fc.array(keyPart, { minLength: 1, maxLength: 3 }), tuple, (prefix, extension, other) => {
        const prefixBytes = encodeKey(prefix);
        const extended = encodeKey([...prefix, ...extension]);
        expect(Buffer.from(extended.subarray(0, prefixBytes.length)).equals(Buffer.from(prefixBytes))).toBe(true);
        const bound = prefixUpperBound(prefixBytes);
        expect(compareKeys(extended, bound)).toBeLessThan(0);
        expect(compareKeys(prefixBytes, extended)).toBeLessThan(0);
        // Any tuple that does not extend the prefix lies outside [prefix, bound).
        const otherBytes = encodeKey(other);
        const isExtension = other.length >= prefix.length && compareTuples(other.slice(0, prefix.length), prefix) === 0;
        const inRange = compareKeys(otherBytes, prefixBytes) >= 0 && compareKeys(otherBytes, bound) < 0;
        expect(inRange).toBe(isExtension);
      }),
      { numRuns: 2_000 },
    );
  });

  it('writes -0 as 0 and orders infinities at the ends', () => {
    expect(encodeKey([-0])).toEqual(encodeKey([0]));
    expect(compareKeys(encodeKey([-Infinity]), encodeKey([-Number.MAX_VALUE]))).toBeLessThan(0);
    expect(compareKeys(encodeKey([Infinity]), encodeKey([Number.MAX_VALUE]))).toBeGreaterThan(0);
    expect(compareKeys(encodeKey([-1.5]), encodeKey([-1]))).toBeLessThan(0);
    expect(compareKeys(encodeKey([2]), encodeKey([1.5]))).toBeGreaterThan(0);
  });

  it('rejects NaN and non-key values, and bytes that are no encoding', () => {
    expect(() => encodeKey([NaN])).toThrow(StateError);
    expect(() => encodeKey([true as unknown as string])).toThrow(StateError);
    expect(() => decodeKey(Uint8Array.of(0x10, 1, 2))).toThrow(StateError);
    expect(() => decodeKey(Uint8Array.of(0x20, 0x61))).toThrow(StateError);
    expect(() => decodeKey(Uint8Array.of(0x99))).toThrow(StateError);
  });

  it('handles strings longer than the scratch buffer', () => {
    const long = 'é\u0000'.repeat(5_000);
    expect(decodeKey(encodeKey(['k', long, 7]))).toEqual(['k', long, 7]);
  });
});
