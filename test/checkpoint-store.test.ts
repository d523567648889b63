// Checkpoints against a real nats-server (KV manifests, Object Store objects) and real RocksDB:
// what is restored equals what was committed, deltas cost what changed, compaction keeps the
// chain short and deletes what it supersedes, and a lower epoch can never commit again.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FencedError } from '../protocol/index.js';
import { CheckpointStore, type TaskCheckpoints } from '../state/checkpoint-store.js';
import { KeyedState } from '../state/keyed-state.js';
import type { TaskStore, WriteCapture } from '../state/task-store.js';
import { cleanUpTaskStores, openStore } from './harness/task-stores.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let taskCounter = 0;
cleanUpTaskStores();

function newTask() {
  return { job: 'cp', version: 'v1', partition: taskCounter++ };
}

/** Every row of a store as hex key → hex value, for comparing two stores. */
async function contents(store: TaskStore): Promise<Map<string, string>> {
  const rows = new Map<string, string>();
  for await (const batch of store.scanEncodedBatches()) {
    for (const [key, value] of batch) rows.set(Buffer.from(key).toString('hex'), Buffer.from(value).toString('hex'));
  }
  return rows;
}

/** Applies puts/deletes through KeyedState and commits them as one checkpoint. */
async function commitChanges(
  checkpoints: TaskCheckpoints,
  state: KeyedState,
  store: TaskStore,
  epoch: number,
  sequence: number,
  changes: Array<[key: string, value: number | undefined]>,
) {
  await state.activate(new Set(changes.map(([key]) => key)));
  for (const [key, value] of changes) {
    if (value === undefined) state.delete(key, 'n', 0);
    else state.put(key, 'n', 0, { value, padding: 'x'.repeat(40) });
  }
  const delta: WriteCapture = { puts: [], deletes: [] };
  await state.flush(delta);
  return checkpoints.commit({ epoch, sequence, engine: { watermark: { currentMs: sequence } }, delta, store });
}

async function objectNames(checkpoints: CheckpointStore, partition: number): Promise<string[]> {
  return (await checkpoints.objects.list())
    .map((info) => info.name)
    .filter((name) => name.startsWith(`cp/v1/${partition}/`))
    .sort();
}

describe('checkpoints in NATS', () => {
  it('restores exactly the committed state; a delta costs what changed, not the state size', async () => {
    const checkpointStore = await CheckpointStore.open(nats.nc, { compactMinBytes: 64 * 1024 * 1024 });
    const task = newTask();
    const checkpoints = checkpointStore.forTask(task, 'w1');
    const claimed = await checkpoints.claim(1, 0);
    expect(claimed).toMatchObject({ epoch: 1, id: 0, sequence: 0, objects: [] });

    const store = await openStore();
    const state = new KeyedState(store);
    const all = Array.from({ length: 20_000 }, (_, index): [string, number] => [`key-${index}`, index]);
    const first = await commitChanges(checkpoints, state, store, 1, 100, all);
    const small = await commitChanges(
      checkpoints,
      state,
      store,
      1,
      200,
      all.slice(0, 200).map(([key, value]) => [key, value + 1]),
    );
    const deletes = await commitChanges(
      checkpoints,
      state,
      store,
      1,
      300,
      all.slice(500, 600).map(([key]) => [key, undefined]),
    );
    expect(first.kind).toBe('full'); // a task's first commit is its base
    expect(small.kind).toBe('delta');
    // 1% of the keys changed: about 1% of the bytes uploaded.
    expect(small.bytesUploaded).toBeLessThan(first.bytesUploaded / 50);
    expect(small.bytesUploaded).toBeGreaterThan(first.bytesUploaded / 200);
    expect(deletes.manifest.objects).toHaveLength(3);

    const committed = await checkpointStore.read(task);
    expect(committed).toMatchObject({ epoch: 1, id: 3, sequence: 300, engine: { watermark: { currentMs: 300 } } });
    const restored = await openStore();
    await checkpoints.restoreInto(restored, committed!);
    const expected = await contents(store);
    expect(expected.size).toBe(19_900);
    expect(await contents(restored)).toEqual(expected);
  });

  it('compacts a long chain into one full snapshot, deletes the superseded objects, and still restores the same state', async () => {
    const checkpointStore = await CheckpointStore.open(nats.nc, { compactMinBytes: 16 * 1024 });
    const task = newTask();
    const checkpoints = checkpointStore.forTask(task, 'w1');
    await checkpoints.claim(1, 0);
    const store = await openStore();
    const state = new KeyedState(store);
    const kinds: string[] = [];
    for (let round = 0; round < 12; round++) {
      const changes = Array.from({ length: 100 }, (_, index): [string, number] => [
        `key-${(round * 37 + index) % 400}`,
        round * 1000 + index,
      ]);
      kinds.push((await commitChanges(checkpoints, state, store, 1, round + 1, changes)).kind);
    }
    expect(kinds).toContain('full');
    const manifest = (await checkpointStore.read(task))!;
    expect(manifest.objects.filter((object) => object.kind === 'full').length).toBeLessThanOrEqual(1);
    if (manifest.objects[0]?.kind !== 'full')
      expect(manifest.objects.every((object) => object.kind === 'delta')).toBe(true);
    // Only what the manifest lists is left in the bucket.
    expect(await objectNames(checkpointStore, task.partition)).toEqual(
      manifest.objects.map((object) => object.name).sort(),
    );
    const restored = await openStore();
    await checkpoints.restoreInto(restored, manifest);
    expect(await contents(restored)).toEqual(await contents(store));
  });

  it('refuses a commit and a claim under an older epoch once a newer owner claimed the task, and collects the zombie upload', async () => {
    const checkpointStore = await CheckpointStore.open(nats.nc);
    const task = newTask();
    const zombie = checkpointStore.forTask(task, 'zombie');
    await zombie.claim(1, 0);
    const zombieStore = await openStore();
    const zombieState = new KeyedState(zombieStore);
    await commitChanges(zombie, zombieState, zombieStore, 1, 10, [['a', 1]]);

    const owner = checkpointStore.forTask(task, 'owner');
    const claimed = await owner.claim(2, 0);
    expect(claimed).toMatchObject({ epoch: 2, sequence: 10, workerId: 'owner' });

    await expect(commitChanges(zombie, zombieState, zombieStore, 1, 20, [['a', 2]])).rejects.toBeInstanceOf(
      FencedError,
    );
    await expect(checkpointStore.forTask(task, 'zombie').claim(1, 0)).rejects.toMatchObject({
      code: 'FENCED',
      ownerEpoch: 2,
    });
    // Epochs name owners: the same epoch claimed by another worker is refused too, by its owner re-claimed.
    await expect(checkpointStore.forTask(task, 'other').claim(2, 0)).rejects.toMatchObject({
      code: 'FENCED',
      ownerEpoch: 2,
    });
    expect(await owner.claim(2, 0)).toMatchObject({ epoch: 2, workerId: 'owner' });
    expect(await checkpointStore.read(task)).toMatchObject({ epoch: 2, sequence: 10, workerId: 'owner' });
    // The zombie's upload for sequence 20 is in the bucket but listed by no manifest.
    expect((await objectNames(checkpointStore, task.partition)).length).toBe(2);
    expect(await owner.collectGarbage()).toBe(1);
    expect(await objectNames(checkpointStore, task.partition)).toEqual(claimed.objects.map((object) => object.name));

    const ownerStore = await openStore();
    await owner.restoreInto(ownerStore, claimed);
    const ownerState = new KeyedState(ownerStore);
    await ownerState.activate(new Set(['a']));
    expect(ownerState.get('a', 'n', 0)).toMatchObject({ value: 1 });
    const next = await commitChanges(owner, ownerState, ownerStore, 2, 30, [['b', 3]]);
    expect(next.manifest).toMatchObject({ epoch: 2, id: 2, sequence: 30 });
  });

  it('restores what a random history of puts, deletes, commits and compactions left (property)', async () => {
    const checkpointStore = await CheckpointStore.open(nats.nc, { compactMinBytes: 2 * 1024 });
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.option(fc.integer(), { nil: undefined })), {
            minLength: 1,
            maxLength: 40,
          }),
          { minLength: 1, maxLength: 8 },
        ),
        async (rounds) => {
          const task = newTask();
          const checkpoints = checkpointStore.forTask(task, 'w');
          await checkpoints.claim(1, 0);
          const store = await openStore();
          const state = new KeyedState(store);
          const model = new Map<string, number>();
          let sequence = 0;
          for (const round of rounds) {
            const changes = round.map(([key, value]): [string, number | undefined] => [`k${key}`, value]);
            for (const [key, value] of changes) {
              if (value === undefined) model.delete(key);
              else model.set(key, value);
            }
            await commitChanges(checkpoints, state, store, 1, ++sequence, changes);
          }
          const restored = await openStore();
          await checkpoints.restoreInto(restored, (await checkpointStore.read(task))!);
          const restoredState = new KeyedState(restored);
          await restoredState.activate(new Set(Array.from({ length: 61 }, (_, index) => `k${index}`)));
          const seen = new Map<string, number>();
          for (let index = 0; index <= 60; index++) {
            const row = restoredState.get(`k${index}`, 'n', 0) as { value: number } | undefined;
            if (row) seen.set(`k${index}`, row.value);
          }
          expect(seen).toEqual(model);
          expect(await contents(restored)).toEqual(await contents(store));
        },
      ),
      { numRuns: 15 },
    );
  });

  it('treats a commit whose reply was lost but which landed as committed, so a retry does not fail forever', async () => {
    const checkpointStore = await CheckpointStore.open(nats.nc);
    const task = newTask();
    const checkpoints = checkpointStore.forTask(task, 'w');
    await checkpoints.claim(1, 0);
    const store = await openStore();
    const state = new KeyedState(store);
    await commitChanges(checkpoints, state, store, 1, 5, [['x', 1]]);
    // The server applies the next manifest update, but its reply is lost (a timeout).
    const manifests = checkpointStore.manifests;
    const update = manifests.update.bind(manifests);
    manifests.update = async (...args) => {
      manifests.update = update;
      await update(...args);
      throw new Error('TIMEOUT');
    };
    expect((await commitChanges(checkpoints, state, store, 1, 6, [['x', 2]])).manifest).toMatchObject({
      id: 2,
      sequence: 6,
    });
    // The revision it learned is the real one: the next commit's compare-and-set succeeds.
    expect((await commitChanges(checkpoints, state, store, 1, 7, [['x', 3]])).manifest).toMatchObject({
      id: 3,
      sequence: 7,
    });
    expect(await checkpointStore.read(task)).toMatchObject({ id: 3, sequence: 7, epoch: 1, workerId: 'w' });
  });

  it('fails a restore loudly when an object the manifest lists is gone', async () => {
    const checkpointStore = await CheckpointStore.open(nats.nc);
    const task = newTask();
    const checkpoints = checkpointStore.forTask(task, 'w');
    await checkpoints.claim(1, 0);
    const store = await openStore();
    const state = new KeyedState(store);
    const { manifest } = await commitChanges(checkpoints, state, store, 1, 5, [['x', 1]]);
    await checkpointStore.objects.delete(manifest.objects[0]!.name);
    await expect(checkpoints.restoreInto(await openStore(), manifest)).rejects.toThrow(/missing/);
  });
});
