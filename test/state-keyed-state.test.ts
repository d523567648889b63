import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyedState, type SubKey } from '../state/keyed-state.js';
import { cleanUpTaskStores, openStore } from './harness/task-stores.js';
import { TaskStore } from '../state/task-store.js';
import { StateError } from '../state/errors.js';

cleanUpTaskStores();

function sortedEntries(state: KeyedState, key: string, namespace: string): Array<[SubKey, unknown]> {
  return [...state.entries(key, namespace)].sort((a, b) => JSON.stringify(a[0]).localeCompare(JSON.stringify(b[0])));
}

describe('KeyedState', () => {
  it('throws for get or put on a key that was not activated', async () => {
    const state = new KeyedState(await openStore());
    expect(() => state.get('user-1', 'count', 0)).toThrow(StateError);
    expect(() => state.put('user-1', 'count', 0, 1)).toThrow(StateError);
    await state.activate(['user-1']);
    expect(state.isActive('user-1')).toBe(true);
    expect(state.get('user-1', 'count', 0)).toBeUndefined();
  });

  it('loads the same rows after the store is closed, reopened and the key activated', async () => {
    const store = await openStore();
    const state = new KeyedState(store);
    await state.activate(['user-1', 'user-2']);
    state.put('user-1', 'count', 0, 41);
    state.put('user-1', 'profile', 'name', { first: 'Ada' });
    state.put('user-1', 'window', [1_000, 'sum'], 7.5);
    state.put('user-1', 'window', [2_000, 'sum'], -3);
    state.put('user-2', 'count', 0, 1);
    state.put('user-1', 'count', 0, 42);
    expect(await state.flush()).toMatchObject({ puts: 5, deletes: 0 });
    await store.close();

    const reopened = new KeyedState(await openStore(store.dir));
    await reopened.activate(['user-1']);
    expect(reopened.activeKeys).toBe(1);
    expect(reopened.get('user-1', 'count', 0)).toBe(42);
    expect(reopened.get('user-1', 'profile', 'name')).toEqual({ first: 'Ada' });
    expect(reopened.get('user-1', 'window', [1_000, 'sum'])).toBe(7.5);
    expect(sortedEntries(reopened, 'user-1', 'window')).toEqual([
      [[1_000, 'sum'], 7.5],
      [[2_000, 'sum'], -3],
    ]);
    expect(reopened.isActive('user-2')).toBe(false);
  });

  it('counts puts, deletes and bytes per flush and writes nothing for a row created and deleted between flushes', async () => {
    const state = new KeyedState(await openStore());
    await state.activate(['k']);
    state.put('k', 'n', 1, 'a');
    state.put('k', 'n', 2, 'b');
    state.put('k', 'n', 1, 'a2'); // same row: still one put
    expect(state.dirtyRows).toBe(2);
    const first = await state.flush();
    expect(first).toMatchObject({ puts: 2, deletes: 0 });
    expect(first.bytes).toBeGreaterThan(0);
    expect(state.dirtyRows).toBe(0);

    state.delete('k', 'n', 1);
    state.put('k', 'n', 3, 'c');
    state.delete('k', 'n', 3);
    state.delete('k', 'n', 99); // never existed
    expect(await state.flush()).toMatchObject({ puts: 0, deletes: 1 });
    expect(await state.flush()).toEqual({ puts: 0, deletes: 0, bytes: 0 });
    expect(sortedEntries(state, 'k', 'n')).toEqual([[2, 'b']]);
  });

  it('writes uncached rows at the next flush without activating their keys, and refuses them for an active key', async () => {
    const store = await openStore();
    const state = new KeyedState(store);
    state.putUncached('w1', 'w', 1_000, { count: 2 });
    state.putUncached('w2', 'w', [0, 60_000], { count: 1 });
    expect(state.isActive('w1')).toBe(false);
    expect(state.dirtyRows).toBe(2);
    const capture = { puts: [], deletes: [] };
    expect(await state.flush(capture)).toMatchObject({ puts: 2, deletes: 0 });
    expect(capture.puts).toHaveLength(2);
    state.deleteUncached('w1', 'w', 1_000);
    expect(await state.flush()).toMatchObject({ puts: 0, deletes: 1 });
    // What they wrote is what activating the keys reads.
    await state.activate(['w1', 'w2']);
    expect(state.get('w1', 'w', 1_000)).toBeUndefined();
    expect(state.get('w2', 'w', [0, 60_000])).toEqual({ count: 1 });
    expect(() => state.putUncached('w2', 'w', 5, 1)).toThrow(StateError);
    expect(() => state.deleteUncached('w2', 'w', 5)).toThrow(StateError);
  });

  it('keeps uncached rows for the next flush when the store refuses a write', async () => {
    const store = await openStore();
    const state = new KeyedState(store);
    state.putUncached('w1', 'w', 1, 'a');
    await store.close(); // every write now fails
    await expect(state.flush()).rejects.toThrow(StateError);
    expect(state.dirtyRows).toBe(1);
  });

  it('treats a one-part subKey array as the same row as its scalar', async () => {
    const state = new KeyedState(await openStore());
    await state.activate(['k']);
    state.put('k', 'n', ['x'], 1);
    expect(state.get('k', 'n', 'x')).toBe(1);
    state.put('k', 'n', 'x', 2);
    expect(await state.flush()).toMatchObject({ puts: 1 });
    expect(state.get('k', 'n', ['x'])).toBe(2);
    // 1 and "1" are different rows.
    state.put('k', 'n', 1, 'number');
    state.put('k', 'n', '1', 'string');
    expect(state.get('k', 'n', 1)).toBe('number');
    expect(state.get('k', 'n', '1')).toBe('string');
  });

  it('evicts least recently activated clean keys beyond maxActiveKeys and never a key with dirty rows', async () => {
    const store = await openStore();
    const state = new KeyedState(store, { maxActiveKeys: 2 });
    await state.activate(['a', 'b', 'c', 'd']);
    state.put('a', 'n', 0, 'dirty a');
    await state.activate(['b']); // b is now the most recently activated
    state.evict();
    expect(state.activeKeys).toBe(2);
    expect(state.isActive('a')).toBe(true); // dirty: kept although oldest
    expect(state.isActive('b')).toBe(true);
    expect(state.isActive('c')).toBe(false);
    expect(state.isActive('d')).toBe(false);
    expect(state.get('a', 'n', 0)).toBe('dirty a');

    await state.flush();
    await state.activate(['c']);
    state.evict((key) => key === 'a'); // a, now clean and oldest, is pinned by the engine: b goes
    expect([state.isActive('a'), state.isActive('b'), state.isActive('c')]).toEqual([true, false, true]);
    await state.activate(['d']);
    state.evict();
    expect([state.isActive('a'), state.isActive('c'), state.isActive('d')]).toEqual([false, true, true]);
    await state.activate(['a']);
    expect(state.get('a', 'n', 0)).toBe('dirty a');
  });

  it('keeps fewer keys when told (heap pressure), the most recently activated, and reads the others back', async () => {
    const state = new KeyedState(await openStore(), { maxActiveKeys: 100 });
    const keys = Array.from({ length: 8 }, (_, index) => `k${index}`);
    await state.activate(keys);
    for (const key of keys) state.put(key, 'n', 0, `value of ${key}`);
    await state.flush();
    await state.activate(['k0']); // the most recent now
    state.evict(undefined, 2);
    expect(keys.filter((key) => state.isActive(key))).toEqual(['k0', 'k7']);
    state.evict(undefined, 500); // never more than maxActiveKeys: nothing to do here
    expect(state.activeKeys).toBe(2);
    await state.activate(keys);
    expect(keys.map((key) => state.get(key, 'n', 0))).toEqual(keys.map((key) => `value of ${key}`));
  });

  it('scans RocksDB for a key being activated only when the store may hold rows of keys not active', async () => {
    const store = await openStore();
    const scanned: string[] = [];
    const scanPrefix = store.scanPrefix.bind(store);
    store.scanPrefix = (prefix) => {
      scanned.push(Buffer.from(prefix).toString('latin1'));
      return scanPrefix(prefix);
    };
    // An empty store (a version replaying from the start): nothing to read for any key.
    const state = new KeyedState(store, { maxActiveKeys: 1 });
    await state.activate(['a', 'b']);
    state.put('a', 'n', 0, 'a0');
    state.put('b', 'n', 0, 'b0');
    await state.flush();
    await state.activate(['c']);
    expect(scanned).toEqual([]);
    // Evicted keys' rows stay in RocksDB: from now on every activation reads.
    state.evict();
    expect(state.isActive('a')).toBe(false);
    await state.activate(['a', 'd']);
    expect(scanned).toHaveLength(2);
    expect(state.get('a', 'n', 0)).toBe('a0');
    expect(state.get('d', 'n', 0)).toBeUndefined();

    // A store with rows, opened afresh, reads every key it activates.
    const reopened = new KeyedState(store);
    await reopened.activate(['b']);
    expect(scanned).toHaveLength(3);
    expect(reopened.get('b', 'n', 0)).toBe('b0');
  });

  it('reads the rows of a key a restore left inactive (no resident rows) when it is activated', async () => {
    const store = await openStore();
    const writer = new KeyedState(store);
    await writer.activate(['open', 'closed']);
    writer.put('open', 'w', 1_000, 'window');
    writer.put('open', 'v', 'x', 1);
    writer.put('closed', 'v', 'x', 2);
    await writer.flush();

    const restored = new KeyedState(store);
    const visited: string[] = [];
    await restored.restoreResident(new Set(['w']), (key, namespace) => visited.push(`${key}/${namespace}`));
    expect(visited).toEqual(['open/w']);
    expect([restored.isActive('open'), restored.isActive('closed')]).toEqual([true, false]);
    await restored.activate(['closed', 'new']);
    expect(restored.get('closed', 'v', 'x')).toBe(2);
    expect(restored.get('open', 'v', 'x')).toBe(1);
    expect(restored.get('new', 'v', 'x')).toBeUndefined();
  });

  it('keeps a row changed while a flush is being written dirty for the next flush', async () => {
    const state = new KeyedState(await openStore());
    await state.activate(['k']);
    state.put('k', 'n', 0, 1);
    const flushing = state.flush();
    state.put('k', 'n', 0, 2);
    state.delete('k', 'n', 0);
    state.put('k', 'n', 0, 3);
    await flushing;
    expect(state.dirtyRows).toBe(1);
    expect(await state.flush()).toMatchObject({ puts: 1 });
    expect(state.get('k', 'n', 0)).toBe(3);
  });

  it('keeps a deleted row read while its delete is written, then written again, readable and stored', async () => {
    const store = await openStore();
    const state = new KeyedState(store);
    await state.activate(['k']);
    state.put('k', 'n', 0, 'first');
    await state.flush();
    state.delete('k', 'n', 0);
    const flushing = state.flush();
    expect(state.get('k', 'n', 0)).toBeUndefined(); // read while the delete is being written
    await flushing;
    state.put('k', 'n', 0, 'second');
    expect(state.get('k', 'n', 0)).toBe('second');
    expect(sortedEntries(state, 'k', 'n')).toEqual([[0, 'second']]);
    expect(await state.flush()).toMatchObject({ puts: 1 });
    const reopened = new KeyedState(store);
    await reopened.activate(['k']);
    expect(reopened.get('k', 'n', 0)).toBe('second');
  });

  it('never takes a row of an evicted key for the key activated again', async () => {
    const store = await openStore();
    const state = new KeyedState(store, { maxActiveKeys: 1 });
    await state.activate(['a']);
    state.put('a', 'n', 0, 'a0');
    await state.flush();
    expect(state.get('a', 'n', 0)).toBe('a0');
    await state.activate(['b']);
    state.evict();
    expect(state.isActive('a')).toBe(false);
    await state.activate(['a']);
    state.put('a', 'n', 0, 'a1');
    expect(sortedEntries(state, 'a', 'n')).toEqual([[0, 'a1']]);
    expect(await state.flush()).toMatchObject({ puts: 1 });
  });

  it('evicts in the order keys were last activated, a key listed twice counting where it first appears', async () => {
    const state = new KeyedState(await openStore(), { maxActiveKeys: 2 });
    await state.activate(['a', 'b', 'c', 'd']);
    await state.activate(['c', 'a', 'c', 'b', 'a']); // order now d, c, a, b
    await state.activate(['e']); // d, c, a, b, e
    state.evict();
    expect(['a', 'b', 'c', 'd', 'e'].filter((key) => state.isActive(key))).toEqual(['b', 'e']);
  });

  it('equals a plain Map model after random puts, deletes, flushes, evictions and a reopen', async () => {
    const keys = ['a', 'b', 'c', 'a-'];
    const namespaces = ['count', 'window'];
    const subKey: fc.Arbitrary<SubKey> = fc.oneof(
      fc.integer({ min: -3, max: 3 }),
      fc.constantFrom('x', 'y', ''),
      fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom('sum', 'max')),
    );
    const operation = fc.oneof(
      fc.record({
        kind: fc.constant('put' as const),
        key: fc.constantFrom(...keys),
        namespace: fc.constantFrom(...namespaces),
        subKey,
        value: fc.oneof(
          fc.integer(),
          fc.string(),
          fc.array(
            fc.double({ noNaN: true }).map((n) => n + 0),
            { maxLength: 3 },
          ) /* msgpack stores -0 as 0 */,
        ),
      }),
      fc.record({
        kind: fc.constant('delete' as const),
        key: fc.constantFrom(...keys),
        namespace: fc.constantFrom(...namespaces),
        subKey,
      }),
      fc.constant({ kind: 'flush' as const }),
      fc.constant({ kind: 'evict' as const }),
    );

    await fc.assert(
      fc.asyncProperty(fc.array(operation, { maxLength: 60 }), async (operations) => {
        const dir = await mkdtemp(join(tmpdir(), 'kappa-state-test-'));
        let store = await TaskStore.open(dir);
        const state = new KeyedState(store, { maxActiveKeys: 1 });
        const model = new Map<string, unknown>();
        const rowId = (key: string, namespace: string, sub: SubKey) => JSON.stringify([key, namespace, sub]);
        try {
          for (const op of operations) {
            if (op.kind === 'flush') await state.flush();
            else if (op.kind === 'evict') state.evict();
            else {
              await state.activate([op.key]);
              if (op.kind === 'put') {
                state.put(op.key, op.namespace, op.subKey, op.value);
                model.set(rowId(op.key, op.namespace, op.subKey), op.value);
              } else {
                state.delete(op.key, op.namespace, op.subKey);
                model.delete(rowId(op.key, op.namespace, op.subKey));
              }
            }
          }
          await state.flush();
        } finally {
          await store.close();
        }

        store = await TaskStore.open(dir);
        try {
          const reopened = new KeyedState(store);
          await reopened.activate(keys);
          const actual = new Map<string, unknown>();
          for (const key of keys) {
            for (const namespace of namespaces) {
              for (const [sub, value] of reopened.entries(key, namespace))
                actual.set(rowId(key, namespace, sub), value);
            }
          }
          expect(actual).toEqual(model);
        } finally {
          await store.close();
          await TaskStore.destroy(dir);
        }
      }),
      { numRuns: 60 },
    );
  });
});
