// The event envelope: key, event time (ms since epoch) and value, msgpack-encoded as the array
// [major version, key, time, value]. An array, not a map, keeps the hot path small and fast.
import { Decoder, Encoder } from '@msgpack/msgpack';
import { ProtocolError } from './errors.js';
import { readPlainEnvelope, type EnvelopeParts } from './event-reader.js';
import { PROTOCOL_MAJOR } from './version.js';

export interface EventEnvelope<V = unknown> {
  key: string;
  /** Event time in ms since the epoch. */
  time: number;
  value: V;
}

// One encoder and decoder per thread, reused: msgpack's own advice for throughput.
const encoder = new Encoder();
const decoder = new Decoder();

export function encodeEvent(event: EventEnvelope): Uint8Array {
  return encoder.encode([PROTOCOL_MAJOR, event.key, event.time, event.value]);
}

/**
 * Decodes one event. Throws ProtocolError (never anything else) for bytes that are not msgpack,
 * not an envelope, from a newer major version, or with a missing key or time.
 */
export function decodeEvent(bytes: Uint8Array): EventEnvelope {
  return decodeEventInto(bytes, { key: '', time: 0, value: undefined });
}

/** The parts of the envelope being decoded (one object, reused). */
const parts: EnvelopeParts = { version: undefined, key: undefined, time: undefined, value: undefined };

/**
 * decodeEvent into `into` (returned), so a batch's decoding reuses one envelope object; the
 * caller takes its fields before the next call.
 */
export function decodeEventInto(bytes: Uint8Array, into: EventEnvelope): EventEnvelope {
  // The plain subset straight from the bytes (event-reader.ts); the library for anything else.
  if (!readPlainEnvelope(bytes, parts)) {
    let decoded: unknown;
    try {
      decoded = decoder.decode(bytes);
    } catch (error) {
      throw new ProtocolError('PROTOCOL_GARBAGE', `event bytes are not msgpack: ${(error as Error).message}`);
    }
    if (!Array.isArray(decoded) || decoded.length !== 4) {
      throw new ProtocolError(
        'PROTOCOL_GARBAGE',
        `expected an event envelope [version, key, time, value], found ${describe(decoded)}`,
      );
    }
    [parts.version, parts.key, parts.time, parts.value] = decoded as [unknown, unknown, unknown, unknown];
  }
  const { version, key, time, value } = parts;
  parts.value = undefined; // holds no event after the call
  if (typeof version !== 'number' || version > PROTOCOL_MAJOR || version < 1) {
    throw new ProtocolError(
      'PROTOCOL_VERSION',
      `event envelope has protocol version ${String(version)}, this reader understands ${PROTOCOL_MAJOR}`,
    );
  }
  if (typeof key !== 'string') {
    throw new ProtocolError('PROTOCOL_SCHEMA', `event key must be a string, found ${describe(key)}`);
  }
  if (typeof time !== 'number' || !Number.isFinite(time)) {
    throw new ProtocolError('PROTOCOL_SCHEMA', `event time must be a finite number of ms, found ${describe(time)}`);
  }
  into.key = key;
  into.time = time;
  into.value = value;
  return into;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}
