// Pipelined JetStream publishes of a whole batch, each with its own outcome: the runtime's own
// writers (serving-table rows in NATS KV, late records, dead letters, output records) send a batch
// of messages as core publishes with reply subjects on one inbox subscription, and await the batch
// once. An awaited `js.publish` per message costs a promise, a timer and, in nats.js, an Error with
// a stack trace for every request (bench/README.md "Output writes"); here a batch costs one promise.
//
// A message without an ack is resent after ackTimeoutMs, at once after a reconnect, and after a
// back-off while its stream answers "no responders" (a leader election), for up to retryForMs;
// then the batch fails with NatsUnavailableError. Resending is safe only for messages that carry
// a Nats-Msg-Id or an expected-sequence header (a repeat is dropped as a duplicate, or refused as a
// wrong sequence, which the caller must then read as "maybe mine"): every writer here does one.
import {
  createInbox,
  type Msg,
  type MsgHdrsImpl,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { InFlightPublishes, type PendingPublish } from './in-flight-publishes.js';
import { DEFAULT_RETRY_FOR_MS, formatSeconds, NatsUnavailableError } from './nats-retry.js';
import { readPubAck, type PubAck } from './pub-ack.js';
import { EventRejectedError } from './publish-limits.js';

/** One message of a batch. */
export interface BatchMessage {
  subject: string;
  payload: Uint8Array;
  headers: MsgHdrsImpl;
}

export interface BatchPublisherOptions {
  /** A message without an ack after this long is sent again. Default 10 s. */
  ackTimeoutMs?: number;
  /** How long a batch keeps resending before it fails with NatsUnavailableError. Default 60 s. */
  retryForMs?: number;
}

/** JetStream's error code for "wrong last sequence" (an expected-sequence header that did not hold). */
export const WRONG_LAST_SEQUENCE = 10071;

interface OpenBatch {
  outcomes: PubAck[];
  remaining: number;
  resolve: (outcomes: PubAck[]) => void;
  reject: (error: Error) => void;
}

interface BatchPublish extends PendingPublish {
  batch: OpenBatch;
  index: number;
}

export class BatchPublisher {
  private readonly inbox = createInbox();
  private readonly subscription: Subscription;
  private readonly inFlight: InFlightPublishes;
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly ackTimeoutMs: number;
  private readonly retryForMs: number;
  private nextToken = 1;
  private connected = true;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    options: BatchPublisherOptions = {},
  ) {
    this.ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.retryForMs = options.retryForMs ?? DEFAULT_RETRY_FOR_MS;
    this.inFlight = new InFlightPublishes((token, publish) =>
      nc.publish(publish.subject, publish.payload, { reply: `${this.inbox}.${token}`, headers: publish.headers }),
    );
    this.subscription = nc.subscribe(`${this.inbox}.*`, { callback: (_error, message) => this.onAck(message) });
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(10, Math.min(250, this.ackTimeoutMs / 4)));
    this.sweepTimer.unref();
    void this.followConnection();
  }

  /** Sends every message at once; resolves with each one's outcome, in order, when all are answered. */
  publish(messages: readonly BatchMessage[]): Promise<PubAck[]> {
    if (this.closed) return Promise.reject(new Error('batch publisher is closed'));
    if (messages.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const batch: OpenBatch = { outcomes: new Array(messages.length), remaining: messages.length, resolve, reject };
      const now = Date.now();
      for (let index = 0; index < messages.length; index++) {
        const message = messages[index]!;
        const publish: BatchPublish = {
          subject: message.subject,
          payload: message.payload,
          headers: message.headers,
          messageId: message.subject,
          partition: -1,
          firstSentAtMs: now,
          sentAtMs: 0,
          attempts: 0,
          noResponders: 0,
          resendAtMs: 0,
          batch,
          index,
        };
        this.send(publish);
      }
    });
  }

  /**
   * Puts one message on the wire. A message past the server's max_payload is refused by the
   * client before it is sent; the batch fails with an error that names it and both sizes (the
   * caller's retry cannot change them, so it must say what to change).
   */
  private send(publish: BatchPublish): void {
    try {
      this.inFlight.send(this.nextToken++, publish);
    } catch (error) {
      const maxPayload = this.nc.info?.max_payload;
      const bytes = publish.payload.length + publish.headers.encode().length;
      if (maxPayload === undefined || bytes <= maxPayload) throw error;
      throw new EventRejectedError(
        'EVENT_TOO_LARGE',
        `a message to ${publish.subject.slice(0, 200)} is ${bytes} bytes with its headers, more than the server's max_payload of ${maxPayload} bytes: it cannot be stored (make the value smaller, or raise max_payload in the server's configuration)`,
        maxPayload,
      );
    }
  }

  /** Stops listening; batches still open fail. The connection is the caller's. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.subscription.unsubscribe();
    this.failAll(new Error('batch publisher closed with publishes unacknowledged'));
  }

  private onAck(message: Msg): void {
    const token = Number(message.subject.slice(this.inbox.length + 1));
    const publish = this.inFlight.get(token) as BatchPublish | undefined;
    if (!publish) return; // the ack of a resend whose first send was already answered
    if (message.headers?.code === 503) {
      // No responders: the stream is electing a leader; the sweep resends after a back-off.
      this.inFlight.awaitLeader(token, publish);
      return;
    }
    this.inFlight.acknowledged(token);
    const { batch, index } = publish;
    batch.outcomes[index] = readPubAck(message.string());
    if (--batch.remaining === 0) batch.resolve(batch.outcomes);
  }

  private sweep(): void {
    const oldest = this.inFlight.oldest() as BatchPublish | undefined;
    if (!oldest) return;
    const now = Date.now();
    if (now - oldest.firstSentAtMs >= this.retryForMs) {
      const why = !this.connected
        ? 'the connection to NATS is lost and no server took it back'
        : oldest.noResponders > 0
          ? `the stream of ${oldest.subject} has no leader`
          : `no ack after ${oldest.attempts} sends`;
      this.failAll(
        new NatsUnavailableError(
          `publishing to ${oldest.subject}: ${why} (gave up after retrying for ${formatSeconds(this.retryForMs)})`,
        ),
      );
      return;
    }
    this.inFlight.resendDue(now, this.ackTimeoutMs);
  }

  /** Fails every open batch (each once) and forgets their publishes. */
  private failAll(error: Error): void {
    const failed = new Set<OpenBatch>();
    for (const publish of this.inFlight.clear()) {
      const { batch } = publish as BatchPublish;
      if (failed.has(batch)) continue;
      failed.add(batch);
      batch.reject(error);
    }
  }

  private async followConnection(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (this.closed) return;
      if (status.type === 'disconnect') this.connected = false;
      else if (status.type === 'reconnect') {
        this.connected = true;
        // Sent on the lost connection, never to be acked: send again now rather than after the timeout.
        this.inFlight.resendAll();
      }
    }
  }
}
