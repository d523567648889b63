// The cluster-state bucket as the leader loads it: a bucket whose stream is gone when a leader
// loads (a create that timed out while JetStream had no quorum can be answered as done and never
// applied) is created again instead of failing every load, and keeps what is written after.
import { jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { ClusterStore } from '../coordinator/cluster-store.js';
import { buckets } from '../protocol/index.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer({ per: 'test' });

describe('the cluster-state bucket', () => {
  it('is created again when its stream is not there at load, and keeps what is written after', async () => {
    const store = await ClusterStore.open(nats.nc);
    await store.putTask({ task: { job: 'j', version: 'v1', partition: 0 }, worker: null, epoch: 1 });
    const jsm = await jetstreamManager(nats.nc);
    await jsm.streams.delete(`KV_${buckets.cluster}`);
    const loaded = await store.load();
    expect(loaded.tasks.size).toBe(0);
    expect((await jsm.streams.info(`KV_${buckets.cluster}`)).config.name).toBe(`KV_${buckets.cluster}`);
    await store.putTask({ task: { job: 'j', version: 'v1', partition: 1 }, worker: null, epoch: 1 });
    expect([...(await store.load()).tasks.keys()]).toEqual(['j/v1/1']);
  });
});
