// What a repartition topic holds: events a route task keyed (with where they came from and the
// upstream watermark after them) and watermark marks. The keyed stage takes the minimum over its
// upstream partitions' watermarks, as Flink's operators do across a shuffle, and drops what it has
// already seen from an upstream partition (a route task re-publishing after a restart).
//   event: [major, 'e', source, partition, sequence, watermark, key, time, value]
//   mark:  [major, 'w', source, partition, sequence, watermark, idle]
// `source` indexes the plan's sources; `sequence` is the upstream stream sequence; a watermark
// before the first event (−∞) is null.
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
