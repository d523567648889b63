// `kappa nexmark generate`, end to end: the built CLI as a child process against a real
// nats-server from the harness. The expected partition of each event is computed here (FNV-1a of
// the key field named by the issue), the expected events by the generator itself.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvent, fnv1a32, streams, subjects } from '../protocol/index.js';
import { describeTopic, getTopic } from '../client/index.js';
import { generateNexmark, type NexmarkEvent } from '../client/nexmark/generator.js';
import { kappa } from './harness/cli.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-nexmark-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const TOPICS = { person: 'nexmark-person', auction: 'nexmark-auction', bid: 'nexmark-bid' } as const;
/** The key field of each topic, as the issue names it. */
const KEY_FIELDS = { person: 'id', auction: 'id', bid: 'auction' } as const;

function readJsonLines(file: string): NexmarkEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as NexmarkEvent);
}

describe('kappa nexmark generate', () => {
  it('publishes 2000 events to the three topics, each in the partition its key hashes to, and writes the same events to the file', async () => {
    const partitions = 4;
    const file = join(dir, 'events.jsonl');
    const result = await kappa([
      'nexmark',
      'generate',
      '--events',
      '2000',
      '--partitions',
      String(partitions),
      '--file',
      file,
      '--nats',
      nats.url,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/generated 2000 events \(40 persons, 120 auctions, 1840 bids, seed 1\)/);

    const written = readJsonLines(file);
    expect(written).toEqual([...generateNexmark({ events: 2000 })]);

    for (const type of ['person', 'auction', 'bid'] as const) {
      const topic = TOPICS[type];
      expect((await getTopic(nats.nc, topic)).key).toBe(KEY_FIELDS[type]);
      const description = await describeTopic(nats.nc, topic);
      expect(description.partitions).toBe(partitions);
      const ofType = written.filter((event) => event.type === type);
      expect(description.totals.messages).toBe(ofType.length);

      const stored: NexmarkEvent[] = [];
      for (let partition = 0; partition < partitions; partition++) {
        const messages = await readSubject(
          nats.nc,
          streams.partition(topic, partition),
          subjects.partition(topic, partition),
        );
        for (const message of messages) {
          const { key, time, value } = decodeEvent(message.data) as { key: string; time: number; value: NexmarkEvent };
          const keyField = (value as unknown as Record<string, number>)[KEY_FIELDS[type]];
          expect(key).toBe(String(keyField));
          expect(fnv1a32(Buffer.from(key, 'utf8')) % partitions).toBe(partition);
          expect(time).toBe(value.dateTime);
          stored.push(value);
        }
      }
      const order = (event: NexmarkEvent) => JSON.stringify(event);
      expect(stored.map(order).sort()).toEqual(ofType.map(order).sort());
    }
  }, 120_000);

  it('refuses --no-publish without --file with exit 2, and writes only the file with it', async () => {
    const refused = await kappa(['nexmark', 'generate', '--events', '10', '--no-publish', '--nats', nats.url]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--no-publish without --file/);

    const file = join(dir, 'only-file.jsonl');
    // No server at this address: with --no-publish nothing connects.
    const written = await kappa([
      'nexmark',
      'generate',
      '--events',
      '300',
      '--seed',
      '9',
      '--rate',
      '250',
      '--out-of-orderness',
      '2s',
      '--no-publish',
      '--file',
      file,
      '--nats',
      'nats://127.0.0.1:1',
    ]);
    expect(written.code).toBe(0);
    expect(readJsonLines(file)).toEqual([
      ...generateNexmark({ events: 300, seed: 9, rate: 250, outOfOrdernessMs: 2000 }),
    ]);
  }, 60_000);
});
