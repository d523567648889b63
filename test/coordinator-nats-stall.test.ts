// A coordinator outlasts a NATS that does not answer: at start-up (a server down, or JetStream
// without a quorum so that its requests time out) it waits and retries instead of exiting with a
// raw "TimeoutError: timeout", and once NATS answers again it leads. Real nats-servers (a 3-node
// cluster with two nodes SIGSTOPped, a single server stopped or SIGSTOPped) and the built
// `kappa coordinator`.
import { describe, expect, it } from 'vitest';
import { isTransientNatsError } from '../client/index.js';
import { ConnectionError } from '../protocol/index.js';
import { connectNats } from '../runtime/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { startServer } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { useNatsCluster, useNatsServer } from './harness/use-nats.js';

function coordinator(id: string, url: string): KappaProcess {
  return new KappaProcess(['coordinator', '--id', id, '--nats', url, '--http-port', '0', '--lease-ttl', '2s']);
}

/** Waits until the coordinator logs a start-up wait for NATS; fails at once if it exits instead. */
async function waitingForNats(process: KappaProcess): Promise<void> {
  await process.waitForLog(/"msg":"start-up: waiting for NATS"/, 30_000);
}

/** Waits until `kappa status` names `id` as the leader (the coordinator led and answered). */
async function leads(id: string, url: string, process: KappaProcess): Promise<void> {
  await pollUntil(() => kappa(['status', '--nats', url, '--leader-timeout', '1s']), {
    what: `coordinator ${id} to lead and answer 'kappa status'`,
    until: (status) => status.code === 0 && status.stdout.startsWith(`leader: ${id} `),
    timeoutMs: 30_000,
    giveUpIf: () =>
      process.child.exitCode === null ? undefined : `the coordinator exited with code ${process.child.exitCode}`,
    context: () => process.logs.slice(-3000),
  });
}

describe('JetStream without a quorum while the coordinator starts', () => {
  const nats = useNatsCluster();

  it('retries its buckets while two of three nodes are SIGSTOPped, then leads once they resume', async () => {
    const [reachable, ...stalled] = nats.cluster.nodes;
    // The node it connects to answers, but every JetStream request times out: the meta group has
    // lost its quorum (creating a bucket waits 5 s, then gets a TimeoutError).
    for (const node of stalled) node.pause();
    const spawned = coordinator('c1', reachable!.url);
    try {
      await waitingForNats(spawned);
      expect(spawned.logs).toMatch(/opening the cluster state and leader buckets: no answer in time/);
    } finally {
      for (const node of stalled) node.resume();
    }
    await leads('c1', reachable!.url, spawned);
    expect(spawned.logs).not.toMatch(/^kappa: /m);
    expect(await spawned.stop()).toBe(0);
  });
});

describe('a single nats-server', () => {
  const nats = useNatsServer({ per: 'test' });

  it('waits for a server that is down when it starts, then leads once the server is up', async () => {
    const server = await startServer();
    try {
      await server.stop();
      const spawned = coordinator('c2', server.url);
      await waitingForNats(spawned);
      expect(spawned.logs).toMatch(/connecting: cannot reach NATS at nats:\/\/127\.0\.0\.1:\d+: connection refused/);
      await server.start();
      await leads('c2', server.url, spawned);
      expect(await spawned.stop()).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('retries a connection that a SIGSTOPped server accepts but does not answer in time', async () => {
    nats.server.pause();
    try {
      // What a coordinator meets when it starts while its server is stalled, after the connect timeout.
      const failure: unknown = await connectNats({ url: nats.url }, { timeout: 500 }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConnectionError);
      expect(isTransientNatsError(failure)).toBe(true);
    } finally {
      nats.server.resume();
    }
  });

  it('stays up when its server is SIGSTOPped for a while as it leads, and leads again after SIGCONT', async () => {
    const spawned = coordinator('c3', nats.url);
    await leads('c3', nats.url, spawned);
    nats.server.pause();
    // Longer than a JetStream request's 5 s timeout and the 2 s lease: every renew, store write
    // and stream read of the leader loop times out meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    nats.server.resume();
    await leads('c3', nats.url, spawned);
    expect(spawned.child.exitCode).toBeNull();
    expect(await spawned.stop()).toBe(0);
  });
});
