// Topic layout: one stream per partition (what client/topics.ts creates) against one stream
// whose partitions are subject filters. Measures the publish rate through the Producer, then the
// rate of P parallel AckNone consumers each reading its whole partition from the start.
// Run: npx tsx bench/topic-layout.ts [events] [partitions]   (starts its own nats-server)
import { AckPolicy, DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { createTopic, Producer } from '../client/index.js';
import { partitionOf, streams, subjects } from '../protocol/index.js';
import { startServer } from '../test/harness/nats-server.js';

const EVENTS = Number(process.argv[2] ?? 300_000);
const PARTITIONS = Number(process.argv[3] ?? 16);
const ROUNDS = 2;

interface Layout {
  name: string;
  /** Creates the topic and returns, per partition, the stream and filter a consumer reads. */
  create(nc: NatsConnection, topic: string): Promise<Array<{ stream: string; filter: string }>>;
}

const streamPerPartition: Layout = {
  name: 'stream per partition',
  async create(nc, topic) {
    await createTopic(nc, { name: topic, partitions: PARTITIONS });
    return Array.from({ length: PARTITIONS }, (_, p) => ({
      stream: streams.partition(topic, p),
      filter: subjects.partition(topic, p),
    }));
  },
};

const oneStream: Layout = {
  name: 'one stream, partition subjects',
  async create(nc, topic) {
    const jsm = await jetstreamManager(nc);
    const stream = `ONE_${topic}`;
    await jsm.streams.add({
      name: stream,
      subjects: [`${topic}.>`],
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(120_000),
    });
    return Array.from({ length: PARTITIONS }, (_, p) => ({ stream, filter: subjects.partition(topic, p) }));
  },
};

// ~100-byte events over 10,000 keys, the same for both layouts.
const events = Array.from({ length: EVENTS }, (_, index) => ({
  key: `user-${(index * 7919) % 10_000}`,
  time: 1_700_000_000_000 + index,
  value: { amount: index % 1000, currency: 'EUR', note: 'bench event payload' },
}));
const perPartition = new Array<number>(PARTITIONS).fill(0);
for (const event of events) perPartition[partitionOf(event.key, PARTITIONS)]!++;

async function publishAll(nc: NatsConnection, topic: string): Promise<number> {
  const producer = new Producer(nc, { topic, partitions: PARTITIONS });
  const started = performance.now();
  for (const event of events) if (!producer.publish(event)) await producer.ready();
  await producer.close();
  return EVENTS / ((performance.now() - started) / 1000);
}

async function readAll(nc: NatsConnection, partitions: Array<{ stream: string; filter: string }>): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const consumers = await Promise.all(
    partitions.map(async ({ stream, filter }, p) => {
      const info = await jsm.consumers.add(stream, {
        name: `bench_${p}_${Date.now()}`,
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.All,
        filter_subject: filter,
        inactive_threshold: nanos(60_000),
      });
      return js.consumers.get(stream, info.name);
    }),
  );
  const started = performance.now();
  await Promise.all(
    consumers.map(async (consumer, p) => {
      const expected = perPartition[p]!;
      if (expected === 0) return;
      let seen = 0;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      const messages = await consumer.consume({
        max_messages: 10_000,
        callback: () => {
          if (++seen === expected) done();
        },
      });
      await finished;
      messages.stop();
    }),
  );
  return EVENTS / ((performance.now() - started) / 1000);
}

const server = await startServer();
const nc = await connect({ servers: server.url });
try {
  console.log(
    `topic layout: ${EVENTS} events, ${PARTITIONS} partitions, ${ROUNDS} rounds (2 shared cores: figures are noisy)`,
  );
  const results = new Map<string, { publish: number[]; read: number[] }>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const layout of [streamPerPartition, oneStream]) {
      const topic = `bench${round}${layout === oneStream ? 'one' : 'per'}`;
      const partitions = await layout.create(nc, topic);
      const publish = await publishAll(nc, topic);
      const read = await readAll(nc, partitions);
      const entry = results.get(layout.name) ?? { publish: [], read: [] };
      entry.publish.push(publish);
      entry.read.push(read);
      results.set(layout.name, entry);
      console.log(`  round ${round + 1} ${layout.name}: publish ${Math.round(publish)}/s, read ${Math.round(read)}/s`);
    }
  }
  const best = (values: number[]) => Math.max(...values);
  const per = results.get(streamPerPartition.name)!;
  const one = results.get(oneStream.name)!;
  console.log(`publish: per-partition / one-stream = ${(best(per.publish) / best(one.publish)).toFixed(2)}`);
  console.log(`read:    per-partition / one-stream = ${(best(per.read) / best(one.read)).toFixed(2)}`);
  for (const [name, entry] of results) {
    console.log(
      `  ${name}: publish ${Math.round(best(entry.publish))} events/s, read ${Math.round(best(entry.read))} events/s (best of ${ROUNDS})`,
    );
  }
} finally {
  await nc.close();
  await server.close();
}
