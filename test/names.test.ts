// Names built from job, version and worker names never collide: serving-table buckets (where '_'
// falls in `a_b`/`c` and `a`/`b_c`), and the cluster store's KV keys (where '.' falls in `a.b`/`c`
// and `a`/`b.c`) against a real nats-server.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClusterStore } from '../coordinator/cluster-store.js';
import type { JobVersionRecord } from '../coordinator/cluster-state.js';
import { buckets, NAME_PATTERN, parseServingTableBucket } from '../protocol/index.js';
import { useNatsServer } from './harness/use-nats.js';

const plainName = fc.stringMatching(NAME_PATTERN);

describe('serving-table bucket names', () => {
  it('differ for every two (job, version) pairs and parse back to their pair (property)', () => {
    fc.assert(
      fc.property(plainName, plainName, plainName, plainName, (job1, version1, job2, version2) => {
        const same = job1 === job2 && version1 === version2;
        expect(buckets.servingTable(job1, version1) === buckets.servingTable(job2, version2)).toBe(same);
        expect(parseServingTableBucket(buckets.servingTable(job1, version1))).toEqual({ job: job1, version: version1 });
      }),
    );
    expect(buckets.servingTable('a_b', 'c')).not.toBe(buckets.servingTable('a', 'b_c'));
  });

  it("tell `kappa view` which job a bucket belongs to, so one job never lists another's versions", () => {
    const parsed = ['a_b', 'a', 'a_'].flatMap((job) =>
      ['c', 'b_c'].map((version) => parseServingTableBucket(buckets.servingTable(job, version))),
    );
    expect(parsed.filter((table) => table?.job === 'a').map((table) => table!.version)).toEqual(['c', 'b_c']);
    for (const other of ['kappa_topics', 'kappa_table_x', 'kappa_table_9_ab', 'kappa_table_1_ab'])
      expect(parseServingTableBucket(other)).toBeUndefined();
  });
});

describe('cluster store keys', () => {
  const nats = useNatsServer();

  const record = (job: string, version: string): JobVersionRecord => ({
    job,
    version,
    topic: 'clicks',
    partitions: 4,
    from: { kind: 'earliest' },
    state: 'running',
    startedAtMs: 0,
  });

  it('keeps versions and tasks whose names differ only in where "_" falls apart', async () => {
    const store = await ClusterStore.open(nats.nc);
    await store.putVersion(record('a_b', 'c'));
    await store.putVersion(record('a', 'b_c'));
    await store.putTask({ task: { job: 'a_b', version: 'c', partition: 1 }, worker: null, epoch: 1 });
    await store.putTask({ task: { job: 'a', version: 'b_c', partition: 1 }, worker: null, epoch: 1 });
    const loaded = await store.load();
    expect([...loaded.versions.keys()].sort()).toEqual(['a/b_c', 'a_b/c']);
    expect([...loaded.tasks.keys()].sort()).toEqual(['a/b_c/1', 'a_b/c/1']);
  });

  it('refuses a name with "." or "/" instead of writing a key another record shares', async () => {
    const store = await ClusterStore.open(nats.nc);
    // `version.a.b.c` would be both `a.b`/`c` and `a`/`b.c`.
    await expect(store.putVersion(record('a.b', 'c'))).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(store.putVersion(record('a', 'b.c'))).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(store.putVersion(record('a/b', 'c'))).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(
      store.putTask({ task: { job: 'x', version: 'y.z', partition: 0 }, worker: null, epoch: 1 }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect((await store.load()).versions.size).toBe(2);
  });
});
