// Leader election over a real nats-server: one leader at a time, takeover within the lease when
// the leader stops renewing, fencing tokens that only increase, and a graceful resign.
import type { KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../protocol/index.js';
import { LeaderElection } from '../coordinator/leader-election.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const TTL_MS = 1_000;

const nats = useNatsServer();
const connections: NatsConnection[] = [];

afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close()));
});

async function elector(candidateId: string, watch?: (kv: KV) => KV): Promise<LeaderElection> {
  const nc = await connect({ servers: nats.url });
  connections.push(nc);
  const kv = await LeaderElection.openBucket(nc, TTL_MS);
  return new LeaderElection({ kv: watch ? watch(kv) : kv, candidateId, ttlMs: TTL_MS, clock: systemClock });
}

/** Waits until `elector` leads, returning how long that took. */
async function leadsWithin(elector: LeaderElection, timeoutMs: number): Promise<number> {
  const startedAt = Date.now();
  await pollUntil(() => elector.isLeader(), { what: `${elector.candidateId} to lead`, timeoutMs, intervalMs: 20 });
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
      await leadsWithin(a, 2_000);
      b.start();
      // b polls for several leases and never leads while a renews.
      await sleep(3 * TTL_MS);
      expect(a.isLeader()).toBe(true);
      expect(b.isLeader()).toBe(false);
      const firstToken = a.fencingToken!;

      await a.stop(); // stops renewing without deleting the key: like a crash
      const takeoverMs = await leadsWithin(b, 4 * TTL_MS);
      // The key expires a lease after its last renew; b notices on its next poll (ttl/4): ≈ 1.25
      // ttl at most, given room here for a loaded machine's timer lag.
      expect(takeoverMs).toBeLessThan(2.5 * TTL_MS);
      expect(b.fencingToken!).toBeGreaterThan(firstToken);

      // A graceful resign deletes the key: the next candidate wins on its first poll.
      const c = await elector('c');
      c.start();
      await sleep(TTL_MS);
      expect(c.isLeader()).toBe(false);
      const secondToken = b.fencingToken!;
      expect(await b.resign()).toBe(true);
      // The key is gone (or already c's) the moment resign returns; c does not wait out a lease.
      // Timing alone cannot show it on a loaded machine: a missed poll looks like an expiry.
      expect(await c.currentHolder()).not.toBe('b');
      await leadsWithin(c, 3 * TTL_MS);
      expect(c.fencingToken!).toBeGreaterThan(secondToken);
      await c.resign();
    } finally {
      clearInterval(sampler);
    }
    expect(overlaps).toBe(0);
  });

  it('resigns cleanly while a renew is in flight', async () => {
    // The real bucket, watched: the moment a renew's update goes out, resign() is called, so
    // the renew lands while resign waits for it. The delete must use the revision it wrote.
    let resignOnRenew: (() => void) | undefined;
    const d = await elector(
      'd',
      (kv) =>
        new Proxy(kv, {
          get(target, property, receiver) {
            const member: unknown = Reflect.get(target, property, receiver);
            if (property !== 'update' || typeof member !== 'function') return member;
            return (...args: unknown[]) => {
              const written: unknown = Reflect.apply(member, target, args);
              const hook = resignOnRenew;
              resignOnRenew = undefined;
              // Next microtask: the tick has begun and its reply from the server is still out.
              if (hook) queueMicrotask(hook);
              return written;
            };
          },
        }),
    );
    d.start();
    await leadsWithin(d, 2_000);
    const resigned = new Promise<boolean>((resolve) => {
      resignOnRenew = () => resolve(d.resign());
    });
    expect(await resigned).toBe(true);
    expect(await d.currentHolder()).toBeUndefined();
  });
});
