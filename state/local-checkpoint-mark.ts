// The mark next to a task's local RocksDB directory naming the checkpoint the local copy equals,
// so a worker that finds it equal to the committed manifest skips the download.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { CheckpointManifest } from './checkpoint-manifest.js';

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
export function markOf(manifest: CheckpointManifest): string {
  return `${manifest.id}:${manifest.sequence}:${manifest.objects.map((object) => object.name).join(',')}`;
}
