// Engine throughput: a tumbling-window count per key over events already in a topic, against
// the raw NATS AckNone consumer reading the same topic in the same run (ratio first).
// Run: npx tsx bench/engine.ts [events=1000000] [partitions=4] [keys=1000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { createTopic } from '../client/topics.js';
import { Producer } from '../client/producer.js';
import { streams } from '../protocol/index.js';
import { startServer } from '../test/harness/nats-server.js';
import { systemClock } from '../protocol/clock.js';
import { validateJob } from '../worker/job.js';
import { WorkerMetrics } from '../worker/metrics.js';
import { StandaloneWorker } from '../worker/standalone.js';
import { readRaw } from './raw-consumer.js';

const totalEvents = Number(process.argv[2] ?? 1_000_000);
const partitions = Number(process.argv[3] ?? 4);
const keyCount = Number(process.argv[4] ?? 1000);

const server = await startServer();
const nc = await connect({ servers: server.url });
const stateDir = mkdtempSync(join(tmpdir(), 'kappa-bench-engine-'));
try {
  await createTopic(nc, { name: 'clicks', partitions, key: 'user' });
  const producer = await Producer.forTopic(nc, 'clicks');
  const startMs = Date.UTC(2026, 0, 1);
  let t = Date.now();
  for (let index = 0; index < totalEvents; index++) {
    // One event per ms of event time, slightly out of order.
    const time = startMs + index - (index % 7);
    const user = `user-${(index * 7919) % keyCount}`;
    if (!producer.publish({ key: user, time, value: { user, ts: time, page: index % 13 } })) await producer.ready();
  }
  await producer.flush();
  console.error(`produced ${totalEvents} events in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  // 1. The raw consumer: one AckNone consumer per partition, callback mode, batches of 10k.
  const partitionStreams = Array.from({ length: partitions }, (_, partition) => streams.partition('clicks', partition));
  const rawSeconds = await readRaw(nc, partitionStreams, { expected: totalEvents });

  // 2. The engine: a standalone worker (one task per partition) with a tumbling 1-minute count per key, KV sink.
  const job = validateJob({
    name: 'bench',
    version: 'v1',
    source: { topic: 'clicks' },
    key: 'user', // the field the topic is partitioned by: read directly
    time: (event: { ts: number }) => event.ts,
    watermark: { maxOutOfOrderness: '1s' },
    window: { kind: 'tumbling', size: '1m' },
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
  });
  const metrics = new WorkerMetrics();
  t = performance.now();
  const worker = await StandaloneWorker.start({
    nc,
    job,
    stateDir,
    clock: systemClock,
    logger: pino({ level: 'warn' }),
    metrics,
  });
  while (worker.progress().reduce((sum, task) => sum + task.processed, 0) < totalEvents) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const engineSeconds = (performance.now() - t) / 1000;
  await worker.stop();

  const rawRate = totalEvents / rawSeconds;
  const engineRate = totalEvents / engineSeconds;
  console.log(`engine / raw AckNone consumer: ${(engineRate / rawRate).toFixed(2)}`);
  console.log(`  raw consumer: ${Math.round(rawRate).toLocaleString('en')} events/s (${rawSeconds.toFixed(2)} s)`);
  console.log(
    `  engine (tumbling 1m count, ${keyCount} keys, ${partitions} partitions, KV sink): ${Math.round(engineRate).toLocaleString('en')} events/s (${engineSeconds.toFixed(2)} s)`,
  );
} finally {
  await nc.close();
  await server.close();
  rmSync(stateDir, { recursive: true, force: true });
}
