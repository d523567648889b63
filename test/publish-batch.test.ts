// The pipelined batch publisher (client/publish-batch.ts) against a real nats-server: each
// message's outcome in order (stored with its stream sequence, a duplicate message id, a
// compare-and-set refused as a wrong last sequence), a batch to a subject no stream listens on
// fails once its retry window is over, and a batch sent while the server is down completes when
// it is back.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, MsgHdrsImpl } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchPublisher, WRONG_LAST_SEQUENCE, type BatchMessage } from '../client/publish-batch.js';
import { NatsUnavailableError } from '../client/nats-retry.js';
import { startServer } from './harness/nats-server.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
const encoder = new TextEncoder();
const publishers: BatchPublisher[] = [];

afterEach(() => {
  for (const publisher of publishers.splice(0)) publisher.close();
});

function message(subject: string, text: string, header?: [string, string]): BatchMessage {
  const headers = new MsgHdrsImpl();
  if (header) headers.set(header[0], header[1]);
  return { subject, payload: encoder.encode(text), headers };
}

describe('BatchPublisher', () => {
  it('answers every message of a batch in order: stored, duplicate, wrong last sequence', async () => {
    const jsm = await jetstreamManager(nats.nc);
    await jsm.streams.add({ name: 'BATCH_A', subjects: ['batch.a.>'] });
    const publisher = new BatchPublisher(nats.nc);
    publishers.push(publisher);
    const outcomes = await publisher.publish([
      message('batch.a.x', 'one', ['Nats-Msg-Id', 'm1']),
      message('batch.a.y', 'two', ['Nats-Expected-Last-Subject-Sequence', '0']),
      message('batch.a.x', 'one again', ['Nats-Msg-Id', 'm1']),
      message('batch.a.y', 'three', ['Nats-Expected-Last-Subject-Sequence', '0']),
      message('batch.a.y', 'four', ['Nats-Expected-Last-Subject-Sequence', '2']),
    ]);
    expect(outcomes).toEqual([
      { stored: true, sequence: 1, duplicate: false },
      { stored: true, sequence: 2, duplicate: false },
      { stored: true, sequence: 1, duplicate: true },
      { stored: false, code: WRONG_LAST_SEQUENCE, description: expect.stringMatching(/wrong last sequence/) },
      { stored: true, sequence: 3, duplicate: false },
    ]);
    expect((await jsm.streams.info('BATCH_A')).state.messages).toBe(3);
    expect(await publisher.publish([])).toEqual([]);
  });

  it('fails a batch nothing listens to once its retry window is over', async () => {
    const publisher = new BatchPublisher(nats.nc, { retryForMs: 1_500 });
    publishers.push(publisher);
    const started = Date.now();
    const error = await publisher.publish([message('batch.nowhere', 'lost')]).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(NatsUnavailableError);
    expect((error as Error).message).toMatch(/batch\.nowhere: the stream of batch\.nowhere has no leader/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
  });

  it('completes a batch sent while the server is down once it is back', async () => {
    const server = await startServer();
    const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'BATCH_B', subjects: ['batch.b.>'] });
      const publisher = new BatchPublisher(nc, { ackTimeoutMs: 500 });
      publishers.push(publisher);
      await server.stop();
      const batch = publisher.publish(
        Array.from({ length: 50 }, (_, index) =>
          message(`batch.b.${index}`, `m${index}`, ['Nats-Msg-Id', `b${index}`]),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      await server.start();
      const outcomes = await batch;
      expect(outcomes.every((outcome) => outcome.stored)).toBe(true);
      expect((await jsm.streams.info('BATCH_B')).state.messages).toBe(50);
    } finally {
      await nc.close();
      await server.close();
    }
  });
});
