// Which format archive segments use (issue 17): encode and decode 1M events of the bench shape
// `{user, ts, page}` (key = user, event time = ts, the envelope bytes as the stream holds them, the
// stream sequence and the JetStream timestamp) as
//
// - a columnar msgpack layout (one array per column, the message bytes concatenated with their
//   offsets) compressed with node:zlib (gzip, deflate-raw, brotli at quality 4: zstd is not in
//   Node 20's zlib), and
// - Parquet written by hyparquet-writer and read by hyparquet (snappy, and gzip through node:zlib).
//
// Decode means: bytes in, per-event columns out (sequences, keys, times, log times, and each
// event's message bytes as a view), what the archive reader hands the engine. Best of RUNS (3) each.
// Usage: npx tsx bench/archive-format.ts [events=1000000]
import {
  gunzipSync,
  gzipSync,
  brotliCompressSync,
  brotliDecompressSync,
  constants,
  deflateRawSync,
  inflateRawSync,
} from 'node:zlib';
import { decode, encode } from '@msgpack/msgpack';
import { parquetRead } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { encodeEvent } from '../protocol/index.js';
import { decodeSegment, encodeSegment, type SegmentEvents } from '../archive/segment-format.js';

const EVENTS = Number(process.argv[2] ?? 1_000_000);
const KEYS = 10_000;
const RUNS = Number(process.env.RUNS ?? 3);
const PAGES = 200;
const START_MS = Date.UTC(2026, 0, 1);

function benchEvents(count: number): SegmentEvents {
  const events: SegmentEvents = {
    sequences: new Float64Array(count),
    keys: new Array<string>(count),
    times: new Float64Array(count),
    logTimes: new Float64Array(count),
    data: new Array<Uint8Array>(count),
  };
  let state = 42;
  const random = () => (state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let index = 0; index < count; index++) {
    const user = `user-${Math.floor(random() * KEYS)}`;
    // Mostly in order, some up to 5 s late, as the replay benches produce.
    const ts = START_MS + index * 5 - Math.floor(random() * 5_000);
    const page = `/page/${Math.floor(random() * PAGES)}`;
    events.sequences[index] = index + 1;
    events.keys[index] = user;
    events.times[index] = ts;
    events.logTimes[index] = START_MS + index * 5 + 3;
    events.data[index] = encodeEvent({ key: user, time: ts, value: { user, ts, page } });
  }
  return events;
}

interface Candidate {
  name: string;
  encode(events: SegmentEvents): Uint8Array;
  decode(bytes: Uint8Array): SegmentEvents | Promise<SegmentEvents>;
}

/** Columnar msgpack: typed arrays as raw bytes, keys as one array, message bytes concatenated. */
function columnarMsgpack(
  name: string,
  compress: (bytes: Uint8Array) => Uint8Array,
  decompress: (bytes: Uint8Array) => Uint8Array,
): Candidate {
  return {
    name,
    encode(events) {
      let total = 0;
      for (const data of events.data) total += data.length;
      const values = new Uint8Array(total);
      const offsets = new Uint32Array(events.data.length + 1);
      let at = 0;
      for (let index = 0; index < events.data.length; index++) {
        values.set(events.data[index]!, at);
        at += events.data[index]!.length;
        offsets[index + 1] = at;
      }
      const asBytes = (array: Float64Array | Uint32Array) =>
        new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      return compress(
        encode({
          sequences: asBytes(events.sequences),
          keys: events.keys,
          times: asBytes(events.times),
          logTimes: asBytes(events.logTimes),
          offsets: asBytes(offsets),
          values,
        }),
      );
    },
    decode(bytes) {
      const columns = decode(decompress(bytes)) as Record<string, Uint8Array> & { keys: string[] };
      const float64 = (column: Uint8Array) => new Float64Array(new Uint8Array(column).buffer);
      const offsets = new Uint32Array(new Uint8Array(columns.offsets!).buffer);
      const data = new Array<Uint8Array>(columns.keys.length);
      for (let index = 0; index < data.length; index++)
        data[index] = columns.values!.subarray(offsets[index], offsets[index + 1]);
      return {
        sequences: float64(columns.sequences!),
        keys: columns.keys,
        times: float64(columns.times!),
        logTimes: float64(columns.logTimes!),
        data,
      };
    },
  };
}

/** Parquet through hyparquet-writer / hyparquet directly, before archive/segment-format.ts wraps it. */
function parquetRaw(name: string, codec: 'SNAPPY' | 'GZIP'): Candidate {
  return {
    name,
    encode(events) {
      return new Uint8Array(
        parquetWriteBuffer({
          codec,
          compressors: { GZIP: (bytes: Uint8Array) => gzipSync(bytes, { level: 6 }) },
          rowGroupSize: 1_000_000,
          columnData: [
            { name: 'sequence', data: Array.from(events.sequences, BigInt), type: 'INT64' },
            { name: 'key', data: events.keys, type: 'STRING' },
            { name: 'event_time', data: Array.from(events.times, BigInt), type: 'INT64' },
            { name: 'log_time', data: Array.from(events.logTimes, BigInt), type: 'INT64' },
            { name: 'data', data: events.data, type: 'BYTE_ARRAY' },
          ],
        }),
      );
    },
    async decode(bytes) {
      const columns = new Map<string, unknown[]>();
      const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      await parquetRead({
        file,
        utf8: false,
        compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)) },
        onChunk: ({ columnName, columnData }) => {
          const into = columns.get(columnName) ?? [];
          for (let index = 0; index < columnData.length; index++) into.push(columnData[index]);
          columns.set(columnName, into);
        },
      });
      const count = columns.get('sequence')!.length;
      return {
        sequences: Float64Array.from(columns.get('sequence') as bigint[], Number),
        keys: (columns.get('key') as Uint8Array[]).map((key) => Buffer.from(key).toString('utf8')),
        times: Float64Array.from(columns.get('event_time') as bigint[], Number),
        logTimes: Float64Array.from(columns.get('log_time') as bigint[], Number),
        data: (columns.get('data') as Uint8Array[]).slice(0, count),
      };
    },
  };
}

const candidates: Candidate[] = [
  columnarMsgpack(
    'msgpack columns + gzip(6)',
    (b) => gzipSync(b, { level: 6 }),
    (b) => gunzipSync(b),
  ),
  columnarMsgpack(
    'msgpack columns + deflate-raw(1)',
    (b) => deflateRawSync(b, { level: 1 }),
    (b) => inflateRawSync(b),
  ),
  columnarMsgpack(
    'msgpack columns + brotli(4)',
    (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } }),
    (b) => brotliDecompressSync(b),
  ),
  parquetRaw('parquet, writer defaults, snappy', 'SNAPPY'),
  parquetRaw('parquet, writer defaults, gzip', 'GZIP'),
  // The archive's own: encodings chosen per column, no statistics, decoded straight into columns.
  {
    name: 'parquet as archive/segment-format.ts',
    encode: (events) => encodeSegment(events),
    decode: (bytes) => decodeSegment(bytes),
  },
];

async function bestOf<T>(runs: number, work: () => T | Promise<T>): Promise<{ seconds: number; result: T }> {
  let best = Infinity;
  let result!: T;
  for (let run = 0; run < runs; run++) {
    const startedAt = performance.now();
    result = await work();
    best = Math.min(best, (performance.now() - startedAt) / 1000);
  }
  return { seconds: best, result };
}

const events = benchEvents(EVENTS);
let rawBytes = 0;
for (const data of events.data) rawBytes += data.length;
console.log(`${EVENTS} events, ${(rawBytes / 2 ** 20).toFixed(1)} MiB of message bytes, ${KEYS} keys`);
const rows: { name: string; encodeS: number; decodeS: number; bytes: number }[] = [];
for (const candidate of candidates) {
  const encoded = await bestOf(RUNS, () => candidate.encode(events));
  const decoded = await bestOf(RUNS, () => candidate.decode(encoded.result));
  const back = decoded.result;
  const last = EVENTS - 1;
  if (
    back.keys.length !== EVENTS ||
    back.keys[last] !== events.keys[last] ||
    back.times[last] !== events.times[last] ||
    back.sequences[last] !== events.sequences[last] ||
    back.logTimes[last] !== events.logTimes[last] ||
    Buffer.compare(back.data[last]!, events.data[last]!) !== 0
  )
    throw new Error(`${candidate.name}: decoded events differ from the encoded ones`);
  rows.push({ name: candidate.name, encodeS: encoded.seconds, decodeS: decoded.seconds, bytes: encoded.result.length });
  console.error(
    `${candidate.name}: encode ${encoded.seconds.toFixed(2)} s, decode ${decoded.seconds.toFixed(2)} s, ${encoded.result.length} bytes`,
  );
}
const fastestDecode = Math.min(...rows.map((row) => row.decodeS));
console.log('format                                  encode s  decode s  decode M ev/s  vs fastest  MiB   bytes/event');
for (const row of rows)
  console.log(
    `${row.name.padEnd(40)}${row.encodeS.toFixed(2).padStart(8)}${row.decodeS.toFixed(2).padStart(10)}${(EVENTS / row.decodeS / 1e6).toFixed(2).padStart(15)}${(row.decodeS / fastestDecode).toFixed(2).padStart(12)}${(row.bytes / 2 ** 20).toFixed(1).padStart(6)}${(row.bytes / EVENTS).toFixed(1).padStart(14)}`,
  );
