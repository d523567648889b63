// The server's own `partition()` subject mapping must agree with our partitioner.
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { partitionOf } from '../protocol/index.js';
import { startServer, type NatsServer } from './harness/nats-server.js';

const PARTITIONS = 16;
let server: NatsServer & { close(): Promise<void> };

beforeAll(async () => {
  server = await startServer({
    extraConfig: `mappings = { "in.*": "ev.{{partition(${PARTITIONS},1)}}.{{wildcard(1)}}" }`,
  });
});
afterAll(() => server.close());

it('puts each of 1,000 keys in the partition our FNV-1a function computes', async () => {
  const nc = await connect({ servers: server.url });
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
  const deadline = Date.now() + 10_000;
  while (serverPartition.size < keys.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  subscription.unsubscribe();
  await nc.close();

  expect(serverPartition.size).toBe(keys.length);
  const used = new Set<number>();
  for (const key of keys) {
    expect(serverPartition.get(key), `key ${key}`).toBe(partitionOf(key, PARTITIONS));
    used.add(partitionOf(key, PARTITIONS));
  }
  expect(used.size).toBe(PARTITIONS);
});
