// A topic records the field its events are partitioned by (client/topics.ts, the registry's
// `key`): `kappa topic create --key`, or the first `kappa produce --key`; a produce keyed by
// another field is refused before it publishes anything. Names starting `rp_` are the repartition
// topics' (internal, with an age limit). The built CLI and the client against a real nats-server.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopic, describeTopic, getTopic, recordTopicKey, TopicKeyMismatchError } from '../client/index.js';
import { streams } from '../protocol/index.js';
import { kappa as runKappa } from './harness/cli.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-topic-keys-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function kappa(args: string[]) {
  return runKappa([...args, '--nats', nats.url]);
}

/** A JSON lines file of `count` clicks with a user, a page and a time. */
function clicksFile(name: string, count: number): string {
  const file = join(dir, `${name}.jsonl`);
  const lines = Array.from({ length: count }, (_, index) =>
    JSON.stringify({ user: `u${index % 5}`, page: `/p${index % 3}`, ts: 1_700_000_000_000 + index }),
  );
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

async function messages(topic: string): Promise<number> {
  return (await describeTopic(nats.nc, topic)).totals.messages;
}

describe('kappa topic create --key', () => {
  it('records the key, and list and describe show it', async () => {
    const created = await kappa(['topic', 'create', 'clicks', '--partitions', '4', '--key', 'page']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain("topic clicks: 4 partitions, 1 replica(s), partitioned by 'page'");
    expect(await getTopic(nats.nc, 'clicks')).toMatchObject({ partitions: 4, key: 'page' });

    const listed = await kappa(['topic', 'list']);
    expect(listed.stdout).toMatch(/^clicks\s+4\s+1\s+page\s+\d{4}-/m);
    const described = await kappa(['topic', 'describe', 'clicks']);
    expect(described.stdout).toMatch(/^topic clicks: 4 partitions, 1 replica\(s\), partitioned by 'page', created /m);
  });

  it('records a key on an existing topic that has none, and refuses another key than the one recorded', async () => {
    await createTopic(nats.nc, { name: 'untagged', partitions: 2 });
    expect((await getTopic(nats.nc, 'untagged')).key).toBeUndefined();
    const tagged = await kappa(['topic', 'create', 'untagged', '--partitions', '2', '--key', 'user']);
    expect(tagged.code, tagged.stderr).toBe(0);
    expect((await getTopic(nats.nc, 'untagged')).key).toBe('user');
    const other = await kappa(['topic', 'create', 'untagged', '--partitions', '2', '--key', 'page']);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain("topic untagged is partitioned by 'user'");
    expect((await getTopic(nats.nc, 'untagged')).key).toBe('user');
  });

  it('refuses a user topic named like a repartition topic; an internal one gets an age limit of 7 days', async () => {
    const refused = await kappa(['topic', 'create', 'rp_5_count_v1', '--partitions', '2']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^kappa: topic name "rp_5_count_v1" starts with 'rp_', the namespace of the repartition topics/,
    );
    await expect(createTopic(nats.nc, { name: 'rp_mine', partitions: 1 })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    await expect(getTopic(nats.nc, 'rp_5_count_v1')).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });

    await createTopic(nats.nc, { name: 'rp_5_count_v1', partitions: 2, internal: true });
    const jsm = await jetstreamManager(nats.nc);
    for (const partition of [0, 1]) {
      const { config } = await jsm.streams.info(streams.partition('rp_5_count_v1', partition));
      expect(config.max_age).toBe(nanos(7 * 24 * 60 * 60 * 1000));
    }
    // A user topic has no age limit.
    expect((await jsm.streams.info(streams.partition('clicks', 0))).config.max_age).toBe(0);
    const listed = await kappa(['topic', 'list']);
    expect(listed.stdout).toMatch(/^rp_5_count_v1\s+2\s+1\s+-\s+\S+\s+internal \(repartition topic\)$/m);
    const json = JSON.parse((await kappa(['topic', 'list', '--json'])).stdout) as Array<{
      name: string;
      internal: boolean;
    }>;
    expect(json.filter((topic) => topic.internal).map((topic) => topic.name)).toEqual(['rp_5_count_v1']);
  });
});

describe('kappa produce --key', () => {
  it('records its key on a topic that has none, then refuses another key before publishing anything', async () => {
    await createTopic(nats.nc, { name: 'views', partitions: 3 });
    const file = clicksFile('views', 30);
    const first = await kappa(['produce', 'views', '--file', file, '--key', 'user', '--time', 'ts']);
    expect(first.code, first.stderr).toBe(0);
    expect((await getTopic(nats.nc, 'views')).key).toBe('user');
    expect(await messages('views')).toBe(30);

    const again = await kappa(['produce', 'views', '--file', file, '--key', 'user', '--time', 'ts', '--id', 'two']);
    expect(again.code, again.stderr).toBe(0);
    expect(await messages('views')).toBe(60);

    const refused = await kappa(['produce', 'views', '--file', file, '--key', 'page', '--time', 'ts']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("topic views is partitioned by 'user'");
    expect(refused.stderr).toContain('produce to another topic');
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(await messages('views')).toBe(60);
    expect((await getTopic(nats.nc, 'views')).key).toBe('user');
  });

  it('publishes to a topic created with the same key', async () => {
    const file = clicksFile('clicks', 12);
    const produced = await kappa(['produce', 'clicks', '--file', file, '--key', 'page', '--time', 'ts']);
    expect(produced.code, produced.stderr).toBe(0);
    expect(await messages('clicks')).toBe(12);
  });

  it('refuses to produce into a repartition topic', async () => {
    const file = clicksFile('rp', 1);
    const refused = await kappa(['produce', 'rp_5_count_v1', '--file', file, '--key', 'user', '--time', 'ts']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('repartition topic');
    expect(await messages('rp_5_count_v1')).toBe(0);
  });
});

it('lets one of two producers racing to record different keys win (compare-and-set)', async () => {
  await createTopic(nats.nc, { name: 'race', partitions: 1 });
  const results = await Promise.allSettled([
    recordTopicKey(nats.nc, 'race', 'user'),
    recordTopicKey(nats.nc, 'race', 'page'),
  ]);
  const won = results.filter((result) => result.status === 'fulfilled');
  const lost = results.filter((result) => result.status === 'rejected');
  expect(won).toHaveLength(1);
  expect(lost).toHaveLength(1);
  expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(TopicKeyMismatchError);
  const recorded = (await getTopic(nats.nc, 'race')).key;
  expect((won[0] as PromiseFulfilledResult<{ key?: string }>).value.key).toBe(recorded);
});
