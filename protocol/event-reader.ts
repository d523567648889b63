// A fast reader of what event envelopes are made of: the msgpack subset of plain data (nil,
// booleans, numbers, ASCII strings, arrays, maps with string keys), read straight from the bytes.
// @msgpack/msgpack's Decoder builds a DataView and resets its state per call and a new string per
// string, which cost a replaying worker ≈ 0.45 µs per event (bench/README.md "Per-event path").
// Anything outside the subset (bin, ext, non-ASCII strings, number map keys, `__proto__`, bad or
// trailing bytes) is not read here: readPlainMsgpack returns undefined and the caller decodes the
// bytes with the library, so every result is the library's (test/event-reader.test.ts).

/** Thrown inside the reader when the bytes leave the subset; never escapes readPlainMsgpack. */
const OUTSIDE = new Error('outside the plain msgpack subset');

/** Nesting deeper than this goes to the library (which keeps its own stack), not to ours. */
const MAX_DEPTH = 64;

let bytes: Uint8Array = new Uint8Array(0);
let position = 0;
let end = 0;

const float64 = new Float64Array(1);
const float64Bytes = new Uint8Array(float64.buffer);
const float32 = new Float32Array(1);
const float32Bytes = new Uint8Array(float32.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Short strings recur (keys, map keys, categories): a direct-mapped cache by their bytes' hash
 * hands out the same string again instead of building one per event.
 */
const CACHE_SLOTS = 1 << 16;
const CACHED_MAX_BYTES = 32;
const cache: (string | undefined)[] = new Array<string | undefined>(CACHE_SLOTS).fill(undefined);
const charCodes: number[] = [];

/** The value msgpack-encoded in `data`, or undefined when it is not all in the plain subset. */
export function readPlainMsgpack(data: Uint8Array): unknown {
  bytes = data;
  position = 0;
  end = data.length;
  try {
    const value = readValue(0);
    return position === end ? value : undefined;
  } catch (error) {
    if (error === OUTSIDE) return undefined;
    throw error;
  } finally {
    bytes = EMPTY; // holds no caller's buffer after the call
  }
}

const EMPTY = new Uint8Array(0);

/** The four parts of an event envelope as read, before they are checked (protocol/event.ts). */
export interface EnvelopeParts {
  version: unknown;
  key: unknown;
  time: unknown;
  value: unknown;
}

/**
 * Reads an envelope, an array of four plain values, into `into` without building the array; false
 * (and `into` unspecified) when the bytes are anything else, which the caller then decodes with the library.
 */
export function readPlainEnvelope(data: Uint8Array, into: EnvelopeParts): boolean {
  if (data.length === 0 || data[0] !== 0x94) return false; // fixarray of 4
  bytes = data;
  position = 1;
  end = data.length;
  try {
    into.version = readValue(1);
    into.key = readValue(1);
    into.time = readValue(1);
    into.value = readValue(1);
    return position === end;
  } catch (error) {
    if (error === OUTSIDE) return false;
    throw error;
  } finally {
    bytes = EMPTY;
  }
}

function readValue(depth: number): unknown {
  if (position >= end) throw OUTSIDE;
  const head = bytes[position++]!;
  if (head < 0x80) return head; // positive fixint
  if (head < 0x90) return readMap(head - 0x80, depth);
  if (head < 0xa0) return readArray(head - 0x90, depth);
  if (head < 0xc0) return readString(head - 0xa0);
  if (head >= 0xe0) return head - 0x100; // negative fixint
  switch (head) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xca:
      return readFloat32();
    case 0xcb:
      return readFloat64();
    case 0xcc:
      return readUint(1);
    case 0xcd:
      return readUint(2);
    case 0xce:
      return readUint(4);
    case 0xcf: {
      // As the library reads 64-bit integers without BigInt: high × 2^32 + low, in doubles.
      const high = readUint(4);
      return high * 4294967296 + readUint(4);
    }
    case 0xd0:
      return (readUint(1) << 24) >> 24;
    case 0xd1:
      return (readUint(2) << 16) >> 16;
    case 0xd2:
      return readUint(4) | 0;
    case 0xd3: {
      const high = readUint(4) | 0;
      return high * 4294967296 + readUint(4);
    }
    case 0xd9:
      return readString(readUint(1));
    case 0xda:
      return readString(readUint(2));
    case 0xdb:
      return readString(readUint(4));
    case 0xdc:
      return readArray(readUint(2), depth);
    case 0xdd:
      return readArray(readUint(4), depth);
    case 0xde:
      return readMap(readUint(2), depth);
    case 0xdf:
      return readMap(readUint(4), depth);
    default:
      throw OUTSIDE; // bin, ext, and the byte msgpack never uses
  }
}

/** A big-endian unsigned integer of `size` bytes (1, 2 or 4). */
function readUint(size: number): number {
  if (position + size > end) throw OUTSIDE;
  let value = 0;
  for (let index = 0; index < size; index++) value = value * 256 + bytes[position++]!;
  return value;
}

function readFloat64(): number {
  if (position + 8 > end) throw OUTSIDE;
  for (let index = 0; index < 8; index++) float64Bytes[littleEndian ? 7 - index : index] = bytes[position++]!;
  return float64[0]!;
}

function readFloat32(): number {
  if (position + 4 > end) throw OUTSIDE;
  for (let index = 0; index < 4; index++) float32Bytes[littleEndian ? 3 - index : index] = bytes[position++]!;
  return float32[0]!;
}

function readArray(size: number, depth: number): unknown[] {
  // Each element takes a byte at least: a size beyond the bytes left is bad input (the library's to report).
  if (size > end - position || depth >= MAX_DEPTH) throw OUTSIDE;
  const array = new Array<unknown>(size);
  for (let index = 0; index < size; index++) array[index] = readValue(depth + 1);
  return array;
}

function readMap(size: number, depth: number): Record<string, unknown> {
  if (size * 2 > end - position || depth >= MAX_DEPTH) throw OUTSIDE;
  const map: Record<string, unknown> = {};
  for (let index = 0; index < size; index++) {
    const key = readMapKey();
    map[key] = readValue(depth + 1);
  }
  return map;
}

function readMapKey(): string {
  if (position >= end) throw OUTSIDE;
  const head = bytes[position++]!;
  let key: string;
  if (head >= 0xa0 && head < 0xc0) key = readString(head - 0xa0);
  else if (head === 0xd9) key = readString(readUint(1));
  else if (head === 0xda) key = readString(readUint(2));
  else if (head === 0xdb) key = readString(readUint(4));
  else throw OUTSIDE; // number keys and the library's refusals
  if (key === '__proto__') throw OUTSIDE;
  return key;
}

/** An ASCII string of `length` bytes at the position; anything else is outside the subset. */
function readString(length: number): string {
  const from = position;
  const to = from + length;
  if (to > end) throw OUTSIDE;
  let hash = 0x811c9dc5;
  for (let index = from; index < to; index++) {
    const byte = bytes[index]!;
    if (byte > 0x7f) throw OUTSIDE;
    hash = Math.imul(hash ^ byte, 0x01000193);
  }
  position = to;
  if (length > CACHED_MAX_BYTES) return build(from, to);
  const slot = hash & (CACHE_SLOTS - 1);
  const cached = cache[slot];
  if (cached !== undefined && cached.length === length && sameChars(cached, from)) return cached;
  const built = build(from, to);
  cache[slot] = built;
  return built;
}

function sameChars(text: string, from: number): boolean {
  for (let index = 0; index < text.length; index++) if (text.charCodeAt(index) !== bytes[from + index]) return false;
  return true;
}

function build(from: number, to: number): string {
  let text = '';
  // fromCharCode takes its arguments from a reused array, a chunk at a time (argument count limits).
  for (let chunk = from; chunk < to; chunk += 4096) {
    const chunkEnd = Math.min(to, chunk + 4096);
    charCodes.length = chunkEnd - chunk;
    for (let index = chunk; index < chunkEnd; index++) charCodes[index - chunk] = bytes[index]!;
    text += String.fromCharCode.apply(null, charCodes);
  }
  return text;
}
