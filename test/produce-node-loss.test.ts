// `kappa produce` and the Producer through the loss of NATS nodes: real nats-server clusters from
// the harness, the built CLI as a child process. A node SIGKILLed just before a produce is ridden
// through (every line stored exactly once); with every node gone the producer gives up after its
// retry time with one line and exit 4.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeEvent, fnv1a32, streams } from '../protocol/index.js';
import { createTopic, describeTopic, NatsUnavailableError, Producer } from '../client/index.js';
import { kappa } from './harness/cli.js';
import type { NatsCluster, NatsServer } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { useNatsCluster, useNatsServer, type UseNatsOptions } from './harness/use-nats.js';

/** The tests' connections ride through lost nodes: they reconnect for as long as it takes. */
const reconnecting: UseNatsOptions['connection'] = { maxReconnectAttempts: -1, reconnectTimeWait: 250 };
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-produce-loss-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Lines `{"customer": …, "ts": …, "i": index}`, and how many go to each partition by the key hash. */
function writeLines(file: string, count: number, partitions: number): number[] {
  const perPartition = new Array<number>(partitions).fill(0);
  const lines: string[] = [];
  for (let index = 0; index < count; index++) {
    const customer = `customer-${(index * 7919) % 313}`;
    perPartition[fnv1a32(Buffer.from(customer, 'utf8')) % partitions]!++;
    lines.push(JSON.stringify({ customer, ts: 1_700_000_000_000 + index, i: index }));
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return perPartition;
}

/** Every event stored in the topic, waited for: a stream info may time out while the cluster settles. */
function storedEvents(nc: NatsConnection, topic: string, partitions: number): Promise<number[][]> {
  return pollUntil(() => storedIndexes(nc, topic, partitions), { what: 'the stored events', timeoutMs: 60_000 });
}

/**
 * The `i` of every event stored in the topic, per partition, read back message by message from
 * each stream's leader (a reading consumer would need the meta leader to place it, and may be put
 * on the dead node while the cluster has not noticed yet).
 */
async function storedIndexes(nc: NatsConnection, topic: string, partitions: number): Promise<number[][]> {
  const jsm = await jetstreamManager(nc);
  const byPartition: number[][] = [];
  for (let partition = 0; partition < partitions; partition++) {
    const stream = streams.partition(topic, partition);
    const { state } = await jsm.streams.info(stream);
    const indexes: number[] = [];
    for (let sequence = state.first_seq; sequence <= state.last_seq && state.messages > 0; sequence++) {
      const message = await jsm.streams.getMessage(stream, { seq: sequence });
      if (message) indexes.push((decodeEvent(message.data).value as { i: number }).i);
    }
    byPartition.push(indexes);
  }
  return byPartition;
}

/** The node that leads the most partition streams of the topic (the meta leader when tied): the one to lose. */
async function busiestNode(
  nc: NatsConnection,
  cluster: NatsCluster,
  topic: string,
  partitions: number,
): Promise<NatsServer> {
  const jsm = await jetstreamManager(nc);
  const ledStreams = new Map<string, number>();
  for (let partition = 0; partition < partitions; partition++) {
    const leader = (await jsm.streams.info(streams.partition(topic, partition))).cluster?.leader ?? '';
    ledStreams.set(leader, (ledStreams.get(leader) ?? 0) + 1);
  }
  const jsz = (await (await fetch(`http://127.0.0.1:${cluster.nodes[0]!.monitorPort}/jsz`)).json()) as {
    meta_cluster?: { leader?: string };
  };
  const metaLeader = jsz.meta_cluster?.leader ?? '';
  const [name] = [...ledStreams.entries()].sort(
    ([a, countA], [b, countB]) => countB - countA || Number(b === metaLeader) - Number(a === metaLeader),
  )[0]!;
  // The harness names cluster nodes n0, n1, n2.
  return cluster.nodes[Number(name.slice(1))]!;
}

describe('kappa produce through a NATS node loss', () => {
  // Each test loses nodes: a fresh cluster for each.
  const nats = useNatsCluster({ per: 'test', connection: reconnecting });

  it('stores every line exactly once when started right after the node leading the partition streams is SIGKILLed', async () => {
    const { cluster, nc } = nats;
    const partitions = 8;
    await createTopic(nc, { name: 'orders', partitions, replicas: 3 });

    const victim = await busiestNode(nc, cluster, 'orders', partitions);
    const file = join(dir, 'orders.jsonl');
    const expected = writeLines(file, 5000, partitions);

    await victim.kill();
    const result = await kappa([
      'produce',
      'orders',
      '--file',
      file,
      '--key',
      'customer',
      '--time',
      'ts',
      '--id',
      'loader',
      '--nats',
      cluster.urls.join(','),
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/published 5000 events to orders/);

    // Read back with the node still down; a stream info may time out while the cluster settles.
    const stored = await storedEvents(nc, 'orders', partitions);
    expect(stored.map((indexes) => indexes.length)).toEqual(expected);
    expect(stored.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 5000 }, (_, index) => index));
  }, 180_000);

  it('gives up after --retry-for with one line and exit 4 when every node is down', async () => {
    const { cluster, nc } = nats;
    await createTopic(nc, { name: 'orders', partitions: 4, replicas: 3 });
    await nc.close();
    const file = join(dir, 'orders.jsonl');
    writeLines(file, 100, 4);
    for (const node of cluster.nodes) await node.kill();

    const startedAt = Date.now();
    const result = await kappa(
      ['produce', 'orders', '--file', file, '--key', 'customer', '--time', 'ts', '--nats', cluster.urls.join(',')],
      {
        env: { KAPPA_PRODUCE_RETRY_FOR: '3s' },
      },
    );
    const elapsedMs = Date.now() - startedAt;
    expect(result.code, result.stderr).toBe(4);
    expect(elapsedMs).toBeGreaterThanOrEqual(3_000);
    expect(elapsedMs).toBeLessThan(20_000);
    const lines = result.stderr.trim().split('\n');
    // The wait is shown while it lasts, then one line says why it stopped; no stack.
    expect(lines[0]).toMatch(/^kappa: waiting for NATS: connecting: cannot reach NATS at .*, retrying for \d+ s more$/);
    expect(lines.slice(0, -1).every((line) => line.startsWith('kappa: waiting for NATS: '))).toBe(true);
    expect(lines.at(-1)).toMatch(
      /^kappa: connecting: cannot reach NATS at .*connection refused \(gave up after retrying for 3 s\)$/,
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);
});

describe('Producer when NATS goes away', () => {
  describe('on a 3-node cluster', () => {
    const nats = useNatsCluster({ connection: reconnecting });

    it('stores every event exactly once when the node leading the partition streams is SIGKILLed mid-run', async () => {
      const { cluster, nc } = nats;
      const partitions = 4;
      await createTopic(nc, { name: 'clicks', partitions, replicas: 3 });
      const victim = await busiestNode(nc, cluster, 'clicks', partitions);
      const producer = await Producer.forTopic(nc, 'clicks', { maxInFlight: 512 });
      const total = 20_000;
      for (let index = 0; index < total; index++) {
        // Publishes in flight on the lost node's streams get "no responders" or no ack, and are resent.
        if (index === 5_000) await victim.kill();
        if (!producer.publish({ key: `user-${index % 101}`, time: index, value: { i: index } })) await producer.ready();
      }
      const stats = await producer.close();
      expect(stats.acknowledged).toBe(total);
      const stored = await storedEvents(nc, 'clicks', partitions);
      expect(stored.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, index) => index));
    }, 180_000);
  });

  describe('on its only server', () => {
    const nats = useNatsServer({ connection: reconnecting });

    it('rejects flush() with NatsUnavailableError after retryForMs when its only server dies mid-run', async () => {
      const { server, nc } = nats;
      await createTopic(nc, { name: 'lost', partitions: 2 });
      const producer = await Producer.forTopic(nc, 'lost', { retryForMs: 2_000, ackTimeoutMs: 500 });
      for (let index = 0; index < 100; index++) producer.publish({ key: `k-${index}`, time: index, value: index });
      await producer.flush();
      expect((await describeTopic(nc, 'lost')).totals.messages).toBe(100);

      await server.kill();
      const sentAt = Date.now();
      for (let index = 0; index < 100; index++) producer.publish({ key: `k-${index}`, time: index, value: index });
      const flushed = producer.flush().then(
        () => undefined,
        (error: unknown) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(producer.waiting()).toMatchObject({
        reason: 'connection to NATS lost, reconnecting',
        retryUntilMs: expect.any(Number),
      });
      const failure = await flushed;
      expect(failure).toBeInstanceOf(NatsUnavailableError);
      expect(failure).toMatchObject({
        code: 'CONNECTION_FAILED',
        message: expect.stringMatching(
          /^publishing to topic lost: .*100 events unacknowledged.*\(gave up after retrying for 2 s\)$/,
        ),
      });
      expect(Date.now() - sentAt).toBeGreaterThanOrEqual(2_000);
      expect(Date.now() - sentAt).toBeLessThan(10_000);
    }, 30_000);
  });
});
