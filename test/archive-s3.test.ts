// The S3 segment store against a real S3-compatible server (moto_server, from PyPI's moto,
// started here on a free port), and the archiver writing to it: the same segments, read back the
// same, as with the NATS Object Store. moto does not check signatures; the signing follows AWS's
// Signature Version 4 and is exercised only by a real S3.
import { spawn, type ChildProcess } from 'node:child_process';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archiver } from '../archive/archiver.js';
import { ArchiveCatalog, assertContiguous } from '../archive/catalog.js';
import { openSegmentStore } from '../archive/open-segment-store.js';
import { readTopicArchive } from '../archive/reader.js';
import { S3SegmentStore, s3SettingsFromEnv } from '../archive/s3-segment-store.js';
import { createTopic, Producer } from '../client/index.js';
import { ManualClock, streams } from '../protocol/index.js';
import { freePort } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
let moto: ChildProcess | undefined;
let endpoint = '';

beforeAll(async () => {
  const port = await freePort();
  endpoint = `http://127.0.0.1:${port}`;
  // Its own process group: moto_server is a pyenv shim whose child is the server.
  moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore', detached: true });
  await pollUntil(
    async () => {
      try {
        return (await fetch(endpoint)).status > 0;
      } catch {
        return false;
      }
    },
    { what: 'moto_server to answer', timeoutMs: 30_000, intervalMs: 200 },
  );
}, 40_000);

afterAll(() => {
  if (moto?.pid !== undefined) process.kill(-moto.pid, 'SIGTERM');
});

const env = () => ({
  KAPPA_ARCHIVE_S3_ENDPOINT: endpoint,
  KAPPA_ARCHIVE_S3_BUCKET: 'kappa-test',
  KAPPA_ARCHIVE_S3_PREFIX: 'cold/',
  AWS_ACCESS_KEY_ID: 'test-key',
  AWS_SECRET_ACCESS_KEY: 'test-secret',
});

describe('S3 segment store', () => {
  it('puts, gets, lists by prefix (over pages) and deletes objects', async () => {
    const store = new S3SegmentStore(s3SettingsFromEnv(env())!);
    await store.ensureBucket();
    const names = Array.from({ length: 1_005 }, (_, index) => `t/0/${String(index).padStart(5, '0')}.parquet`);
    await Promise.all(names.map((name, index) => store.put(name, new Uint8Array([index % 256, 1, 2]))));
    await store.put('t/1/a b+c.parquet', new Uint8Array([9]));
    expect(await store.get('t/0/00007.parquet')).toEqual(new Uint8Array([7, 1, 2]));
    expect(await store.get('t/0/missing.parquet')).toBeUndefined();
    // S3 lists 1,000 keys a page: the store follows the continuation token.
    expect(await store.list('t/0/')).toEqual(names);
    expect(await store.list('t/1/')).toEqual(['t/1/a b+c.parquet']);
    await store.delete('t/1/a b+c.parquet');
    await store.delete('t/1/a b+c.parquet');
    expect(await store.list('t/1/')).toEqual([]);
  });

  it('holds what the archiver seals, read back equal to the stream', async () => {
    const nc = nats.nc;
    await createTopic(nc, { name: 's3_topic', partitions: 2 });
    const producer = await Producer.forTopic(nc, 's3_topic');
    for (let index = 0; index < 1_500; index++)
      if (!producer.publish({ key: `k${index % 13}`, time: 1_767_225_600_000 + index, value: index }))
        await producer.ready();
    await producer.close();
    const store = await openSegmentStore(nc, { env: env() });
    expect(store).toBeInstanceOf(S3SegmentStore);
    const catalog = await ArchiveCatalog.open(nc);
    await new Archiver({ nc, store, catalog, clock: new ManualClock(Date.now()), maxSegmentEvents: 300 }).archiveTopic(
      's3_topic',
      { force: true },
    );
    const archived = await readTopicArchive(store, catalog, 's3_topic', 2);
    const jsm = await jetstreamManager(nc);
    for (const partition of [0, 1]) {
      const { segments } = await catalog.read('s3_topic', partition);
      assertContiguous('s3_topic', partition, segments);
      expect(await store.list(`s3_topic/${partition}/`)).toEqual(segments.map((segment) => segment.name));
      const stream = streams.partition('s3_topic', partition);
      const { state } = await jsm.streams.info(stream);
      const expected: string[] = [];
      const batch = await (await jetstream(nc).consumers.get(stream)).fetch({ max_messages: state.messages });
      for await (const message of batch) {
        expected.push(`${message.seq}:${Buffer.from(message.data).toString('hex')}`);
        if (expected.length === state.messages) break;
      }
      expect(
        archived[partition]!.map((message) => `${message.sequence}:${Buffer.from(message.data).toString('hex')}`),
      ).toEqual(expected);
    }
  });

  it('is chosen only when the environment names a bucket, and needs credentials', () => {
    expect(s3SettingsFromEnv({})).toBeUndefined();
    expect(() => s3SettingsFromEnv({ KAPPA_ARCHIVE_S3_BUCKET: 'b', KAPPA_ARCHIVE_S3_ENDPOINT: endpoint })).toThrow(
      /credentials/,
    );
  });
});
