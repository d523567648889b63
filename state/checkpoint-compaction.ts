// Compaction of a task's chain of checkpoint objects: when a commit uploads a full snapshot
// instead of a delta, and the snapshot upload itself (streamed from a RocksDB scan). The objects a
// full snapshot supersedes, and leftovers of failed commits, are deleted best effort.
import type { ObjectStore } from '@nats-io/obj';
import { encodeFrame } from './checkpoint-format.js';
import type { CheckpointObject } from './checkpoint-manifest.js';
import type { TaskStore, WriteCapture } from './task-store.js';

/** Below this the chain of deltas is never compacted: a small state restores fast anyway. */
export const COMPACT_MIN_BYTES = 4 * 1024 * 1024;
/** A chain longer than this is compacted whatever its size (each object is a round trip on restore). */
export const COMPACT_MAX_OBJECTS = 64;

/** Whether a commit with `delta` after `objects` should upload a full snapshot instead of the delta. */
export function shouldCompact(
  objects: readonly CheckpointObject[],
  delta: WriteCapture,
  compactMinBytes: number,
): boolean {
  // The first commit of a task is its base: a full snapshot (of what is, for a new task, the first delta).
  if (objects.length === 0 || objects.length + 1 > COMPACT_MAX_OBJECTS) return true;
  const full = objects.find((object) => object.kind === 'full')?.bytes ?? 0;
  let deltas = 0;
  for (const object of objects) if (object.kind === 'delta') deltas += object.bytes;
  // Estimate the new delta by its row count; exact enough to decide when to compact.
  const estimated = (delta.puts.length + delta.deletes.length) * 32;
  return deltas + estimated > Math.max(full, compactMinBytes);
}

/** Uploads every row of `store` as one full-snapshot object named `name`. */
export async function uploadFullSnapshot(
  objects: ObjectStore,
  store: TaskStore,
  name: string,
): Promise<CheckpointObject> {
  let bytes = 0;
  let puts = 0;
  const batches = store.scanEncodedBatches();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await batches.next();
      if (next.done) {
        controller.close();
        return;
      }
      const frame = encodeFrame(next.value, []);
      bytes += frame.length;
      puts += next.value.length;
      controller.enqueue(frame);
    },
  });
  await objects.put({ name }, body);
  return { name, kind: 'full', bytes, puts, deletes: 0 };
}

export async function deleteObjects(objects: ObjectStore, names: readonly string[]): Promise<void> {
  // Best effort: an object left behind is found again by collectGarbage() at the next claim.
  await Promise.all(names.map((name) => objects.delete(name).catch(() => undefined)));
}
