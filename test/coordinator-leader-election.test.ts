// Leader election over a real nats-server: one leader at a time, takeover within the lease when
// the leader stops renewing, fencing tokens that only increase, and a graceful resign.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../coordinator/clock.js';
import { LeaderElection } from '../coordinator/leader-election.js';
import { startServer, stopAllServers, type NatsServer } from './harness/nats-server.js';

const TTL_MS = 1_000;

let server: NatsServer & { close(): Promise<void> };
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close()));
  await stopAllServers();
});

async function elector(candidateId: string): Promise<LeaderElection> {
  const nc = await connect({ servers: server.url });
  connections.push(nc);
  const kv = await LeaderElection.openBucket(nc, TTL_MS);
  return new LeaderElection({ kv, candidateId, ttlMs: TTL_MS, clock: systemClock });
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<number> {
  const startedAt = Date.now();
  while (!condition()) {
    if (Date.now() - startedAt > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
  return Date.now() - startedAt;
}

describe('leader election', () => {
  it('keeps one leader, hands over within the lease when it stops renewing, and raises the fencing token', async () => {
    const a = await elector('a');
    const b = await elector('b');
    let overlaps = 0;
    const sampler = setInterval(() => {
      if (a.isLeader() && b.isLeader()) overlaps++;
    }, 10);
    try {
      a.start();
      await waitFor(() => a.isLeader(), 2_000);
      b.start();
      // b polls for several leases and never leads while a renews.
      await sleep(3 * TTL_MS);
      expect(a.isLeader()).toBe(true);
      expect(b.isLeader()).toBe(false);
      const firstToken = a.fencingToken!;

      await a.stop(); // stops renewing without deleting the key: like a crash
      const takeoverMs = await waitFor(() => b.isLeader(), 3 * TTL_MS);
      // The key expires a lease after its last renew; b notices on its next poll (ttl/4).
      expect(takeoverMs).toBeLessThan(2 * TTL_MS);
      expect(b.fencingToken!).toBeGreaterThan(firstToken);

      // A graceful resign deletes the key: the next candidate wins on its first poll.
      const c = await elector('c');
      c.start();
      await sleep(TTL_MS);
      expect(c.isLeader()).toBe(false);
      const secondToken = b.fencingToken!;
      await b.resign();
      await waitFor(() => c.isLeader(), TTL_MS);
      expect(c.fencingToken!).toBeGreaterThan(secondToken);
      await c.resign();
    } finally {
      clearInterval(sampler);
    }
    expect(overlaps).toBe(0);
  });
});
