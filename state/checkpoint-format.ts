// The bytes of a checkpoint object: a sequence of msgpack frames, each `[rows, deletes]` where
// `rows` alternates key and value bytes (exactly as RocksDB holds them) and `deletes` lists keys.
// A full checkpoint is the frames of every row; a delta is the frames of one flush's changes.
// Restoring applies the objects of a manifest in order, frame by frame, so neither side ever
// holds a whole large state in memory.
import { Encoder, decodeMultiStream } from '@msgpack/msgpack';
import { StateError } from './errors.js';
import type { EncodedRow } from './task-store.js';

/** Rows per frame: big enough to amortise framing, small enough to stream. */
export const ROWS_PER_FRAME = 4_096;

export interface CheckpointFrame {
  puts: EncodedRow[];
  deletes: Uint8Array[];
}

const encoder = new Encoder();

export function encodeFrame(puts: readonly EncodedRow[], deletes: readonly Uint8Array[]): Uint8Array {
  const flat: Uint8Array[] = new Array<Uint8Array>(puts.length * 2);
  for (let index = 0; index < puts.length; index++) {
    flat[index * 2] = puts[index]![0];
    flat[index * 2 + 1] = puts[index]![1];
  }
  return encoder.encode([flat, deletes]);
}

/** Encodes a delta (one flush's changes) into one buffer of frames. */
export function encodeDelta(puts: readonly EncodedRow[], deletes: readonly Uint8Array[]): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let start = 0; start < puts.length; start += ROWS_PER_FRAME)
    frames.push(encodeFrame(puts.slice(start, start + ROWS_PER_FRAME), []));
  for (let start = 0; start < deletes.length; start += ROWS_PER_FRAME)
    frames.push(encodeFrame([], deletes.slice(start, start + ROWS_PER_FRAME)));
  return Buffer.concat(frames);
}

/** Decodes the frames of a checkpoint object as they arrive. */
export async function* decodeFrames(
  bytes: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
): AsyncGenerator<CheckpointFrame> {
  for await (const frame of decodeMultiStream(bytes)) {
    if (
      !Array.isArray(frame) ||
      frame.length !== 2 ||
      !Array.isArray(frame[0]) ||
      !Array.isArray(frame[1]) ||
      frame[0].length % 2 !== 0
    ) {
      throw new StateError('STATE_KEY_CORRUPT', 'checkpoint object holds a frame that is not [rows, deletes]');
    }
    const flat = frame[0] as unknown[];
    const puts: EncodedRow[] = new Array<EncodedRow>(flat.length / 2);
    for (let index = 0; index < puts.length; index++) {
      const key = flat[index * 2];
      const value = flat[index * 2 + 1];
      if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array)) {
        throw new StateError('STATE_KEY_CORRUPT', 'checkpoint frame holds a row that is not bytes');
      }
      puts[index] = [key, value];
    }
    const deletes = frame[1] as unknown[];
    if (!deletes.every((key) => key instanceof Uint8Array))
      throw new StateError('STATE_KEY_CORRUPT', 'checkpoint frame holds a delete that is not bytes');
    yield { puts, deletes: deletes as Uint8Array[] };
  }
}
