// The server's own `partition()` subject mapping must agree with our partitioner.
import { expect, it } from 'vitest';
import { partitionOf } from '../protocol/index.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 16;
const nats = useNatsServer({
  server: { extraConfig: `mappings = { "in.*": "ev.{{partition(${PARTITIONS},1)}}.{{wildcard(1)}}" }` },
});

it('puts each of 1,000 keys in the partition our FNV-1a function computes', async () => {
  const nc = nats.nc;
  const keys = Array.from({ length: 1000 }, (_, index) => `user-${index * 7919}`);
  const serverPartition = new Map<string, number>();
  const subscription = nc.subscribe('ev.>', {
    callback: (_error, message) => {
      const [, partition, key] = message.subject.split('.');
      serverPartition.set(key!, Number(partition));
    },
  });
  for (const key of keys) nc.publish(`in.${key}`);
  await nc.flush();
  await pollUntil(() => serverPartition.size, {
    what: 'the mapped message of every key',
    until: (size) => size === keys.length,
    timeoutMs: 10_000,
    intervalMs: 20,
  });
  subscription.unsubscribe();

  expect(serverPartition.size).toBe(keys.length);
  const used = new Set<number>();
  for (const key of keys) {
    expect(serverPartition.get(key), `key ${key}`).toBe(partitionOf(key, PARTITIONS));
    used.add(partitionOf(key, PARTITIONS));
  }
  expect(used.size).toBe(PARTITIONS);
});
