// The KV serving table never lets an older revision overwrite a newer one, whichever writer
// (owner, replay after restore, resumed zombie) gets there first: several RevisionGuardedTable
// instances write interleaved revisions into a real NATS KV bucket.
import { Kvm, type KV } from '@nats-io/kv';
import { BatchPublisher } from '../client/publish-batch.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRow, liveRow, servingTableRowKey } from '../protocol/index.js';
import { RevisionGuardedTable } from '../tables/index.js';
import type { Output } from '../worker/types.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let bucketCounter = 0;

function output(key: string, revision: number, kind: Output['kind'] = 'update'): Output {
  const window = { start: 0, end: 10 };
  return {
    id: `j/v1/${key}/0-10`,
    job: 'j',
    version: 'v1',
    key,
    window,
    value: kind === 'retract' ? null : revision * 10,
    revision,
    kind,
  };
}

async function newBucket() {
  const bucket = `revisions_${bucketCounter++}`;
  return { bucket, kv: await new Kvm(nats.nc).create(bucket, { history: 1 }) };
}

/** A writer as a task has one: rows go out as pipelined compare-and-set batches. */
function writer(kv: KV, bucket: string): RevisionGuardedTable {
  return new RevisionGuardedTable(kv, new BatchPublisher(nats.nc), bucket);
}

describe('RevisionGuardedTable', () => {
  it('keeps the newest revision per row whatever order three writers deliver them in (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 1, max: 6 })),
          { minLength: 1, maxLength: 30 },
        ),
        async (writes) => {
          const { kv, bucket } = await newBucket();
          const writers = [writer(kv, bucket), writer(kv, bucket), writer(kv, bucket)];
          // Writers run concurrently, as an owner and a zombie would, each sending batches of up to
          // 3 rows (one batch holds one revision per row, as the sink's coalescing leaves it).
          const batches: [number, Output[]][] = [];
          for (const [index, key, revision] of writes) {
            const last = batches.at(-1);
            if (last && last[0] === index && last[1].length < 3 && !last[1].some((o) => o.key === key))
              last[1].push(output(key, revision));
            else batches.push([index, [output(key, revision)]]);
          }
          await Promise.all(batches.map(([index, outputs]) => writers[index]!.write(outputs)));
          const newest = new Map<string, number>();
          for (const [, key, revision] of writes) newest.set(key, Math.max(newest.get(key) ?? 0, revision));
          for (const [key, revision] of newest) {
            const row = liveRow(await kv.get(servingTableRowKey(key, { start: 0, end: 10 })));
            expect(row).toMatchObject({ key, revision, value: revision * 10 });
          }
        },
      ),
      { numRuns: 20 },
    );
  });

  it('keeps a retraction as a tombstone that an older re-emission cannot bring back', async () => {
    const { kv, bucket } = await newBucket();
    const owner = writer(kv, bucket);
    const zombie = writer(kv, bucket);
    await owner.write([output('s', 1)]);
    await owner.write([output('s', 2, 'retract')]);
    await zombie.write([output('s', 1)]);
    const entry = await kv.get(servingTableRowKey('s', { start: 0, end: 10 }));
    expect(decodeRow(entry!.value)).toMatchObject({ revision: 2, retracted: true });
    expect(liveRow(entry)).toBeUndefined();
  });
});
