// What a repartition topic holds: events a route task keyed (with where they came from and the
// upstream watermark after them) and watermark marks. The keyed stage takes the minimum over its
// upstream partitions' watermarks, as Flink's operators do across a shuffle, and drops what it has
// already seen from an upstream partition (a route task re-publishing after a restart).
//   event: [major, 'e', source, partition, sequence, watermark, key, time, value]
//   mark:  [major, 'w', source, partition, sequence, watermark, idle]
// `source` indexes the plan's sources; `sequence` is the upstream stream sequence; a watermark
// before the first event (−∞) is null. A route task stores a batch's records for one downstream
// partition as one message, a bundle of the records' bytes (bin), in order:
//   bundle: [major, 'b', [record, record, …]]
// so the hop costs the log one stored message per batch and partition, not one per event (a
// JetStream publish costs nats-server ≈ 20 µs, bench/README.md "Repartition hop").
import { Decoder, Encoder } from '@msgpack/msgpack';
import { describe } from './event.js';
import { ProtocolError } from './errors.js';
import { PROTOCOL_MAJOR } from './version.js';

/** Where a routed record came from: the upstream partition of a source, and its sequence there. */
export interface Upstream {
  source: number;
  partition: number;
  sequence: number;
  /** The upstream partition's watermark after this record (−Infinity before its first event). */
  watermarkMs: number;
}

export interface RoutedEvent extends Upstream {
  kind: 'event';
  key: string;
  time: number;
  value: unknown;
}

/**
 * A watermark with no event: sent to every downstream partition when an upstream partition's
 * watermark advanced (a partition that gets no events must still see time pass). `idle`: the
 * upstream partition has had no event for the job's idle timeout, so it is left out of the minimum
 * until its next event (Flink's idle sources).
 */
export interface WatermarkMark extends Upstream {
  kind: 'mark';
  idle: boolean;
}

export type RoutedRecord = RoutedEvent | WatermarkMark;

const encoder = new Encoder();
const decoder = new Decoder();

function watermarkOrNull(watermarkMs: number): number | null {
  return Number.isFinite(watermarkMs) ? watermarkMs : null;
}

export function encodeRoutedEvent(event: Omit<RoutedEvent, 'kind'>): Uint8Array {
  return encoder.encode([
    PROTOCOL_MAJOR,
    'e',
    event.source,
    event.partition,
    event.sequence,
    watermarkOrNull(event.watermarkMs),
    event.key,
    event.time,
    event.value,
  ]);
}

export function encodeWatermarkMark(mark: Omit<WatermarkMark, 'kind'>): Uint8Array {
  return encoder.encode([
    PROTOCOL_MAJOR,
    'w',
    mark.source,
    mark.partition,
    mark.sequence,
    watermarkOrNull(mark.watermarkMs),
    mark.idle,
  ]);
}

/** The records of a bundle, each as encodeRoutedEvent or encodeWatermarkMark gave it. */
export function encodeRoutedBundle(records: readonly Uint8Array[]): Uint8Array {
  return encoder.encode([PROTOCOL_MAJOR, 'b', records]);
}

/** A msgpack fixarray of 3 starts a bundle; a record is an array of 7 or 9. */
const BUNDLE_FIRST_BYTE = 0x93;

/**
 * The records a repartition-topic message holds, as views of its bytes: a bundle's in order, or
 * the message itself when it is one record (`kappa run` hands records over one at a time). A
 * malformed bundle is a ProtocolError; a record is checked when decodeRoutedRecord reads it.
 */
export function routedRecordsOf(bytes: Uint8Array): Uint8Array[] {
  if (bytes[0] !== BUNDLE_FIRST_BYTE) return [bytes];
  let decoded: unknown;
  try {
    decoded = decoder.decode(bytes);
  } catch (error) {
    throw new ProtocolError('PROTOCOL_GARBAGE', `routed bundle is not msgpack: ${(error as Error).message}`);
  }
  const [major, kind, records] = decoded as unknown[];
  if (major !== PROTOCOL_MAJOR) {
    throw new ProtocolError('PROTOCOL_VERSION', `routed bundle has protocol version ${String(major)}`);
  }
  if (kind !== 'b' || !Array.isArray(records) || !records.every((record) => record instanceof Uint8Array)) {
    throw new ProtocolError('PROTOCOL_SCHEMA', `expected a routed bundle of records, found ${describe(decoded)}`);
  }
  return records as Uint8Array[];
}

/** Decodes a repartition-topic record; anything else is a ProtocolError saying what was found. */
export function decodeRoutedRecord(bytes: Uint8Array): RoutedRecord {
  let decoded: unknown;
  try {
    decoded = decoder.decode(bytes);
  } catch (error) {
    throw new ProtocolError('PROTOCOL_GARBAGE', `routed record is not msgpack: ${(error as Error).message}`);
  }
  if (!Array.isArray(decoded) || decoded.length < 7) {
    throw new ProtocolError('PROTOCOL_GARBAGE', `expected a routed record array, found ${describe(decoded)}`);
  }
  const [major, kind, source, partition, sequence, watermark] = decoded as unknown[];
  if (major !== PROTOCOL_MAJOR) {
    throw new ProtocolError('PROTOCOL_VERSION', `routed record has protocol version ${String(major)}`);
  }
  if (
    !isCount(source) ||
    !isCount(partition) ||
    !isCount(sequence) ||
    (watermark !== null && (typeof watermark !== 'number' || !Number.isFinite(watermark)))
  ) {
    throw new ProtocolError('PROTOCOL_SCHEMA', 'routed record has a malformed upstream position or watermark');
  }
  const upstream = { source, partition, sequence, watermarkMs: watermark ?? -Infinity };
  if (kind === 'w') return { kind: 'mark', ...upstream, idle: decoded[6] === true };
  const [, , , , , , key, time, value] = decoded as unknown[];
  if (kind !== 'e' || typeof key !== 'string' || typeof time !== 'number' || !Number.isFinite(time)) {
    throw new ProtocolError('PROTOCOL_SCHEMA', `routed record of kind ${String(kind)} is malformed`);
  }
  return { kind: 'event', ...upstream, key, time, value };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}
