// The segment format: one sealed range of one partition as a Parquet file (chosen by measurement,
// bench/archive-format.ts: its decode is within reach of the fastest candidate, and DuckDB or
// Spark read the cold tier directly). Written by hyparquet-writer, read by hyparquet.
//
// Columns, one row per message of the range in sequence order:
//   sequence    INT64   stream sequence (the partition offset)
//   key         STRING  the envelope's key (null when the message is not an event envelope)
//   event_time  INT64   the envelope's event time, ms since the epoch (null likewise)
//   log_time    INT64   the JetStream timestamp, ms since the epoch (the far-future guard's reference)
//   data        BINARY  the message bytes exactly as the stream held them, so the engine decodes
//                       what it would have read from the stream (a bad message stays bad)
// The range (partition, first/last sequence, event-time bounds, count) is also in the file's
// key-value metadata under `kappa.segment`, so a file found without its catalog says what it is.
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { parquetMetadata, parquetRead } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { z } from 'zod';
import { decodeEvent, KappaError } from '../protocol/index.js';

/** A partition's messages as columns, in sequence order. */
export interface SegmentEvents {
  sequences: Float64Array;
  /** null: the message is not an event envelope. */
  keys: (string | null)[];
  /** NaN: the message is not an event envelope. */
  times: Float64Array;
  logTimes: Float64Array;
  data: Uint8Array[];
}

/** What the catalog records of a segment; the same fields sit in the file's metadata. */
export const SegmentIndexSchema = z.object({
  /** Object name in the segment store. */
  name: z.string(),
  topic: z.string(),
  partition: z.number().int().nonnegative(),
  /** The range the segment covers: the previous segment's last + 1 (1 for the first) … its last message. */
  firstSequence: z.number().int().positive(),
  lastSequence: z.number().int().positive(),
  /** Messages in the range (fewer than its length when the stream has holes). */
  count: z.number().int().nonnegative(),
  /** Event-time bounds of the range's event envelopes (ms); null when none decodes. */
  minEventTimeMs: z.number().nullable(),
  maxEventTimeMs: z.number().nullable(),
  /** JetStream timestamp of the range's newest message (ms): what hot retention by age compares. */
  maxLogTimeMs: z.number(),
  /** Size of the segment object. */
  bytes: z.number().int().nonnegative(),
  /**
   * An upper bound on what the range occupies in the stream (message bytes, subject, headers and
   * a per-message overhead larger than the server's): hot retention by bytes subtracts it, so the
   * stream never keeps less than the policy says.
   */
  streamBytes: z.number().int().nonnegative(),
  /** sha256 of the segment object, hex. */
  checksum: z.string(),
  /** ISO-8601. */
  sealedAt: z.string(),
});
export type SegmentIndex = z.infer<typeof SegmentIndexSchema>;

const METADATA_KEY = 'kappa.segment';

/** The segment's object name: per topic and partition, ordered by range when listed. */
export function segmentName(topic: string, partition: number, firstSequence: number, lastSequence: number): string {
  const pad = (sequence: number) => String(sequence).padStart(20, '0');
  return `${topic}/${partition}/${pad(firstSequence)}-${pad(lastSequence)}.parquet`;
}

/** The prefix of every segment object of one partition. */
export function partitionPrefix(topic: string, partition: number): string {
  return `${topic}/${partition}/`;
}

/** Columns of raw messages: key and event time read from each envelope (null/NaN when it is none). */
export function segmentEventsOf(
  messages: readonly { sequence: number; logTimeMs: number; data: Uint8Array }[],
): SegmentEvents {
  const events: SegmentEvents = {
    sequences: new Float64Array(messages.length),
    keys: new Array<string | null>(messages.length),
    times: new Float64Array(messages.length),
    logTimes: new Float64Array(messages.length),
    data: new Array<Uint8Array>(messages.length),
  };
  for (let index = 0; index < messages.length; index++) {
    const message = messages[index]!;
    events.sequences[index] = message.sequence;
    events.logTimes[index] = message.logTimeMs;
    events.data[index] = message.data;
    try {
      const envelope = decodeEvent(message.data);
      events.keys[index] = envelope.key;
      events.times[index] = envelope.time;
    } catch {
      events.keys[index] = null;
      events.times[index] = NaN;
    }
  }
  return events;
}

/** What a segment's metadata says of its range (the index without store-given fields). */
export type SegmentRange = Omit<SegmentIndex, 'name' | 'bytes' | 'checksum' | 'sealedAt'>;

export function encodeSegment(events: SegmentEvents, range?: SegmentRange): Uint8Array {
  const count = events.sequences.length;
  const sequences = new BigInt64Array(count);
  const times: (bigint | null)[] = new Array(count);
  const logTimes = new BigInt64Array(count);
  for (let index = 0; index < count; index++) {
    sequences[index] = BigInt(events.sequences[index]!);
    const time = events.times[index]!;
    times[index] = Number.isNaN(time) ? null : BigInt(Math.trunc(time));
    logTimes[index] = BigInt(Math.trunc(events.logTimes[index]!));
  }
  return new Uint8Array(
    parquetWriteBuffer({
      codec: 'SNAPPY',
      statistics: false,
      // One row group: a segment is read whole.
      rowGroupSize: Math.max(count, 1),
      kvMetadata: range ? [{ key: METADATA_KEY, value: JSON.stringify(range) }] : [],
      createdBy: 'kappa archive',
      columnData: [
        // Encodings chosen, not sampled: the writer's dictionary trial and statistics over 1M
        // byte arrays cost more than the whole rest of the encode (bench/archive-format.ts).
        { name: 'sequence', data: sequences, type: 'INT64', nullable: false, encoding: 'DELTA_BINARY_PACKED' },
        { name: 'key', data: events.keys, type: 'STRING', encoding: 'RLE_DICTIONARY' },
        { name: 'event_time', data: times, type: 'INT64', encoding: 'DELTA_BINARY_PACKED' },
        { name: 'log_time', data: logTimes, type: 'INT64', nullable: false, encoding: 'DELTA_BINARY_PACKED' },
        { name: 'data', data: events.data, type: 'BYTE_ARRAY', nullable: false, encoding: 'PLAIN', statistics: false },
      ],
      compressors: { GZIP: (bytes: Uint8Array) => gzipSync(bytes) },
    }),
  );
}

/** A segment's columns; a replay reads the messages as the stream held them and needs no others. */
export type SegmentColumn = 'sequence' | 'key' | 'event_time' | 'log_time' | 'data';
export const REPLAY_COLUMNS: readonly SegmentColumn[] = ['sequence', 'log_time', 'data'];

/**
 * The columns of a segment file, whole (a segment is decoded at once, never row by row); only
 * `columns` when given (the others are left null / NaN).
 */
export async function decodeSegment(bytes: Uint8Array, columns?: readonly SegmentColumn[]): Promise<SegmentEvents> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const count = Number(parquetMetadata(file).num_rows);
  const events: SegmentEvents = {
    sequences: new Float64Array(count),
    keys: new Array<string | null>(count).fill(null),
    times: new Float64Array(count).fill(NaN),
    logTimes: new Float64Array(count),
    data: new Array<Uint8Array>(count),
  };
  const utf8 = new TextDecoder();
  // Each chunk straight into its column: no intermediate arrays.
  const into: Record<string, (value: unknown, row: number) => void> = {
    sequence: (value, row) => (events.sequences[row] = Number(value)),
    key: (value, row) =>
      (events.keys[row] =
        value === null || value === undefined
          ? null
          : typeof value === 'string'
            ? value
            : utf8.decode(value as Uint8Array)),
    event_time: (value, row) => (events.times[row] = value === null || value === undefined ? NaN : Number(value)),
    log_time: (value, row) => (events.logTimes[row] = Number(value)),
    data: (value, row) => (events.data[row] = value as Uint8Array),
  };
  await parquetRead({
    file,
    ...(columns === undefined ? {} : { columns: [...columns] }),
    // Byte arrays stay bytes (the data column).
    utf8: false,
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)) },
    onChunk: ({ columnName, columnData, rowStart }) => {
      const set = into[columnName];
      if (!set) return;
      const end = Math.min(columnData.length, count - rowStart);
      for (let index = 0; index < end; index++) set(columnData[index], rowStart + index);
    },
  });
  return events;
}

/** The range a segment file's metadata records, or undefined when it has none. */
export function segmentRangeOf(bytes: Uint8Array): SegmentRange | undefined {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const entry = parquetMetadata(file).key_value_metadata?.find((kv) => kv.key === METADATA_KEY);
  return entry?.value === undefined ? undefined : (JSON.parse(entry.value) as SegmentRange);
}

export function checksumOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A segment whose bytes are not what the catalog recorded: never replayed. */
export class SegmentCorruptError extends KappaError {
  constructor(name: string, expected: string, found: string) {
    super(
      'ARCHIVE_INVALID',
      `archive segment ${name}: checksum ${found} differs from the catalog's ${expected} (the object was changed or damaged)`,
    );
  }
}
