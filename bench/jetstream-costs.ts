// What nats-server (the machine's 2.9) spends per message on the paths a replay uses, measured
// as the server process's CPU seconds over a known number of messages: storing a serving-table
// row (a KV put awaited through its PubAck, with and without the compare-and-set header),
// storing a message with no reply (no PubAck), and delivering stored messages to an AckNone
// consumer (the raw consumer the benches compare against). These are floors no client code can
// lower: bench/README.md "What nats-server costs".
// Run: npx tsx bench/jetstream-costs.ts [messages=160000]
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, MsgHdrsImpl } from '@nats-io/transport-node';
import { BatchPublisher, type BatchMessage } from '../client/publish-batch.js';
import { ExpectedLastSubjectSequence, KvTables } from '../tables/kv-tables.js';
import type { TableOutput } from '../tables/types.js';
import { startServer } from '../test/harness/nats-server.js';
import { cpuSeconds } from './cpu-meter.js';
import { readRaw } from './raw-consumer.js';

const total = Number(process.argv[2] ?? 160_000);
/** Rows per awaited batch, as a replaying task's table flush sends them. */
const BATCH = 8_000;
const payload = new Uint8Array(60).fill(65);

const server = await startServer();
const nc = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc);
const publisher = new BatchPublisher(nc);

/** Runs `work` and prints the server's and this process's CPU µs per message, and the wall time. */
async function measure(what: string, work: () => Promise<void>): Promise<void> {
  const cpuBefore = cpuSeconds(server.pid);
  const clientBefore = process.cpuUsage();
  const startedAt = performance.now();
  await work();
  const seconds = (performance.now() - startedAt) / 1000;
  const serverMicros = ((cpuSeconds(server.pid) - cpuBefore) * 1e6) / total;
  const client = process.cpuUsage(clientBefore);
  const clientMicros = (client.user + client.system) / total;
  console.log(
    `${what.padEnd(58)} server ${serverMicros.toFixed(1).padStart(5)}, client ${clientMicros.toFixed(1).padStart(5)} CPU µs/message   ${seconds.toFixed(2)} s`,
  );
}

/** Every message through the batch publisher, each awaited through its PubAck; all must be stored. */
async function publishAcked(subjectOf: (index: number) => string, headers: () => MsgHdrsImpl): Promise<void> {
  for (let start = 0; start < total; start += BATCH) {
    const messages: BatchMessage[] = [];
    for (let index = start; index < Math.min(total, start + BATCH); index++)
      messages.push({ subject: subjectOf(index), payload, headers: headers() });
    const refused = (await publisher.publish(messages)).find((ack) => !ack.stored);
    if (refused) throw new Error(`a message was refused: ${JSON.stringify(refused)}`);
  }
}

/** Every message as a core publish with no reply: the server stores it and answers nothing. */
async function publishUnacked(stream: string, subjectOf: (index: number) => string): Promise<void> {
  for (let index = 0; index < total; index++) {
    nc.publish(subjectOf(index), payload);
    if (index % 5_000 === 0) await nc.flush();
  }
  await nc.flush();
  while ((await jsm.streams.info(stream)).state.messages < total)
    await new Promise((resolve) => setTimeout(resolve, 20));
}

/** A batch of a tumbling count's window rows (10k keys, one-minute windows), as a task's table flush writes them. */
function windowRows(start: number, revision: number): TableOutput[] {
  const rows: TableOutput[] = [];
  for (let index = start; index < Math.min(total, start + BATCH); index++) {
    const windowStart = Date.UTC(2026, 0, 1) + Math.floor(index / 10_000) * 60_000;
    rows.push({
      key: `user-${index % 10_000}`,
      window: { start: windowStart, end: windowStart + 60_000 },
      value: revision + (index % 17),
      revision,
      kind: 'update',
    });
  }
  return rows;
}

/** Row keys of a table of 10k keys and their windows, as a tumbling count's rows. */
const rowKey = (index: number) => `user-${index % 10_000}_${Math.floor(index / 10_000)}`;
const absent = new ExpectedLastSubjectSequence(0);

try {
  const table = await new KvTables(nc).writer('bench', 'v1');
  await measure('table rows through the KV table writer (new rows)', async () => {
    for (let start = 0; start < total; start += BATCH) await table.write(windowRows(start, 1));
  });
  await measure('the same rows again, a revision later (compare-and-set)', async () => {
    for (let start = 0; start < total; start += BATCH) await table.write(windowRows(start, 2));
  });
  await new Kvm(nc).create('rows', { history: 1 });
  await measure('KV row put, compare-and-set header, PubAck awaited', () =>
    publishAcked(
      (index) => `$KV.rows.${rowKey(index)}`,
      () => absent,
    ),
  );
  await new Kvm(nc).create('plain_rows', { history: 1 });
  await measure('KV row put, no header, PubAck awaited', () =>
    publishAcked(
      (index) => `$KV.plain_rows.${rowKey(index)}`,
      () => new MsgHdrsImpl(),
    ),
  );
  await jsm.streams.add({ name: 'file', subjects: ['file.>'] });
  await measure('file stream, no reply (no PubAck)', () => publishUnacked('file', (index) => `file.${rowKey(index)}`));
  await jsm.streams.add({ name: 'memory', subjects: ['memory.>'], storage: 'memory' as never });
  await measure('memory stream, no reply (no PubAck)', () =>
    publishUnacked('memory', (index) => `memory.${rowKey(index)}`),
  );
  await measure('delivery of the file stream to an AckNone consumer', async () => {
    await readRaw(nc, ['file'], { expected: total });
  });
} finally {
  publisher.close();
  await nc.close();
  await server.close();
}
