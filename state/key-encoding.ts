// Order-preserving encoding of key tuples into RocksDB keys.
//
// RocksDB compares keys bytewise, so prefix scans and range deletes over state rows only work if
// byte order equals tuple order. fdb-tuple (the FoundationDB tuple layer) was the obvious library,
// but it encodes integral numbers as FDB integers and other numbers as doubles, with different
// type codes: the bytes of 2 sort before those of 1.5. Event times and window bounds mix both, so
// this is a small encoding of our own in the same spirit.
//
// Format, per part:
//   number: 0x10, then the IEEE-754 float64 big-endian with the sign bit flipped for
//           non-negative numbers and every bit flipped for negative ones (so bytes order like
//           values; -0 is written as 0; NaN is rejected).
//   string: 0x20, then the UTF-8 bytes with each 0x00 written as 0x00 0xFF, then 0x00.
// Hence numbers sort before strings, strings sort by Unicode code point (UTF-8 byte order), and
// the encoding of a tuple is a byte prefix of the encodings of all its extensions.
import { StateError } from './errors.js';

export type KeyPart = string | number;

const NUMBER_TAG = 0x10;
const STRING_TAG = 0x20;
const STRING_END = 0x00;
const ESCAPED_ZERO = 0xff;
/** Greater than every tag, so prefix + 0xFF bounds all extensions of prefix from above. */
const ABOVE_ALL_TAGS = 0xff;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

// One scratch buffer grown on demand: encodeKey runs once per dirty row at flush, and a copy of
// the used bytes is the only allocation it makes.
let scratch = new Uint8Array(256);
let scratchView = new DataView(scratch.buffer);

function ensureCapacity(bytes: number): void {
  if (bytes <= scratch.length) return;
  let size = scratch.length * 2;
  while (size < bytes) size *= 2;
  const grown = new Uint8Array(size);
  grown.set(scratch);
  scratch = grown;
  scratchView = new DataView(scratch.buffer);
}

/** Encodes a tuple so that byte order of encodings equals tuple order (see file comment). */
export function encodeKey(parts: readonly KeyPart[]): Uint8Array {
  let at = 0;
  for (const part of parts) {
    if (typeof part === 'number') {
      if (Number.isNaN(part))
        throw new StateError('STATE_KEY_INVALID', 'key part is NaN, which has no place in key order');
      ensureCapacity(at + 9);
      scratch[at++] = NUMBER_TAG;
      // `part + 0` turns -0 into 0 so that 0 and -0 are one key.
      scratchView.setFloat64(at, part + 0);
      if ((scratch[at]! & 0x80) !== 0) {
        for (let i = at; i < at + 8; i++) scratch[i] = ~scratch[i]! & 0xff;
      } else {
        scratch[at] = scratch[at]! | 0x80;
      }
      at += 8;
    } else if (typeof part === 'string') {
      // UTF-8 needs at most 3 bytes per UTF-16 unit; an escaped NUL needs 2; plus tag and end.
      ensureCapacity(at + 2 + part.length * 3);
      scratch[at++] = STRING_TAG;
      const { written } = textEncoder.encodeInto(part, scratch.subarray(at));
      let zeros = 0;
      for (let i = at; i < at + written; i++) if (scratch[i] === 0) zeros++;
      if (zeros > 0) {
        // Escape in place, back to front, so each byte moves once.
        let from = at + written - 1;
        let to = from + zeros;
        while (from >= at) {
          const byte = scratch[from--]!;
          if (byte === 0) scratch[to--] = ESCAPED_ZERO;
          scratch[to--] = byte;
        }
      }
      at += written + zeros;
      scratch[at++] = STRING_END;
    } else {
      throw new StateError('STATE_KEY_INVALID', `key part must be a string or a number, found ${typeof part}`);
    }
  }
  return scratch.slice(0, at);
}

/** Inverse of encodeKey. Throws StateError STATE_KEY_CORRUPT for bytes encodeKey cannot produce. */
export function decodeKey(bytes: Uint8Array): KeyPart[] {
  const parts: KeyPart[] = [];
  let at = 0;
  while (at < bytes.length) {
    const tag = bytes[at++];
    if (tag === NUMBER_TAG) {
      if (at + 8 > bytes.length) throw corrupt(bytes, at, 'a number needs 8 bytes');
      const number = new Uint8Array(8);
      for (let i = 0; i < 8; i++) number[i] = bytes[at + i]!;
      if ((number[0]! & 0x80) !== 0) number[0] = number[0]! & 0x7f;
      else for (let i = 0; i < 8; i++) number[i] = ~number[i]! & 0xff;
      parts.push(new DataView(number.buffer).getFloat64(0));
      at += 8;
    } else if (tag === STRING_TAG) {
      const start = at;
      let escapes = 0;
      for (;;) {
        if (at >= bytes.length) throw corrupt(bytes, start, 'a string has no end byte');
        if (bytes[at] === 0) {
          if (bytes[at + 1] === ESCAPED_ZERO) {
            escapes++;
            at += 2;
            continue;
          }
          break;
        }
        at++;
      }
      let utf8 = bytes.subarray(start, at);
      if (escapes > 0) {
        const unescaped = new Uint8Array(utf8.length - escapes);
        let to = 0;
        for (let from = 0; from < utf8.length; from++) {
          unescaped[to++] = utf8[from]!;
          if (utf8[from] === 0) from++;
        }
        utf8 = unescaped;
      }
      try {
        parts.push(textDecoder.decode(utf8));
      } catch (error) {
        throw corrupt(bytes, start, 'a string is not valid UTF-8', error);
      }
      at++; // the end byte
    } else {
      throw corrupt(bytes, at - 1, `unknown tag ${String(tag)}`);
    }
  }
  return parts;
}

/**
 * The smallest byte string above every encoding that starts with `prefix` (for an exclusive upper
 * bound in scans and range deletes). Works for any prefix that ends on a part boundary: what
 * follows such a prefix is a tag, and every tag is below 0xFF.
 */
export function prefixUpperBound(prefix: Uint8Array): Uint8Array {
  const bound = new Uint8Array(prefix.length + 1);
  bound.set(prefix);
  bound[prefix.length] = ABOVE_ALL_TAGS;
  return bound;
}

/** Bytewise comparison, the order RocksDB's default comparator uses. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const difference = a[i]! - b[i]!;
    if (difference !== 0) return difference;
  }
  return a.length - b.length;
}

function corrupt(bytes: Uint8Array, at: number, reason: string, cause?: unknown): StateError {
  return new StateError(
    'STATE_KEY_CORRUPT',
    `state key is not a Kappa key encoding at byte ${at} of ${bytes.length}: ${reason}`,
    { cause },
  );
}
