// The partition source (worker/source.ts): where each message's stream sequence and log time come
// from (read from the reply subject in place, in both of its shapes, the client's own parse for
// any other), and its back-pressure by bytes, against a real nats-server.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useNatsServer } from './harness/use-nats.js';
import { deliveredMessage, DeliveryReader, PartitionSource, readDelivery } from '../worker/source.js';

/** What the client makes of a timestamp token: parseInt of the whole token (a double), then ms. */
function clientMs(nanos: string): number {
  return Math.floor(parseInt(nanos, 10) / 1_000_000);
}

/** Timestamps whose ns within the ms lie on, near and far from a ms boundary, where rounding the whole token as a double matters. */
const NANOS = [
  '1796130226169064844',
  '1796130226169000000',
  '1796130226169000001',
  '1796130226169000127',
  '1796130226169000128',
  '1796130226169000999',
  '1796130226169001000',
  '1796130226169998999',
  '1796130226169999000',
  '1796130226169999872',
  '1796130226169999999',
  // Where the client's doubles land on another ms than the digits say (found by search).
  '1796130226170999999',
  '1796130226171999900',
  '1796130226170000000',
  '1796130226178000000',
  '1000000000000',
  '999999',
  '0',
  // Past 2^63 ns (year 2262): parsed as the client parses it.
  '9999999999999999999999',
];

describe('reading the reply subject', () => {
  it('reads the stream sequence and the log time of the 9-token subject, as the client does', () => {
    for (const nanos of NANOS) {
      const into = { sequence: 0, logTimeMs: 0 };
      expect(readDelivery(`$JS.ACK.kappa_clicks_p3.Xk2c9.1.4711.4000.${nanos}.96`, into)).toBe(true);
      expect(into).toEqual({ sequence: 4711, logTimeMs: clientMs(nanos) });
    }
  });

  it('reads the 12-token subject (domain, account hash, random token) and the 11-token one', () => {
    for (const nanos of NANOS) {
      const twelve = { sequence: 0, logTimeMs: 0 };
      expect(readDelivery(`$JS.ACK.hub.ACCHASH123.kappa_clicks_p3.Xk2c9.2.88.80.${nanos}.0.r4nd0m`, twelve)).toBe(true);
      expect(twelve).toEqual({ sequence: 88, logTimeMs: clientMs(nanos) });
      const eleven = { sequence: 0, logTimeMs: 0 };
      expect(readDelivery(`$JS.ACK._.ACCHASH123.s.c.1.9007199254740991.5.${nanos}.0`, eleven)).toBe(true);
      expect(eleven).toEqual({ sequence: 9007199254740991, logTimeMs: clientMs(nanos) });
    }
  });

  it('gives the log time the client gives for any timestamp up to 2^64 ns, near a ms boundary or not', () => {
    const withinMs = fc.oneof(
      fc.bigInt({ min: 0n, max: 999_999n }),
      fc.bigInt({ min: 0n, max: 2_100n }),
      fc.bigInt({ min: 997_900n, max: 999_999n }),
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.bigInt({ min: 0n, max: 18_446_744_073_709n }), fc.bigInt({ min: 1n << 41n, max: 1n << 44n })),
        withinMs,
        (ms, within) => {
          const nanos = (ms * 1_000_000n + within).toString();
          const into = { sequence: 0, logTimeMs: 0 };
          return readDelivery(`$JS.ACK.s.c.1.7.7.${nanos}.0`, into) && into.logTimeMs === clientMs(nanos);
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('refuses any other shape and leaves the target as it was', () => {
    for (const subject of [
      '',
      '_INBOX.abc.1',
      '$JS.ACK.s.c.1.2.3.4', // 8 tokens
      '$JS.ACK.s.c.1.2.3.4.5.6', // 10 tokens
      '$JS.ACK.a.b.s.c.1.2.3.4.5.6.7', // 13 tokens
      '$JS.ACK.s.c.1..3.1796130226169064844.0', // empty sequence
      '$JS.ACK.s.c.1.12x.3.1796130226169064844.0',
      '$JS.ACK.s.c.1.-5.3.1796130226169064844.0',
      '$JS.ACK.s.c.1.9007199254740993.3.1796130226169064844.0', // above 2^53: not exact as a number
      '$JS.ACK.s.c.1.5.3.17961302261690648e4.0',
      '$JS.ACK.s.c.1.5.3..0',
      '$JS.ACK.hub.HASH.s.c.1.5.3. 1796130226169064844.0.r',
    ]) {
      const into = { sequence: -1, logTimeMs: -1 };
      expect(readDelivery(subject, into), subject).toBe(false);
      expect(into, subject).toEqual({ sequence: -1, logTimeMs: -1 });
    }
  });

  it("reads a consumer's later subjects from their end exactly as it reads them whole", () => {
    const name = fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/);
    const digits = fc.oneof(fc.nat().map(String), fc.bigInt({ min: 0n, max: 2n ** 70n }).map(String));
    const subjectOf = (prefix: string, numbers: string[], random: string | undefined) =>
      `${prefix}.${numbers.join('.')}${random === undefined ? '' : `.${random}`}`;
    fc.assert(
      fc.property(
        fc.constantFrom(9, 11, 12),
        name,
        name,
        name,
        fc.array(fc.tuple(fc.array(digits, { minLength: 5, maxLength: 5 }), name), { minLength: 1, maxLength: 8 }),
        // Some subjects off the shape: a token too many or too few, or not digits where the numbers are.
        fc.array(fc.oneof(fc.constant('ok'), fc.constant('extra'), fc.constant('short'), fc.constant('letters')), {
          minLength: 8,
          maxLength: 8,
        }),
        (tokens, stream, consumer, domain, deliveries, damage) => {
          const prefix =
            tokens === 9 ? `$JS.ACK.${stream}.${consumer}` : `$JS.ACK.${domain}.ACCHASH.${stream}.${consumer}`;
          const reader = new DeliveryReader();
          deliveries.forEach(([numbers, random], index) => {
            let subject = subjectOf(prefix, numbers, tokens === 12 ? random : undefined);
            if (damage[index] === 'extra') subject += '.7';
            if (damage[index] === 'short') subject = subject.slice(0, subject.lastIndexOf('.'));
            if (damage[index] === 'letters') subject = subject.replace(/\.(\d+)\.(\d+)\.(\d+)\./, '.$1.x$2.$3.');
            const bytes = new TextEncoder().encode(subject);
            const whole = { sequence: -1, logTimeMs: -1 };
            const wholeRead = readDelivery(subject, whole);
            const fromEnd = { sequence: -1, logTimeMs: -1 };
            const tailRead = reader.read(bytes, fromEnd);
            // Damaged or not, and whatever shape the reader learned before: as a whole read.
            expect(tailRead, subject).toBe(wholeRead);
            expect(fromEnd, subject).toEqual(whole);
          });
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it("reads no more than the tail of a consumer's subjects after the first", () => {
    const reader = new DeliveryReader();
    const encode = (subject: string) => new TextEncoder().encode(subject);
    const into = { sequence: 0, logTimeMs: 0 };
    const nanos = '1796130226169064844';
    expect(reader.read(encode(`$JS.ACK.kappa_clicks_p3.Xk2c9.1.4711.4000.${nanos}.96`), into)).toBe(true);
    // The same prefix length with a dot in it: a whole read counts 10 tokens and refuses it; the
    // tail read never looks there (the server sends a consumer the same prefix every time).
    const tailOnly = `$JS.ACK.kappa.clicks_p3.Xk2c9.1.4712.4001.${nanos}.95`;
    expect(readDelivery(tailOnly, { sequence: 0, logTimeMs: 0 })).toBe(false);
    expect(reader.read(encode(tailOnly), into)).toBe(true);
    expect(into).toEqual({ sequence: 4712, logTimeMs: clientMs(nanos) });
  });

  it('leaves a message whose reply it cannot read to the client', () => {
    const data = new Uint8Array([1, 2, 3]);
    const message = {
      data,
      reply: '$JS.ACK.some.future.shape',
      seq: 42,
      info: { timestampNanos: parseInt('1796130226169064844', 10) }, // as the client's parseInfo has it
    } as unknown as JsMsg;
    expect(deliveredMessage(message, new DeliveryReader())).toEqual({
      data,
      sequence: 42,
      logTimeMs: clientMs('1796130226169064844'),
    });
  });
});

describe('against a real nats-server', () => {
  const nats = useNatsServer();

  it('gives every delivered message the sequence and log time the client reads from it', async () => {
    const { nc } = nats;
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: 'replies', subjects: ['replies.>'] });
    for (let index = 0; index < 500; index++) await js.publish('replies.a', new Uint8Array([index % 256]));
    const info = await jsm.consumers.add('replies', {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: 3,
    });
    const consumer = await js.consumers.get('replies', info.name);
    const seen: Array<[ours: unknown, client: unknown]> = [];
    const replies = new DeliveryReader();
    let allSeen!: () => void;
    const done = new Promise<void>((resolve) => (allSeen = resolve));
    const messages = await consumer.consume({
      max_messages: 100,
      callback: (message) => {
        seen.push([
          deliveredMessage(message, replies),
          { data: message.data, sequence: message.seq, logTimeMs: Math.floor(message.info.timestampNanos / 1_000_000) },
        ]);
        if (seen.length === 498) allSeen();
      },
    });
    await done;
    messages.stop();
    for (const [ours, client] of seen) expect(ours).toEqual(client);
    expect(seen.map(([ours]) => (ours as { sequence: number }).sequence)).toEqual(
      Array.from({ length: 498 }, (_, index) => index + 3),
    );
  });
});

describe('back-pressure by bytes', () => {
  // A small max_payload, so a pull request's byte share (a quarter of the bound) is above the
  // largest message the server takes, as it is with the defaults (16 MiB vs 1 MiB).
  const nats = useNatsServer({ server: { extraConfig: 'max_payload: 262144' } });
  const KiB = 1024;
  const MiB = 1024 * KiB;

  /** A stream of `count` messages of `size` bytes, each starting with its index. */
  async function streamOf(name: string, count: number, size: number): Promise<void> {
    const jsm = await jetstreamManager(nats.nc);
    const js = jetstream(nats.nc);
    await jsm.streams.add({ name, subjects: [`${name}.>`] });
    for (let index = 0; index < count; index++) {
      const data = new Uint8Array(size);
      new DataView(data.buffer).setUint32(0, index);
      await js.publish(`${name}.a`, data);
    }
  }

  /** The pull requests consumers of `stream` send, as the server receives them. */
  function pullRequests(stream: string): { requests: Array<{ batch: number; max_bytes: number }>; stop(): void } {
    const requests: Array<{ batch: number; max_bytes: number }> = [];
    const subscription = nats.nc.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${stream}.>`, {
      callback: (_error, message) => {
        requests.push(message.json());
      },
    });
    return { requests, stop: () => subscription.unsubscribe() };
  }

  /** Takes `max` messages at a time until `count` have come, sampling the buffered bytes as it goes. */
  async function takeSlowly(source: PartitionSource, count: number, max: number) {
    const sequences: number[] = [];
    const indexes: number[] = [];
    let maxBufferedBytes = 0;
    const sampler = setInterval(() => (maxBufferedBytes = Math.max(maxBufferedBytes, source.bufferedBytes)), 1);
    try {
      const deadline = Date.now() + 20_000;
      while (sequences.length < count && Date.now() < deadline) {
        await source.waitForMessages(1_000);
        maxBufferedBytes = Math.max(maxBufferedBytes, source.bufferedBytes);
        for (const message of source.take(max)) {
          sequences.push(message.sequence);
          indexes.push(new DataView(message.data.buffer, message.data.byteOffset).getUint32(0));
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } finally {
      clearInterval(sampler);
    }
    return { sequences, indexes, maxBufferedBytes };
  }

  it('buffers at most maxBufferedBytes of large events while nothing takes them, pulls by bytes, and hands each over once, in order', async () => {
    await streamOf('large', 300, 30 * KiB); // 136.5 of them in the bound
    const pulls = pullRequests('large');
    const source = new PartitionSource(nats.nc, { stream: 'large', startSequence: 1, maxBufferedBytes: 4 * MiB });
    try {
      await source.start();
      // Nothing takes: the buffer fills to the bound and stays there.
      let last = -1;
      for (let stable = 0; stable < 10;) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        stable = source.bufferedBytes === last && last > 0 ? stable + 1 : 0;
        last = source.bufferedBytes;
      }
      expect(source.bufferedBytes).toBeLessThanOrEqual(4 * MiB);
      expect(source.bufferedBytes).toBeGreaterThan(4 * MiB - 30 * KiB);
      expect(source.buffered).toBe(source.bufferedBytes / (30 * KiB));
      // Each pull asked for a quarter of the bound in bytes (the server stops it there).
      expect(pulls.requests.length).toBeGreaterThan(0);
      for (const request of pulls.requests) {
        expect(request.max_bytes).toBeGreaterThan(0);
        expect(request.max_bytes).toBeLessThanOrEqual(MiB);
      }

      // A slow consumer: a few at a time.
      const taken = await takeSlowly(source, 300, 7);
      expect(taken.sequences).toEqual(Array.from({ length: 300 }, (_, index) => index + 1));
      expect(taken.indexes).toEqual(Array.from({ length: 300 }, (_, index) => index));
      expect(taken.maxBufferedBytes).toBeLessThanOrEqual(4 * MiB);
    } finally {
      pulls.stop();
      await source.stop();
    }
  });

  it('takes a message larger than the bound alone, and every one of them', async () => {
    await streamOf('oversized', 12, 40 * KiB);
    const source = new PartitionSource(nats.nc, { stream: 'oversized', startSequence: 3, maxBufferedBytes: 16 * KiB });
    try {
      await source.start();
      const taken = await takeSlowly(source, 10, 1);
      expect(taken.sequences).toEqual(Array.from({ length: 10 }, (_, index) => index + 3));
      expect(taken.indexes).toEqual(Array.from({ length: 10 }, (_, index) => index + 2));
      expect(taken.maxBufferedBytes).toBe(40 * KiB);
    } finally {
      await source.stop();
    }
  });

  it('pulls small events by message count, batchMessages at a time', async () => {
    await streamOf('small', 2_000, 64);
    const pulls = pullRequests('small');
    const source = new PartitionSource(nats.nc, { stream: 'small', startSequence: 1, batchMessages: 500 });
    try {
      await source.start();
      const taken = await takeSlowly(source, 2_000, 2_000);
      expect(taken.sequences).toEqual(Array.from({ length: 2_000 }, (_, index) => index + 1));
      expect(pulls.requests[0]).toMatchObject({ batch: 500, max_bytes: 0 });
      for (const request of pulls.requests) expect(request.max_bytes).toBe(0);
    } finally {
      pulls.stop();
      await source.stop();
    }
  });

  it('takes what follows a range the stream no longer holds, after checking with a new cursor that it is gone', async () => {
    await streamOf('holes', 300, 64);
    const jsm = await jetstreamManager(nats.nc);
    for (let sequence = 101; sequence <= 150; sequence++) await jsm.streams.deleteMessage('holes', sequence, false);
    await jsm.streams.purge('holes', { seq: 21 }); // 1–20 gone too: the first cursor starts in a gap
    const restarts: unknown[] = [];
    const skipped: Array<[number, number]> = [];
    const source = new PartitionSource(nats.nc, {
      stream: 'holes',
      startSequence: 1,
      batchMessages: 100,
      onRestart: (error) => restarts.push(error),
      onSkip: (from, to) => skipped.push([from, to]),
    });
    try {
      await source.start();
      const { sequences } = await takeSlowly(source, 230, 300);
      const expected = Array.from({ length: 300 }, (_, index) => index + 1).filter(
        (sequence) => sequence > 20 && (sequence < 101 || sequence > 150),
      );
      expect(sequences).toEqual(expected);
      expect(restarts.map(String)).toEqual([
        expect.stringMatching(/sequence 21 came where 1 was expected/),
        expect.stringMatching(/sequence 151 came where 101 was expected/),
      ]);
      // Each range skipped is reported once (the task counts it in kappa_skipped_messages_total).
      expect(skipped).toEqual([
        [1, 20],
        [101, 150],
      ]);
    } finally {
      await source.stop();
    }
  });

  it('replaces a cursor that delivers nothing while the partition holds more, and every message still comes once, in order', async () => {
    await streamOf('stalled', 300, 64);
    const restarts: unknown[] = [];
    const source = new PartitionSource(nats.nc, {
      stream: 'stalled',
      startSequence: 1,
      batchMessages: 100,
      onRestart: (error) => restarts.push(error),
    });
    try {
      await source.start();
      const first = (await takeSlowly(source, 300, 300)).sequences;
      // Everything there is was read: not stalled, whatever the bound.
      expect(source.restartIfStalled(300, 0)).toBe(false);
      // Delivered within the bound: not stalled.
      expect(source.restartIfStalled(600, 60_000)).toBe(false);
      // Nothing for longer than the bound (0 ms here) while the stream holds more: replaced.
      expect(source.restartIfStalled(600, 0)).toBe(true);
      expect(String(restarts[0])).toMatch(/no message for 0 s with 300 to read/);
      await streamOf('stalled', 300, 64); // the next 300, read by the new cursor
      const rest = (await takeSlowly(source, 300, 300)).sequences;
      expect([...first, ...rest]).toEqual(Array.from({ length: 600 }, (_, index) => index + 1));
    } finally {
      await source.stop();
    }
  });
});

describe('a cursor that cannot be started', () => {
  const nats = useNatsServer({ per: 'test', connection: { timeout: 2_000 } });

  it('is tried again until it starts, and every message still comes once, in order', async () => {
    const { nc, server } = nats;
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: 'stalls', subjects: ['stalls.>'] });
    for (let index = 0; index < 200; index++) await js.publish('stalls.a', new Uint8Array([index]));
    const restarts: unknown[] = [];
    const source = new PartitionSource(nc, {
      stream: 'stalls',
      startSequence: 1,
      batchMessages: 10, // pauses at 40 buffered
      onRestart: (error) => restarts.push(error),
    });
    try {
      await source.start();
      for (let waited = 0; source.buffered < 40 && waited < 5_000; waited += 20) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(source.buffered).toBe(40);
      // The server freezes: taking the buffer resumes reading, and that cursor's start times out.
      server.pause();
      const sequences = source.take(1_000).map((message) => message.sequence);
      await new Promise((resolve) => setTimeout(resolve, 7_000));
      server.resume();
      const deadline = Date.now() + 20_000;
      while (sequences.length < 200 && Date.now() < deadline) {
        await source.waitForMessages(500);
        for (const message of source.take(1_000)) sequences.push(message.sequence);
      }
      expect(restarts.length).toBeGreaterThan(0);
      expect(sequences).toEqual(Array.from({ length: 200 }, (_, index) => index + 1));
    } finally {
      server.resume();
      await source.stop();
    }
  }, 60_000);
});
