// The Producer (pipelined core publishes, PubAcks tracked on one inbox) against awaited
// `js.publish` on the same events into the same 16-partition topic: one at a time, and with a
// window of 1,000 in flight (FACTS.md's ≈ 27k/s reference). Every variant sets a message id.
// Run: npx tsx bench/producer.ts [events]   (starts its own nats-server)
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createTopic, deleteTopic, Producer } from '../client/index.js';
import { encodeEvent, partitionOf, subjects, type EventEnvelope } from '../protocol/index.js';
import { startServer } from '../test/harness/nats-server.js';

const EVENTS = Number(process.argv[2] ?? 300_000);
/** The one-at-a-time loop is slow: a sample of this many events gives its rate. */
const SEQUENTIAL_EVENTS = Math.min(EVENTS, 20_000);
const PARTITIONS = 16;

const events: EventEnvelope[] = Array.from({ length: EVENTS }, (_, index) => ({
  key: `user-${(index * 7919) % 10_000}`,
  time: 1_700_000_000_000 + index,
  value: { amount: index % 1000, currency: 'EUR', note: 'bench event payload' },
}));

type Run = (nc: NatsConnection, topic: string, count: number) => Promise<void>;

const producerRun =
  (maxInFlight: number): Run =>
  async (nc, topic, count) => {
    const producer = new Producer(nc, { topic, partitions: PARTITIONS, maxInFlight });
    for (let index = 0; index < count; index++) if (!producer.publish(events[index]!)) await producer.ready();
    await producer.close();
  };

function jsPublish(js: JetStreamClient, topic: string, index: number) {
  const event = events[index]!;
  return js.publish(subjects.event(topic, partitionOf(event.key, PARTITIONS), event.key), encodeEvent(event), {
    msgID: `bench:${index}`,
  });
}

const awaitedLoop: Run = async (nc, topic, count) => {
  const js = jetstream(nc);
  for (let index = 0; index < count; index++) await jsPublish(js, topic, index);
};

const awaitedWindow: Run = async (nc, topic, count) => {
  const js = jetstream(nc);
  for (let start = 0; start < count; start += 1000) {
    const window = [];
    for (let index = start; index < Math.min(count, start + 1000); index++) window.push(jsPublish(js, topic, index));
    await Promise.all(window);
  }
};

async function measure(nc: NatsConnection, name: string, run: Run, count: number): Promise<number> {
  const topic = `bench_${name.replace(/\W+/g, '_')}`;
  await createTopic(nc, { name: topic, partitions: PARTITIONS });
  const started = performance.now();
  await run(nc, topic, count);
  const rate = count / ((performance.now() - started) / 1000);
  await deleteTopic(nc, topic);
  return rate;
}

const server = await startServer();
const nc = await connect({ servers: server.url });
try {
  const producer = await measure(nc, 'producer', producerRun(4096), EVENTS);
  const producerWide = await measure(nc, 'producer wide', producerRun(16_384), EVENTS);
  const windowed = await measure(nc, 'js.publish window', awaitedWindow, EVENTS);
  const sequential = await measure(nc, 'js.publish loop', awaitedLoop, SEQUENTIAL_EVENTS);
  // nats.js builds an Error per request for async stack traces unless told not to.
  const untraced = await connect({ servers: server.url, noAsyncTraces: true });
  const windowedUntraced = await measure(untraced, 'js.publish window untraced', awaitedWindow, EVENTS);
  await untraced.close();
  console.log(`producer: ${EVENTS} events into ${PARTITIONS} partitions (2 shared cores: figures are noisy)`);
  console.log(`ratio producer / awaited js.publish loop:          ${(producer / sequential).toFixed(1)}×`);
  console.log(`ratio producer / js.publish with 1,000 in flight:  ${(producer / windowed).toFixed(1)}×`);
  console.log(`  Producer, maxInFlight 4096 (default)          ${Math.round(producer)} events/s`);
  console.log(`  Producer, maxInFlight 16384                   ${Math.round(producerWide)} events/s`);
  console.log(`  js.publish, 1,000 in flight                   ${Math.round(windowed)} events/s`);
  console.log(`  js.publish, 1,000 in flight, noAsyncTraces    ${Math.round(windowedUntraced)} events/s`);
  console.log(
    `  js.publish, awaited one at a time             ${Math.round(sequential)} events/s (${SEQUENTIAL_EVENTS} events)`,
  );
} finally {
  await nc.close();
  await server.close();
}
