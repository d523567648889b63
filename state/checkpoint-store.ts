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
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { StorageType } from '@nats-io/jetstream';
import { buckets, checkpointNames, CheckpointError, FencedError } from '../protocol/index.js';
import { decodeFrames, encodeDelta, encodeFrame } from './checkpoint-format.js';
import {
  decodeManifest,
  encodeManifest,
  type CheckpointManifest,
  type CheckpointObject,
} from './checkpoint-manifest.js';
import type { TaskStore, WriteCapture } from './task-store.js';

/** Below this the chain of deltas is never compacted: a small state restores fast anyway. */
export const COMPACT_MIN_BYTES = 4 * 1024 * 1024;
/** A chain longer than this is compacted whatever its size (each object is a round trip on restore). */
export const COMPACT_MAX_OBJECTS = 64;

export interface CheckpointTask {
  job: string;
  version: string;
  partition: number;
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
        const full = await this.uploadFull(request.store, `${objectPrefix(this.task)}${request.epoch}-${id}-full`);
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
    await this.deleteObjects(previous.objects.filter((object) => !kept.has(object.name)).map((object) => object.name));
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
    await this.deleteObjects(unreferenced);
    return unreferenced.length;
  }

  private async deleteObjects(names: readonly string[]): Promise<void> {
    // Best effort: an object left behind is found again by collectGarbage() at the next claim.
    await Promise.all(names.map((name) => this.store.objects.delete(name).catch(() => undefined)));
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

  private async uploadFull(store: TaskStore, name: string): Promise<CheckpointObject> {
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
    await this.store.objects.put({ name }, body);
    return { name, kind: 'full', bytes, puts, deletes: 0 };
  }
}

function shouldCompact(objects: readonly CheckpointObject[], delta: WriteCapture, compactMinBytes: number): boolean {
  // The first commit of a task is its base: a full snapshot (of what is, for a new task, the first delta).
  if (objects.length === 0 || objects.length + 1 > COMPACT_MAX_OBJECTS) return true;
  const full = objects.find((object) => object.kind === 'full')?.bytes ?? 0;
  let deltas = 0;
  for (const object of objects) if (object.kind === 'delta') deltas += object.bytes;
  // Estimate the new delta by its row count; exact enough to decide when to compact.
  const estimated = (delta.puts.length + delta.deletes.length) * 32;
  return deltas + estimated > Math.max(full, compactMinBytes);
}

/**
 * The local copy of a task's state is marked with the id of the checkpoint it equals; a worker
 * that finds the mark equal to the committed manifest's skips the download. The mark is set aside
 * before the local store changes and written again after the commit. It is set aside by a rename,
 * not deleted, so a write the store refused (it changed nothing: write batches are atomic) can put
 * it back without writing a byte: on a full disk the local copy stays usable, and the task never
 * wipes and re-downloads a state that was never wrong.
 */
export const localMark = {
  path: (stateDir: string) => `${stateDir}.checkpoint`,
  asidePath: (stateDir: string) => `${stateDir}.checkpoint.aside`,
  read(stateDir: string): { state: string } | undefined {
    try {
      return JSON.parse(readFileSync(localMark.path(stateDir), 'utf8')) as { state: string };
    } catch {
      return undefined;
    }
  },
  write(stateDir: string, manifest: CheckpointManifest): void {
    writeFileSync(localMark.path(stateDir), JSON.stringify({ state: markOf(manifest) }));
    rmSync(localMark.asidePath(stateDir), { force: true });
  },
  clear(stateDir: string): void {
    rmSync(localMark.path(stateDir), { force: true });
    rmSync(localMark.asidePath(stateDir), { force: true });
  },
  /** The store is about to change: until a new mark is written it equals no checkpoint. */
  setAside(stateDir: string): void {
    try {
      renameSync(localMark.path(stateDir), localMark.asidePath(stateDir));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  },
  /** The store refused the write and still equals the checkpoint the mark named: the mark holds again. */
  putBack(stateDir: string): void {
    try {
      renameSync(localMark.asidePath(stateDir), localMark.path(stateDir));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  },
  matches(stateDir: string, manifest: CheckpointManifest): boolean {
    return localMark.read(stateDir)?.state === markOf(manifest);
  },
};

/**
 * Identifies the state of a manifest. The id alone is not enough: two owners can each commit an
 * id N from different histories (a fenced zombie's local store), so the committing owner's
 * objects are part of it.
 */
function markOf(manifest: CheckpointManifest): string {
  return `${manifest.id}:${manifest.sequence}:${manifest.objects.map((object) => object.name).join(',')}`;
}
