// The committed description of a task's latest checkpoint, stored as JSON in the KV bucket
// `buckets.checkpoints` under the task's key. The state itself lives in Object Store objects
// the manifest lists in the order they are applied: at most one full snapshot, then deltas.
import { z } from 'zod';
import { StateError } from './errors.js';

export const CheckpointObject = z.object({
  name: z.string().min(1),
  kind: z.enum(['full', 'delta']),
  bytes: z.number().int().min(0),
  puts: z.number().int().min(0),
  deletes: z.number().int().min(0),
});
export type CheckpointObject = z.infer<typeof CheckpointObject>;

export const CheckpointManifest = z.object({
  format: z.literal(1),
  job: z.string(),
  version: z.string(),
  partition: z.number().int().min(0),
  /** Assignment epoch of the owner that wrote it: a commit under a lower epoch is refused. */
  epoch: z.number().int().min(0),
  /** Checkpoint number of this task, one more per commit; names the local copy of the state. */
  id: z.number().int().min(0),
  /** Last stream sequence whose effects the state holds; the task resumes at sequence + 1. */
  sequence: z.number().int().min(0),
  /** What the engine keeps outside keyed state (watermark, emit counters), JSON-safe. */
  engine: z.record(z.string(), z.unknown()),
  objects: z.array(CheckpointObject),
  committedAt: z.string(),
  workerId: z.string(),
});
export type CheckpointManifest = z.infer<typeof CheckpointManifest>;

export function encodeManifest(manifest: CheckpointManifest): Uint8Array {
  return Buffer.from(JSON.stringify(manifest));
}

export function decodeManifest(bytes: Uint8Array, key: string): CheckpointManifest {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw new StateError('STATE_KEY_CORRUPT', `checkpoint manifest ${key} is not JSON: ${(error as Error).message}`);
  }
  const parsed = CheckpointManifest.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StateError(
      'STATE_KEY_CORRUPT',
      `checkpoint manifest ${key} field '${issue?.path.join('.')}': ${issue?.message}`,
    );
  }
  return parsed.data;
}

/** Bytes a restore reads: the full snapshot plus every delta after it. */
export function restoreBytes(manifest: CheckpointManifest): number {
  return manifest.objects.reduce((sum, object) => sum + object.bytes, 0);
}
