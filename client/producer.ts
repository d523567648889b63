// The producer: pipelined publishing of events to a topic. Each event is a core `nc.publish`
// with a reply subject on one inbox subscription that receives the PubAcks, instead of an awaited
// `js.publish` per event (≈ 135k/s vs ≈ 27k/s here, FACTS.md; bench/producer.ts re-measures).
//
// Guarantees: every event carries a Nats-Msg-Id of `<producer id>:<sequence>` (percent-encoded,
// protocol/message-id.ts, so any producer id is a valid header), so a retry after an ack timeout,
// or a rerun with the same producer id over the same input, is dropped by the server's duplicate
// window instead of stored twice. An event whose key is past MAX_KEY_BYTES (protocol/limits.ts) or
// whose encoded message is past the server's max_payload is refused by publish() with an
// EventRejectedError before anything is sent; the producer stays usable. "No responders" (a stream electing a new
// leader after a node loss) is retried like a timeout. An error PubAck fails the producer: the next
// publish(), ready() or flush() throws it. A retried event may land after events published
// after it (in-flight publishes are not ordered against their own retries).
import { createInbox, MsgHdrsImpl, nuid, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { encodeEvent, KappaError, keyProblem, MAX_KEY_BYTES, messageIdOf, partitionOf, streams, subjects, type EventEnvelope } from '../protocol/index.js';
import { getTopic } from './topics.js';

export interface ProducerOptions {
  topic: string;
  /** The topic's partition count; `Producer.forTopic` reads it from the registry. */
  partitions: number;
  /** Prefix of every message id. Reuse it to make a rerun over the same input a no-op. */
  producerId?: string;
  /** Publishes awaiting their PubAck before publish() asks the caller to wait. */
  maxInFlight?: number;
  /** A publish without a PubAck after this long is sent again with the same message id. */
  ackTimeoutMs?: number;
  /** Sends of one event (first try included) before the producer fails. */
  maxAttempts?: number;
}

export interface ProducerStats {
  /** Events the server acknowledged (stored now or before, see duplicates). */
  acknowledged: number;
  /** Acknowledged events the server had already stored (same message id in its window). */
  duplicates: number;
  /** Sends repeated after an ack timeout. */
  retries: number;
  inFlight: number;
}

/** The server refused an event, or never acknowledged it. */
export class PublishError extends KappaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PUBLISH_FAILED', message, options);
  }
}

/**
 * An event publish() refused before sending anything: its key is empty or past MAX_KEY_BYTES
 * (`KEY_INVALID`), or its encoded message is past the server's max_payload (`EVENT_TOO_LARGE`).
 * Only that event is refused; the producer goes on.
 */
export class EventRejectedError extends KappaError {
  constructor(
    code: 'KEY_INVALID' | 'EVENT_TOO_LARGE',
    message: string,
    /** The limit the event is past, in bytes (MAX_KEY_BYTES or max_payload); 0 for an empty key. */
    readonly limitBytes: number,
  ) {
    super(code, message);
  }
}

const DUPLICATE_ACK = /"duplicate":\s*true/;

interface PendingPublish {
  subject: string;
  payload: Uint8Array;
  /** Carries the message id; built once, sent again as is on a retry. */
  headers: MsgHdrsImpl;
  /** For error messages. */
  messageId: string;
  sentAtMs: number;
  attempts: number;
  /** The last send was answered by "no responders" (503) instead of a PubAck. */
  noResponders?: boolean;
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

export class Producer {
  readonly producerId: string;
  /** producerId as it goes into Nats-Msg-Id headers (header-safe). */
  private readonly messageIdPrefix: string;
  /** Bytes the headers add to a message at most (the longest sequence), for the max_payload check. */
  private readonly maxHeaderBytes: number;
  private readonly topic: string;
  private readonly partitions: number;
  private readonly maxInFlight: number;
  /** ready() resolves once in-flight drops to this, so a waiting caller resumes with a batch of room, not one slot. */
  private readonly lowWaterMark: number;
  private readonly ackTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly inbox: string;
  private readonly subscription: Subscription;
  private readonly timeoutSweep: NodeJS.Timeout;
  /** Reply token → publish awaiting its ack, oldest send first (a resend moves to the end). */
  private readonly pending = new Map<number, PendingPublish>();
  private sequence = 0;
  private failure: PublishError | undefined;
  private closed = false;
  private roomWaiters: Waiter[] = [];
  private drainWaiters: Waiter[] = [];
  private readonly counts = { acknowledged: 0, duplicates: 0, retries: 0 };

  /** A producer for an existing topic, with the partition count from the topic registry. */
  static async forTopic(nc: NatsConnection, topic: string, options: Omit<ProducerOptions, 'topic' | 'partitions'> = {}): Promise<Producer> {
    const { partitions } = await getTopic(nc, topic);
    return new Producer(nc, { ...options, topic, partitions });
  }

  constructor(
    private readonly nc: NatsConnection,
    options: ProducerOptions,
  ) {
    this.topic = options.topic;
    this.partitions = options.partitions;
    this.producerId = options.producerId ?? nuid.next();
    this.messageIdPrefix = messageIdOf(this.producerId);
    this.maxHeaderBytes = this.headersFor(Number.MAX_SAFE_INTEGER).encode().length;
    this.maxInFlight = options.maxInFlight ?? 4096;
    this.lowWaterMark = Math.floor(this.maxInFlight / 2);
    this.ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.inbox = createInbox();
    this.subscription = nc.subscribe(`${this.inbox}.*`, { callback: (error, message) => this.onAck(error, message) });
    this.timeoutSweep = setInterval(() => this.resendExpired(), Math.max(10, Math.min(1000, this.ackTimeoutMs / 4)));
    // The subscription keeps the process alive while acks are due; the sweep alone must not.
    this.timeoutSweep.unref();
  }

  /**
   * Sends one event without waiting for its ack. Returns false when maxInFlight publishes are
   * awaiting acks: the caller should then `await ready()` before publishing more. Throws
   * EventRejectedError, sending nothing, for an event past the key or max_payload limit.
   */
  publish(event: EventEnvelope): boolean {
    if (this.failure) throw this.failure;
    if (this.closed) throw new PublishError(`producer ${this.producerId} of topic ${this.topic} is closed`);
    // Checked here, not left to the server: a key past the limit makes a subject longer than the
    // server's control line (it drops the connection, the publish is lost and retried to no
    // end), and nats.js throws on a message past max_payload.
    const keyIssue = keyProblem(event.key);
    if (keyIssue) throw new EventRejectedError('KEY_INVALID', `event key ${keyPreview(event.key)} cannot be published to topic ${this.topic}: ${keyIssue}`, MAX_KEY_BYTES);
    const payload = encodeEvent(event);
    // Read on every publish: after a reconnect the server, and its limit, may be another.
    const maxPayload = this.nc.info?.max_payload;
    if (maxPayload !== undefined && payload.length + this.maxHeaderBytes > maxPayload) {
      throw new EventRejectedError(
        'EVENT_TOO_LARGE',
        `event with key ${keyPreview(event.key)} is ${payload.length + this.maxHeaderBytes} bytes as a message, more than the server's max_payload of ${maxPayload} bytes`,
        maxPayload,
      );
    }
    const sequence = ++this.sequence;
    const publish: PendingPublish = {
      subject: subjects.event(this.topic, partitionOf(event.key, this.partitions), event.key),
      payload,
      headers: this.headersFor(sequence),
      messageId: `${this.producerId}:${sequence}`,
      sentAtMs: 0,
      attempts: 0,
    };
    this.send(sequence, publish);
    return this.pending.size < this.maxInFlight;
  }

  /** Resolves when there is room to publish again; rejects once the producer has failed. */
  ready(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending.size < this.maxInFlight) return Promise.resolve();
    return new Promise((resolve, reject) => this.roomWaiters.push({ resolve, reject }));
  }

  /** Resolves when every event published so far is acknowledged; rejects once the producer has failed. */
  async flush(): Promise<ProducerStats> {
    if (this.failure) throw this.failure;
    if (this.pending.size > 0) {
      await new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
    }
    return this.stats();
  }

  stats(): ProducerStats {
    return { ...this.counts, inFlight: this.pending.size };
  }

  /** Flushes, then stops listening for acks. The connection stays open: it is the caller's. */
  async close(): Promise<ProducerStats> {
    try {
      return await this.flush();
    } finally {
      this.closed = true;
      clearInterval(this.timeoutSweep);
      this.subscription.unsubscribe();
    }
  }

  private send(token: number, publish: PendingPublish): void {
    publish.attempts++;
    publish.sentAtMs = Date.now();
    this.nc.publish(publish.subject, publish.payload, { reply: `${this.inbox}.${token}`, headers: publish.headers });
    // Re-inserting keeps the map ordered by send time, which resendExpired() relies on.
    this.pending.delete(token);
    this.pending.set(token, publish);
  }

  private headersFor(sequence: number): MsgHdrsImpl {
    // The class rather than headers(): its encode() gives the size the headers add to a message.
    const messageHeaders = new MsgHdrsImpl();
    messageHeaders.set('Nats-Msg-Id', `${this.messageIdPrefix}:${sequence}`);
    return messageHeaders;
  }

  private onAck(error: Error | null, message: Msg): void {
    const token = Number(message.subject.slice(this.inbox.length + 1));
    const publish = this.pending.get(token);
    // The ack of a publish that was resent and already acknowledged: nothing left to do.
    if (!publish) return;
    if (message.headers?.code === 503) {
      // No responders: the stream is electing a leader (a node of the cluster went away), or it
      // is gone. Leave it pending (the timeout sweep resends it) unless the stream does not exist.
      publish.noResponders = true;
      this.failIfStreamGone(publish);
      return;
    }
    if (error) return this.fail(new PublishError(`publishing to ${publish.subject} failed: ${error.message}`, { cause: error }));
    const body = message.string();
    if (body.includes('"error"')) {
      let description = body;
      try {
        const parsed = JSON.parse(body) as { error?: { description?: string; err_code?: number } };
        description = `${parsed.error?.description ?? 'unknown error'} (err_code ${parsed.error?.err_code ?? '?'})`;
      } catch {
        // keep the raw body as the description
      }
      return this.fail(new PublishError(`the server refused event ${publish.messageId} on ${publish.subject}: ${description}`));
    }
    this.counts.acknowledged++;
    // The server writes `"duplicate": true` (2.9, with a space) or `"duplicate":true`.
    if (DUPLICATE_ACK.test(body)) this.counts.duplicates++;
    this.pending.delete(token);
    if (this.pending.size <= this.lowWaterMark && this.roomWaiters.length > 0) this.wake('roomWaiters');
    if (this.pending.size === 0 && this.drainWaiters.length > 0) this.wake('drainWaiters');
  }

  private failIfStreamGone(publish: PendingPublish): void {
    const partition = Number(publish.subject.split('.')[1]);
    void jetstreamManager(this.nc)
      .then((jsm) => jsm.streams.info(streams.partition(this.topic, partition)))
      .catch((error: Error) => {
        if (/not found/i.test(error.message)) {
          this.fail(new PublishError(`publishing to ${publish.subject} failed: no stream listens on it (was the topic deleted?)`, { cause: error }));
        }
      });
  }

  private resendExpired(): void {
    if (this.failure) return;
    const expiredBefore = Date.now() - this.ackTimeoutMs;
    for (const [token, publish] of this.pending) {
      // Oldest first: the first publish still within its timeout ends the sweep.
      if (publish.sentAtMs > expiredBefore) break;
      if (publish.attempts >= this.maxAttempts) {
        const why = publish.noResponders ? ': no stream answered (was the topic deleted, or has its stream no leader?)' : '';
        return this.fail(
          new PublishError(`event ${publish.messageId} on ${publish.subject} got no ack after ${publish.attempts} sends ${this.ackTimeoutMs} ms apart${why}`),
        );
      }
      this.counts.retries++;
      this.send(token, publish);
    }
  }

  private wake(which: 'roomWaiters' | 'drainWaiters'): void {
    const waiters = this[which];
    this[which] = [];
    for (const waiter of waiters) waiter.resolve();
  }

  private fail(error: PublishError): void {
    if (this.failure) return;
    this.failure = error;
    const waiters = [...this.roomWaiters, ...this.drainWaiters];
    this.roomWaiters = [];
    this.drainWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }
}

/** A key as error messages show it: quoted, and cut short when long (a rejected key may be kilobytes). */
function keyPreview(key: string): string {
  return key.length <= 40 ? JSON.stringify(key) : `${JSON.stringify(key.slice(0, 40))}… (${key.length} characters)`;
}
