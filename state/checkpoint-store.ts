// Checkpoints of tasks in NATS: state objects in an Object Store bucket, so any worker can
// restore any task, and one manifest per task in a KV bucket, committed with compare-and-set.
//
// Fencing: an owner first *claims* the manifest by writing its assignment epoch into it (CAS on
// the revision it read); every later commit is a CAS on the revision of its own last write. A
// zombie (an owner the coordinator has replaced, e.g. after SIGSTOP) therefore finds the
// revision moved on its next commit, reads a higher epoch and is refused with FencedError.
//
// Incremental: a commit uploads only the rows changed since the previous commit (a delta). When
// the deltas after the last full snapshot add up to more than that snapshot (at least
// COMPACT_MIN_BYTES), the commit uploads a full snapshot instead and the older objects are
// deleted: restore reads at most about twice the state, and each commit costs what changed.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { StorageType } from '@nats-io/jetstream';
import { buckets, checkpointNames, CheckpointError, FencedError } from '../protocol/index.js';
import { COMPACT_MIN_BYTES, deleteObjects, shouldCompact, uploadFullSnapshot } from './checkpoint-compaction.js';
import { decodeFrames, encodeDelta } from './checkpoint-format.js';
import { decodeManifest, encodeManifest, type CheckpointManifest } from './checkpoint-manifest.js';
import { markOf } from './local-checkpoint-mark.js';
import type { TaskStore, WriteCapture } from './task-store.js';

export { COMPACT_MAX_OBJECTS, COMPACT_MIN_BYTES } from './checkpoint-compaction.js';
export { localMark } from './local-checkpoint-mark.js';

export interface CheckpointTask {
  job: string;
  version: string;
  partition: number;
  /** Absent for the keyed stage; a route stage's name otherwise (protocol/job-plan.ts). */
  stage?: string;
}

export interface CommitRequest {
  epoch: number;
  sequence: number;
  engine: Record<string, unknown>;
  /** Rows changed since the last commit, already written to `store`. */
  delta: WriteCapture;
  /** The task's store, holding the state being committed (read for a full snapshot). */
  store: TaskStore;
}

export interface CommitResult {
  manifest: CheckpointManifest;
  /** Bytes uploaded by this commit (0 when nothing changed but the position). */
  bytesUploaded: number;
  kind: 'delta' | 'full' | 'none';
}

export interface CheckpointStoreOptions {
  /** JetStream replicas of both buckets (KAPPA_REPLICAS). */
  replicas?: number;
  /** Deltas are compacted into a full snapshot only above this many bytes (default COMPACT_MIN_BYTES). */
  compactMinBytes?: number;
}

export class CheckpointStore {
  private constructor(
    readonly manifests: KV,
    readonly objects: ObjectStore,
    readonly compactMinBytes: number,
  ) {}

  /** Opens (creating if missing) the manifest bucket and the object bucket. */
  static async open(nc: NatsConnection, options: CheckpointStoreOptions = {}): Promise<CheckpointStore> {
    const replicas = options.replicas ?? 1;
    const manifests = await new Kvm(nc).create(buckets.checkpoints, {
      history: 1,
      replicas,
      storage: StorageType.File,
    });
    const objects = await new Objm(nc).create(buckets.checkpointData, { replicas, storage: StorageType.File });
    return new CheckpointStore(manifests, objects, options.compactMinBytes ?? COMPACT_MIN_BYTES);
  }

  forTask(task: CheckpointTask, workerId: string): TaskCheckpoints {
    return new TaskCheckpoints(this, task, workerId);
  }

  /** The committed manifest of a task, if any (for status, tests and tools). */
  async read(task: CheckpointTask): Promise<CheckpointManifest | undefined> {
    const key = manifestKey(task);
    const entry = await this.manifests.get(key);
    return entry && entry.operation === 'PUT' ? decodeManifest(entry.value, key) : undefined;
  }
}

export function manifestKey(task: CheckpointTask): string {
  return checkpointNames.manifest(task);
}

function objectPrefix(task: CheckpointTask): string {
  return checkpointNames.objectPrefix(task);
}

/** The checkpoints of one task as seen by its owner. */
export class TaskCheckpoints {
  private readonly key: string;
  /** Revision of our last write of the manifest: the CAS base of the next commit. */
  private revision = 0;
  private current: CheckpointManifest | undefined;

  constructor(
    private readonly store: CheckpointStore,
    readonly task: CheckpointTask,
    private readonly workerId: string,
  ) {
    this.key = manifestKey(task);
  }

  /** The manifest claimed or last committed by this owner. */
  get manifest(): CheckpointManifest | undefined {
    return this.current;
  }

  /**
   * Takes ownership under `epoch`: writes the epoch into the manifest (creating the first one,
   * at `initialSequence`, for a new task) so no lower epoch can commit again. Returns the
   * manifest to restore. Throws FencedError when a higher epoch already owns the task.
   */
  async claim(epoch: number, initialSequence: number): Promise<CheckpointManifest> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const entry = await this.store.manifests.get(this.key);
      const existing = entry && entry.operation === 'PUT' ? decodeManifest(entry.value, this.key) : undefined;
      if (existing && this.ownedByAnother(existing, epoch)) {
        throw new FencedError(
          `task ${this.key} is owned under epoch ${existing.epoch} (worker ${existing.workerId}); this owner (${this.workerId}) holds epoch ${epoch}`,
          existing.epoch,
        );
      }
      const claimed: CheckpointManifest = existing
        ? { ...existing, epoch, workerId: this.workerId }
        : {
            format: 1,
            ...this.task,
            epoch,
            id: 0,
            sequence: initialSequence,
            engine: {},
            objects: [],
            committedAt: new Date().toISOString(),
            workerId: this.workerId,
          };
      try {
        this.revision = entry
          ? await this.store.manifests.update(this.key, encodeManifest(claimed), entry.revision)
          : await this.store.manifests.create(this.key, encodeManifest(claimed));
        this.current = claimed;
        return claimed;
      } catch {
        // Another owner wrote between our read and write: read again and decide again.
      }
    }
    throw new CheckpointError(`could not claim checkpoint ${this.key}: the manifest kept changing`);
  }

  /** Writes the manifest's state into an empty store; returns the bytes read. */
  async restoreInto(store: TaskStore, manifest: CheckpointManifest): Promise<number> {
    let bytes = 0;
    for (const object of manifest.objects) {
      const result = await this.store.objects.get(object.name);
      if (!result) throw new CheckpointError(`checkpoint object ${object.name} of ${this.key} is missing`);
      for await (const frame of decodeFrames(result.data)) await store.writeEncoded(frame.puts, frame.deletes);
      if (!(await result.error)) bytes += object.bytes;
      else
        throw new CheckpointError(`checkpoint object ${object.name} of ${this.key} could not be read`, {
          cause: await result.error,
        });
    }
    return bytes;
  }

  /**
   * Uploads what changed and commits a new manifest with CAS. Throws FencedError when a higher
   * epoch took the task, CheckpointError when the upload or the commit failed: the task must then
   * restart from the last committed checkpoint, and this one is never considered done.
   */
  async commit(request: CommitRequest): Promise<CommitResult> {
    const previous = this.current;
    if (!previous) throw new CheckpointError(`checkpoint ${this.key} committed before it was claimed`);
    const id = previous.id + 1;
    const changed = request.delta.puts.length + request.delta.deletes.length;
    let objects = previous.objects;
    let kind: CommitResult['kind'] = 'none';
    let bytesUploaded = 0;
    try {
      if (changed > 0 && shouldCompact(previous.objects, request.delta, this.store.compactMinBytes)) {
        const name = `${objectPrefix(this.task)}${request.epoch}-${id}-full`;
        const full = await uploadFullSnapshot(this.store.objects, request.store, name);
        objects = [full];
        kind = 'full';
        bytesUploaded = full.bytes;
      } else if (changed > 0) {
        const name = `${objectPrefix(this.task)}${request.epoch}-${id}-delta`;
        const bytes = encodeDelta(request.delta.puts, request.delta.deletes);
        await this.store.objects.putBlob({ name }, bytes);
        objects = [
          ...previous.objects,
          {
            name,
            kind: 'delta',
            bytes: bytes.length,
            puts: request.delta.puts.length,
            deletes: request.delta.deletes.length,
          },
        ];
        kind = 'delta';
        bytesUploaded = bytes.length;
      }
    } catch (error) {
      throw new CheckpointError(`checkpoint ${id} of ${this.key}: upload failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const manifest: CheckpointManifest = {
      ...previous,
      epoch: request.epoch,
      id,
      sequence: request.sequence,
      engine: request.engine,
      objects,
      committedAt: new Date().toISOString(),
      workerId: this.workerId,
    };
    try {
      this.revision = await this.store.manifests.update(this.key, encodeManifest(manifest), this.revision);
    } catch (error) {
      this.revision = await this.explainRefusal(request.epoch, manifest, error);
    }
    this.current = manifest;
    // Objects the new manifest no longer lists (superseded by a full snapshot) go now.
    const kept = new Set(objects.map((object) => object.name));
    await deleteObjects(
      this.store.objects,
      previous.objects.filter((object) => !kept.has(object.name)).map((object) => object.name),
    );
    return { manifest, bytesUploaded, kind };
  }

  /** Deletes this task's objects no manifest lists: leftovers of failed or fenced commits. */
  async collectGarbage(): Promise<number> {
    const referenced = new Set(this.current?.objects.map((object) => object.name));
    const prefix = objectPrefix(this.task);
    const unreferenced: string[] = [];
    for (const info of await this.store.objects.list()) {
      if (info.name.startsWith(prefix) && !referenced.has(info.name)) unreferenced.push(info.name);
    }
    await deleteObjects(this.store.objects, unreferenced);
    return unreferenced.length;
  }

  /**
   * Why a commit's compare-and-set failed: a newer owner (FencedError), or anything else
   * (CheckpointError, retried by the task). Returns the revision when the commit did land and only
   * its reply was lost (a timeout), so a retry of the same commit succeeds instead of failing forever.
   */
  private async explainRefusal(epoch: number, attempted: CheckpointManifest, error: unknown): Promise<number> {
    let owner: CheckpointManifest | undefined;
    let revision = 0;
    try {
      const entry = await this.store.manifests.get(this.key);
      owner = entry && entry.operation === 'PUT' ? decodeManifest(entry.value, this.key) : undefined;
      revision = entry?.revision ?? 0;
    } catch {
      // Could not read either: report the commit failure below.
    }
    if (owner && owner.epoch === epoch && owner.workerId === this.workerId && markOf(owner) === markOf(attempted))
      return revision;
    if (owner && this.ownedByAnother(owner, epoch)) {
      throw new FencedError(
        `checkpoint of ${this.key} refused: epoch ${owner.epoch} (worker ${owner.workerId}) owns the task, this owner holds epoch ${epoch}`,
        owner.epoch,
      );
    }
    throw new CheckpointError(`checkpoint of ${this.key} could not be committed: ${(error as Error).message}`, {
      cause: error,
    });
  }

  /**
   * A higher epoch owns the task, or the same epoch under another worker: epochs name owners, so
   * an equal epoch is ours only when we wrote it (a restart re-claims under its own epoch).
   */
  private ownedByAnother(manifest: CheckpointManifest, epoch: number): boolean {
    return manifest.epoch > epoch || (manifest.epoch === epoch && manifest.workerId !== this.workerId);
  }
}
