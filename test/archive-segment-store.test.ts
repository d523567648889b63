// The NATS Object Store segment store reads an object's chunks straight from the bucket's stream
// (archive/segment-store.ts): every byte back in order across many chunks, an empty object, a
// missing one, and an object written again under its name.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();

describe('NatsObjectSegmentStore', () => {
  it('gives back the bytes put, across many chunks, for an empty object and after an overwrite; nothing for a missing one', async () => {
    const store = await NatsObjectSegmentStore.open(nats.nc);
    const large = randomBytes(1_300_001); // 11 chunks of the client's 128 KiB, the last one short
    await store.put('large', large);
    await store.put('empty', new Uint8Array(0));
    expect(Buffer.from((await store.get('large'))!).equals(large)).toBe(true);
    expect(await store.get('empty')).toEqual(new Uint8Array(0));
    expect(await store.get('missing')).toBeUndefined();
    const again = randomBytes(200_000);
    await store.put('large', again);
    expect(Buffer.from((await store.get('large'))!).equals(again)).toBe(true);
    await store.delete('large');
    expect(await store.get('large')).toBeUndefined();
  });
});
