// Topics and `kappa produce`, end to end: the built CLI as a child process against a real
// nats-server from the harness. Expected counts are computed here from the input file.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvent, fnv1a32, MAX_KEY_BYTES } from '../protocol/index.js';
import {
  createTopic,
  deleteTopic,
  describeTopic,
  EventRejectedError,
  getTopic,
  listTopics,
  Producer,
} from '../client/index.js';
import { kappa as runKappa } from './harness/cli.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-produce-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The built CLI against this file's server. */
function kappa(args: string[], url = nats.url) {
  return runKappa([...args, '--nats', url]);
}

/** Partition of a key computed independently of the producer: FNV-1a-32 of its UTF-8 bytes. */
function expectedPartition(key: string, partitions: number): number {
  return fnv1a32(Buffer.from(key, 'utf8')) % partitions;
}

describe('kappa produce', () => {
  it('publishes a 1,000,000-line file into 16 partitions with per-partition counts matching the key hash', async () => {
    const partitions = 16;
    await createTopic(nats.nc, { name: 'orders', partitions });
    const file = join(dir, 'orders.jsonl');
    const expected = new Array<number>(partitions).fill(0);
    const out = createWriteStream(file);
    for (let index = 0; index < 1_000_000; index++) {
      // Keys include non-ASCII and subject-unsafe ones, which take the base64url token path.
      const key = index % 97 === 0 ? `clé ${index % 1000}` : `customer-${(index * 7919) % 100_003}`;
      expected[expectedPartition(key, partitions)]!++;
      const line = JSON.stringify({ customer: key, ts: 1_700_000_000_000 + index, amount: index % 500 });
      if (!out.write(line + '\n')) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');

    const result = await kappa(['produce', 'orders', '--file', file, '--key', 'customer', '--time', 'ts']);
    expect(result.stderr).not.toContain('rejected:');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/published 1000000 events/);

    const description = await describeTopic(nats.nc, 'orders');
    expect(description.totals.messages).toBe(1_000_000);
    expect(description.partitionStates.map((p) => p.messages)).toEqual(expected);
  }, 300_000);

  it('publishes the good lines, lists the 5 bad line numbers on stderr and in the rejects file, and exits 3', async () => {
    await createTopic(nats.nc, { name: 'mixed', partitions: 4 });
    const lines: string[] = [];
    const bad = new Map<number, string>([
      [3, 'this is not json'],
      [7, JSON.stringify({ ts: 1_700_000_000_000, v: 1 })],
      [12, JSON.stringify({ id: 'k-12', v: 1 })],
      [15, JSON.stringify({ id: 'k-15', ts: '2024-13-01T00:00:00Z' })],
      [20, JSON.stringify({ id: 'k-20', ts: 'yesterday' })],
    ]);
    let good = 0;
    for (let lineNumber = 1; lineNumber <= 25; lineNumber++) {
      const badLine = bad.get(lineNumber);
      if (badLine) {
        lines.push(badLine);
        continue;
      }
      good++;
      // Both time forms: ms and ISO-8601 with an offset.
      const ts =
        lineNumber % 2 === 0 ? 1_700_000_000_000 + lineNumber : `2024-03-0${(lineNumber % 9) + 1}T10:00:00+02:00`;
      lines.push(JSON.stringify({ id: `k-${lineNumber}`, ts, v: lineNumber }));
    }
    const file = join(dir, 'mixed.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');

    const result = await kappa(['produce', 'mixed', '--file', file, '--key', 'id', '--time', 'ts']);
    expect(result.code).toBe(3);
    const listed = [...result.stderr.matchAll(/line (\d+) rejected/g)].map((match) => Number(match[1]));
    expect(listed).toEqual([...bad.keys()]);
    const rejects = readFileSync(`${file}.rejects`, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { line: number; input: string });
    expect(rejects.map((reject) => reject.line)).toEqual([...bad.keys()]);
    expect(rejects.map((reject) => reject.input)).toEqual([...bad.values()]);
    expect((await describeTopic(nats.nc, 'mixed')).totals.messages).toBe(good);
  });

  it('stores nothing new when the same file is produced again with the same --id', async () => {
    await createTopic(nats.nc, { name: 'dedup', partitions: 8 });
    const file = join(dir, 'dedup.jsonl');
    writeFileSync(
      file,
      Array.from({ length: 5000 }, (_, index) => JSON.stringify({ k: `key-${index % 300}`, t: index })).join('\n'),
    );
    const args = ['produce', 'dedup', '--file', file, '--key', 'k', '--time', 't', '--id', 'loader-1'];

    expect((await kappa(args)).code).toBe(0);
    const first = await describeTopic(nats.nc, 'dedup');
    expect(first.totals.messages).toBe(5000);

    const again = await kappa(args);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('5000 already stored');
    const second = await describeTopic(nats.nc, 'dedup');
    expect(second.totals.messages).toBe(5000);
    expect(second.partitionStates.map((p) => p.lastSequence)).toEqual(first.partitionStates.map((p) => p.lastSequence));
  });

  it('resends publishes whose ack timed out with the same message id, so each event is stored once', async () => {
    await createTopic(nats.nc, { name: 'stalled', partitions: 4 });
    const producer = await Producer.forTopic(nats.nc, 'stalled', { ackTimeoutMs: 200, retryForMs: 10_000 });
    nats.server.pause();
    for (let index = 0; index < 2000; index++) producer.publish({ key: `k-${index % 50}`, time: index, value: index });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    nats.server.resume();
    const stats = await producer.close();
    expect(stats.retries).toBeGreaterThan(0);
    expect(stats.acknowledged).toBe(2000);
    expect((await describeTopic(nats.nc, 'stalled')).totals.messages).toBe(2000);
  });

  it('fails a producer whose topic streams are gone instead of dropping its events', async () => {
    await createTopic(nats.nc, { name: 'vanishing', partitions: 2 });
    const producer = await Producer.forTopic(nats.nc, 'vanishing');
    await deleteTopic(nats.nc, 'vanishing');
    producer.publish({ key: 'a', time: 1, value: null });
    await expect(producer.flush()).rejects.toMatchObject({ code: 'PUBLISH_FAILED' });
  });
});

describe('keys and messages past the NATS limits', () => {
  it('rejects an over-max_payload line and a 6,000-character key into the rejects file, publishes a newline, a unicode and a 1,024-byte key, fast, and exits 3', async () => {
    const partitions = 4;
    await createTopic(nats.nc, { name: 'limits', partitions });
    const maxPayload = nats.nc.info!.max_payload;
    const lines = [
      { k: 'plain', t: 1 },
      { k: 'huge-value', t: 2, v: 'x'.repeat(maxPayload) },
      { k: 'x'.repeat(6000), t: 3 },
      { k: 'two\nlines', t: 4 },
      { k: 'clé 日本 🎉', t: 5 },
      { k: 'k'.repeat(MAX_KEY_BYTES), t: 6 },
      { k: 'almost-too-big', t: 7, v: 'y'.repeat(maxPayload - 2000) },
      { k: 'after', t: 8 },
    ].map((line) => JSON.stringify(line));
    const file = join(dir, 'limits.jsonl');
    writeFileSync(file, lines.join('\n') + '\n');
    // A producer id a header cannot carry as is: a newline and non-ASCII.
    const args = ['produce', 'limits', '--file', file, '--key', 'k', '--time', 't', '--id', 'loader\nΩ'];

    const startedAt = Date.now();
    const result = await kappa(args);
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/published 6 events to limits .* rejected 2 lines/);
    const rejects = readFileSync(`${file}.rejects`, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { line: number; reason: string; input: string });
    expect(rejects.map((reject) => reject.line)).toEqual([2, 3]);
    expect(rejects.map((reject) => reject.input)).toEqual([lines[1], lines[2]]);
    expect(rejects[0]!.reason).toMatch(
      new RegExp(`"huge-value" is \\d+ bytes as a message, more than the server's max_payload of ${maxPayload} bytes`),
    );
    expect(rejects[1]!.reason).toMatch(new RegExp(`the key is 6000 bytes, more than the limit of ${MAX_KEY_BYTES}`));

    // Every published key is stored once, in the partition its hash names, and reads back as written.
    const published = ['plain', 'two\nlines', 'clé 日本 🎉', 'k'.repeat(MAX_KEY_BYTES), 'almost-too-big', 'after'];
    const stored: string[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      for (const message of await readSubject(nats.nc, `KAPPA_limits_${partition}`, `limits.${partition}.>`)) {
        const { key } = decodeEvent(message.data);
        expect(expectedPartition(key, partitions)).toBe(partition);
        expect(message.headers?.get('Nats-Msg-Id')).toMatch(/^loader%0A%CE%A9:\d+$/);
        stored.push(key);
      }
    }
    expect(stored.sort()).toEqual([...published].sort());

    // The encoded producer id deduplicates a rerun like any other.
    const again = await kappa(args);
    expect(again.code).toBe(3);
    expect(again.stdout).toContain('6 already stored');
    expect((await describeTopic(nats.nc, 'limits')).totals.messages).toBe(6);
  }, 60_000);

  it('refuses an event past the key or max_payload limit with a typed error before sending, and goes on publishing', async () => {
    await createTopic(nats.nc, { name: 'limits-api', partitions: 2 });
    const producer = await Producer.forTopic(nats.nc, 'limits-api');
    const maxPayload = nats.nc.info!.max_payload;
    expect(() => producer.publish({ key: 'x'.repeat(MAX_KEY_BYTES + 1), time: 1, value: null })).toThrow(
      expect.objectContaining({
        code: 'KEY_INVALID',
        limitBytes: MAX_KEY_BYTES,
        message: expect.stringContaining(`the key is ${MAX_KEY_BYTES + 1} bytes`),
      }),
    );
    // Multi-byte characters count as their UTF-8 bytes: 342 × 3 bytes > 1,024.
    expect(() => producer.publish({ key: '日'.repeat(342), time: 1, value: null })).toThrow(EventRejectedError);
    expect(() => producer.publish({ key: 'big', time: 1, value: 'x'.repeat(maxPayload) })).toThrow(
      expect.objectContaining({
        code: 'EVENT_TOO_LARGE',
        limitBytes: maxPayload,
        message: expect.stringContaining(`max_payload of ${maxPayload} bytes`),
      }),
    );
    producer.publish({ key: 'fine', time: 1, value: null });
    const stats = await producer.close();
    expect(stats.acknowledged).toBe(1);
    expect((await describeTopic(nats.nc, 'limits-api')).totals.messages).toBe(1);
  });
});

describe('kappa topic', () => {
  it('creates, lists, describes and deletes a topic, with first and last sequences per partition', async () => {
    const created = await kappa(['topic', 'create', 'roundtrip', '--partitions', '3']);
    expect(created.code).toBe(0);
    expect((await kappa(['topic', 'create', 'roundtrip', '--partitions', '3'])).code).toBe(0);
    const conflicting = await kappa(['topic', 'create', 'roundtrip', '--partitions', '4']);
    expect(conflicting.code).toBe(1);
    expect(conflicting.stderr).toContain('already exists with 3 partitions');
    await expect(createTopic(nats.nc, { name: 'roundtrip', partitions: 4 })).rejects.toMatchObject({
      code: 'TOPIC_EXISTS',
    });

    expect(await getTopic(nats.nc, 'roundtrip')).toMatchObject({ partitions: 3, replicas: 1 });
    const listed = await kappa(['topic', 'list']);
    expect(listed.stdout).toMatch(/^roundtrip\s+3\s+1\s/m);
    expect((await listTopics(nats.nc)).map((topic) => topic.name)).toContain('roundtrip');

    // Key → partition under P = 3, computed here; 5 events into one partition, 2 into another.
    const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const byPartition = new Map<number, string[]>();
    for (const key of keys)
      byPartition.set(expectedPartition(key, 3), [...(byPartition.get(expectedPartition(key, 3)) ?? []), key]);
    const [[full, fullKeys], [partial, partialKeys]] = [...byPartition.entries()] as [
      [number, string[]],
      [number, string[]],
    ];
    const producer = await Producer.forTopic(nats.nc, 'roundtrip');
    for (let index = 0; index < 5; index++) producer.publish({ key: fullKeys[0]!, time: index, value: index });
    for (let index = 0; index < 2; index++) producer.publish({ key: partialKeys[0]!, time: index, value: index });
    await producer.close();

    const described = await kappa(['topic', 'describe', 'roundtrip', '--json']);
    expect(described.code).toBe(0);
    const description = JSON.parse(described.stdout) as Awaited<ReturnType<typeof describeTopic>>;
    expect(description.partitionStates[full]).toMatchObject({ firstSequence: 1, lastSequence: 5, messages: 5 });
    expect(description.partitionStates[partial]).toMatchObject({ firstSequence: 1, lastSequence: 2, messages: 2 });
    const empty = [0, 1, 2].find((partition) => partition !== full && partition !== partial)!;
    expect(description.partitionStates[empty]).toMatchObject({ firstSequence: 0, lastSequence: 0, messages: 0 });
    expect(description.totals.messages).toBe(7);
    const table = await kappa(['topic', 'describe', 'roundtrip']);
    expect(table.stdout).toMatch(/^total\s+7\s/m);

    expect((await kappa(['topic', 'delete', 'roundtrip'])).code).toBe(0);
    const gone = await kappa(['topic', 'describe', 'roundtrip']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('does not exist');
    await expect(getTopic(nats.nc, 'roundtrip')).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
  });

  it('reports an unreachable server in one line naming the URL, with exit code 4', async () => {
    const url = 'nats://127.0.0.1:1';
    // produce retries for --retry-for (a node may be restarting) before it gives up the same way.
    for (const args of [
      ['topic', 'list'],
      ['produce', 'x', '--file', '-', '--key', 'k', '--time', 't', '--retry-for', '1s'],
    ]) {
      const result = await kappa(args, url);
      expect(result.code).toBe(4);
      // One line saying why, after any "waiting for NATS" progress lines.
      const lines = result.stderr.trim().split('\n');
      expect(lines.slice(0, -1).every((line) => line.startsWith('kappa: waiting for NATS: '))).toBe(true);
      expect(lines.at(-1)).toContain(url);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
