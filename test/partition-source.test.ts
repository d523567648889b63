// The partition source (worker/source.ts): where each message's stream sequence and log time come
// from (read from the reply subject in place, in both of its shapes, the client's own parse for
// any other), against a real nats-server.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useNatsServer } from './harness/use-nats.js';
import { deliveredMessage, readDelivery } from '../worker/source.js';

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

  it('leaves a message whose reply it cannot read to the client', () => {
    const data = new Uint8Array([1, 2, 3]);
    const message = {
      data,
      reply: '$JS.ACK.some.future.shape',
      seq: 42,
      info: { timestampNanos: parseInt('1796130226169064844', 10) }, // as the client's parseInfo has it
    } as unknown as JsMsg;
    expect(deliveredMessage(message)).toEqual({ data, sequence: 42, logTimeMs: clientMs('1796130226169064844') });
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
    let allSeen!: () => void;
    const done = new Promise<void>((resolve) => (allSeen = resolve));
    const messages = await consumer.consume({
      max_messages: 100,
      callback: (message) => {
        seen.push([
          deliveredMessage(message),
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
