// Real RocksDB task stores in temp dirs for state tests, closed and destroyed after each test.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { TaskStore } from '../../state/task-store.js';

const dirs: string[] = [];
const stores: TaskStore[] = [];

/** Opens a store in a fresh temp dir, or reopens one in `dir`. Call cleanUpTaskStores() in the file. */
export async function openStore(dir?: string): Promise<TaskStore> {
  if (dir === undefined) {
    dir = await mkdtemp(join(tmpdir(), 'kappa-state-test-'));
    dirs.push(dir);
  }
  const store = await TaskStore.open(dir);
  stores.push(store);
  return store;
}

/** Registers the afterEach that closes and destroys every store the test opened. */
export function cleanUpTaskStores(): void {
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const dir of dirs.splice(0)) await TaskStore.destroy(dir);
  });
}
