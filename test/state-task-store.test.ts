import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TaskStore } from '../state/task-store.js';
import { encodeKey, prefixUpperBound } from '../state/key-encoding.js';
import { cleanUpTaskStores, openStore } from './harness/task-stores.js';
import { StateError } from '../state/errors.js';

cleanUpTaskStores();

describe('TaskStore', () => {
  it('round-trips msgpack values through a write batch and getMany', async () => {
    const store = await openStore();
    const value = { count: 3, tags: ['a', 'b'], nested: { at: -1.5 }, none: null };
    await store.write([
      [encodeKey(['k', 'v', 1]), value],
      [encodeKey(['k', 'v', 2]), 'two'],
    ]);
    expect(await store.getMany([encodeKey(['k', 'v', 1]), encodeKey(['missing']), encodeKey(['k', 'v', 2])])).toEqual([
      value,
      undefined,
      'two',
    ]);
    expect(await store.getMany([])).toEqual([]);
  });

  it('applies deletes after puts in the same batch and reports bytes written', async () => {
    const store = await openStore();
    const key = encodeKey(['k', 'n', 'x']);
    const bytes = await store.write([[key, 1]], [key]);
    expect(bytes).toBeGreaterThan(key.length);
    expect(await store.getMany([key])).toEqual([undefined]);
  });

  it('scans a prefix in tuple order, without the rows of a longer key sharing its characters', async () => {
    const store = await openStore();
    const subKeys = [10, -2, 0.5, -Infinity, 3, 'b', 'a'];
    await store.write(subKeys.map((subKey) => [encodeKey(['user-1', 'count', subKey]), subKey]));
    await store.write([
      [encodeKey(['user-10', 'count', 1]), 'other key'],
      [encodeKey(['user-', 'count', 1]), 'other key'],
    ]);
    const rows = await store.scanPrefix(encodeKey(['user-1']));
    expect(rows.map(([, value]) => value)).toEqual([-Infinity, -2, 0.5, 3, 10, 'a', 'b']);
    expect(await store.scanPrefix(encodeKey(['nobody']))).toEqual([]);
  });

  it('keeps a scratch store beside it, empty when first opened, gone when the store closes', async () => {
    const store = await openStore();
    const scratch = await store.scratch();
    expect(await store.scratch()).toBe(scratch);
    expect(scratch.dir).toBe(`${store.dir}.scratch`);
    await scratch.write([[encodeKey(['spilled']), 1]]);
    expect(await store.getMany([encodeKey(['spilled'])])).toEqual([undefined]); // not the task's rows
    await store.close();
    expect(existsSync(scratch.dir)).toBe(false);
    // A scratch left behind (a killed process) is emptied when a store opens it again.
    const left = await TaskStore.open(scratch.dir);
    await left.write([[encodeKey(['stale']), 1]]);
    await left.close();
    const reopened = await openStore(store.dir);
    expect(await (await reopened.scratch()).scanPrefix(encodeKey(['stale']))).toEqual([]);
  });

  it('deletes a range and only that range', async () => {
    const store = await openStore();
    const puts: Array<[Uint8Array, unknown]> = [];
    for (let window = 0; window < 10; window++) puts.push([encodeKey(['k', 'window', window * 1000, 'sum']), window]);
    puts.push([encodeKey(['k', 'other', 1]), 'kept']);
    await store.write(puts);
    // Purge windows starting before 5000.
    await store.deleteRange(encodeKey(['k', 'window']), encodeKey(['k', 'window', 5000]));
    const left = await store.scanPrefix(encodeKey(['k']));
    expect(left.map(([, value]) => value)).toEqual(['kept', 5, 6, 7, 8, 9]);
    await store.deleteRange(encodeKey(['k', 'window']), prefixUpperBound(encodeKey(['k', 'window'])));
    expect((await store.scanPrefix(encodeKey(['k']))).map(([, value]) => value)).toEqual(['kept']);
  });

  it('scans the whole store in batches, in key order', async () => {
    const store = await openStore();
    const puts: Array<[Uint8Array, unknown]> = [];
    for (let i = 0; i < 2_500; i++) puts.push([encodeKey(['k', i]), i]);
    await store.write(puts);
    const batches: number[] = [];
    const values: unknown[] = [];
    for await (const batch of store.scanBatches(undefined, undefined, 1_000)) {
      batches.push(batch.length);
      for (const [, value] of batch) values.push(value);
    }
    expect(batches).toEqual([1_000, 1_000, 500]);
    expect(values).toEqual(Array.from({ length: 2_500 }, (_, i) => i));
  });

  it('keeps rows across close and reopen, estimates its size, and refuses use after close', async () => {
    const store = await openStore();
    await store.write([[encodeKey(['k', 'n', 1]), 'kept']]);
    await store.flushToDisk();
    expect(await store.approximateSizeBytes()).toBeGreaterThan(0);
    await store.close();
    await expect(store.getMany([encodeKey(['k', 'n', 1])])).rejects.toThrow(StateError);
    const reopened = await openStore(store.dir);
    expect(await reopened.getMany([encodeKey(['k', 'n', 1])])).toEqual(['kept']);
  });
});
