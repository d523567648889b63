// The producer: pipelined publishing of events to a topic. Each event is a core `nc.publish`
// with a reply subject on one inbox subscription that receives the PubAcks, instead of an awaited
// `js.publish` per event (≈ 135k/s vs ≈ 27k/s here, FACTS.md; bench/producer.ts re-measures).
//
// Guarantees: every event carries a Nats-Msg-Id of `<producer id>:<sequence>` (percent-encoded,
// protocol/message-id.ts, so any producer id is a valid header), so a retry after an ack timeout,
// or a rerun with the same producer id over the same input, is dropped by the server's duplicate
// window instead of stored twice. An event whose key is past MAX_KEY_BYTES (protocol/limits.ts) or
// whose encoded message is past the server's max_payload is refused by publish() with an
// EventRejectedError before anything is sent; the producer stays usable.
//
// Node loss (nats-retry.ts): an unacknowledged event is resent after ackTimeoutMs, at once after
// a reconnect, and with a short back-off when its stream answers "no responders" (electing a
// leader), until retryForMs after its first send; then the producer fails with
// NatsUnavailableError. An error PubAck fails it with PublishError. After a failure the next
// publish(), ready() or flush() throws it. A retried event may land after events published
// after it (in-flight publishes are not ordered against their own retries).
import {
  createInbox,
  MsgHdrsImpl,
  nuid,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { KappaError, messageIdOf, partitionOf, streams, subjects, type EventEnvelope } from '../protocol/index.js';
import { InFlightPublishes, type PendingPublish } from './in-flight-publishes.js';
import {
  DEFAULT_RETRY_FOR_MS,
  formatSeconds,
  NatsUnavailableError,
  retryThroughElections,
  type NatsWait,
} from './nats-retry.js';
import { PartitionStreamCheck } from './partition-stream-check.js';
import { readPubAck } from './pub-ack.js';
import { encodePublishable } from './publish-limits.js';
import { describeTopic } from './topics.js';

export { EventRejectedError } from './publish-limits.js';

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
  /**
   * How long an event is resent without an ack (a stream leader election, a lost node) before the
   * producer fails with NatsUnavailableError; `forTopic` retries its lookups as long. Default 60 s.
   */
  retryForMs?: number;
}

export interface ForTopicOptions extends Omit<ProducerOptions, 'topic' | 'partitions'> {
  /** Told while forTopic's lookups are being retried (and with undefined when they are through). */
  onWait?: (wait: NatsWait | undefined) => void;
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
  /** The topic's partition count. */
  readonly partitions: number;
  private readonly maxInFlight: number;
  /** ready() resolves once in-flight drops to this, so a waiting caller resumes with a batch of room, not one slot. */
  private readonly lowWaterMark: number;
  private readonly ackTimeoutMs: number;
  private readonly retryForMs: number;
  private readonly inbox: string;
  private readonly subscription: Subscription;
  private readonly timeoutSweep: NodeJS.Timeout;
  /** Publishes awaiting their ack, by reply token (the sequence), and when each is resent. */
  private readonly inFlight: InFlightPublishes;
  /** Looks up a partition's stream after a "no responders": a deleted topic fails the producer. */
  private readonly streamCheck: PartitionStreamCheck;
  private sequence = 0;
  private connected = true;
  private failure: KappaError | undefined;
  private closed = false;
  private roomWaiters: Waiter[] = [];
  private drainWaiters: Waiter[] = [];
  private readonly counts = { acknowledged: 0, duplicates: 0 };

  /**
   * A producer for an existing topic, with the partition count from the topic registry. It also
   * looks up every partition stream, so a missing stream is reported before the first publish and
   * a stream electing a leader is waited for; both lookups are retried through leader elections
   * for retryForMs.
   */
  static async forTopic(nc: NatsConnection, topic: string, options: ForTopicOptions = {}): Promise<Producer> {
    const { onWait, ...producerOptions } = options;
    const { partitions } = await retryThroughElections(
      `looking up topic ${topic} and its partition streams`,
      () => describeTopic(nc, topic),
      {
        retryForMs: options.retryForMs ?? DEFAULT_RETRY_FOR_MS,
        onWait,
      },
    );
    return new Producer(nc, { ...producerOptions, topic, partitions });
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
    this.retryForMs = options.retryForMs ?? DEFAULT_RETRY_FOR_MS;
    this.inbox = createInbox();
    this.streamCheck = new PartitionStreamCheck(nc, this.topic);
    this.inFlight = new InFlightPublishes((token, publish) =>
      nc.publish(publish.subject, publish.payload, { reply: `${this.inbox}.${token}`, headers: publish.headers }),
    );
    this.subscription = nc.subscribe(`${this.inbox}.*`, { callback: (error, message) => this.onAck(error, message) });
    // Often enough for the no-responders back-off (250 ms first), and for short ack timeouts.
    this.timeoutSweep = setInterval(() => this.sweep(), Math.max(10, Math.min(250, this.ackTimeoutMs / 4)));
    // The subscription keeps the process alive while acks are due; the sweep alone must not.
    this.timeoutSweep.unref();
    void this.followConnection();
  }

  /**
   * Sends one event without waiting for its ack. Returns false when maxInFlight publishes are
   * awaiting acks: the event was sent all the same, and the caller should `await ready()` before
   * publishing the next (never this one again: it would be a second event, under another id). Throws
   * EventRejectedError, sending nothing, for an event past the key or max_payload limit.
   */
  publish(event: EventEnvelope): boolean {
    if (this.failure) throw this.failure;
    if (this.closed) throw new PublishError(`producer ${this.producerId} of topic ${this.topic} is closed`);
    // max_payload is read on every publish: after a reconnect the server, and its limit, may be another.
    const payload = encodePublishable(event, this.topic, this.maxHeaderBytes, this.nc.info?.max_payload);
    const sequence = ++this.sequence;
    const partition = partitionOf(event.key, this.partitions);
    const now = Date.now();
    const publish: PendingPublish = {
      subject: subjects.event(this.topic, partition, event.key),
      payload,
      headers: this.headersFor(sequence),
      messageId: `${this.producerId}:${sequence}`,
      partition,
      firstSentAtMs: now,
      sentAtMs: 0,
      attempts: 0,
      noResponders: 0,
      resendAtMs: 0,
    };
    this.inFlight.send(sequence, publish);
    return this.inFlight.size < this.maxInFlight;
  }

  /**
   * Sends a record already encoded (a routed event, a job's output) to `partition` under the
   * caller's message id, without waiting for its ack: for the runtime's own writers, whose ids are
   * deterministic so that a task re-publishing after a restart is deduplicated. Returns false when
   * the caller should `await ready()`. The caller checks sizes (its records come from events that
   * passed the limits).
   */
  publishEncoded(partition: number, key: string, payload: Uint8Array, messageId: string): boolean {
    if (this.failure) throw this.failure;
    if (this.closed) throw new PublishError(`producer ${this.producerId} of topic ${this.topic} is closed`);
    const sequence = ++this.sequence;
    const headers = new MsgHdrsImpl();
    const safeId = messageIdOf(messageId);
    headers.set('Nats-Msg-Id', safeId);
    const now = Date.now();
    this.inFlight.send(sequence, {
      subject: subjects.event(this.topic, partition, key),
      payload,
      headers,
      messageId: safeId,
      partition,
      firstSentAtMs: now,
      sentAtMs: 0,
      attempts: 0,
      noResponders: 0,
      resendAtMs: 0,
    });
    return this.inFlight.size < this.maxInFlight;
  }

  /** Resolves when there is room to publish again; rejects once the producer has failed. */
  ready(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.inFlight.size < this.maxInFlight) return Promise.resolve();
    return new Promise((resolve, reject) => this.roomWaiters.push({ resolve, reject }));
  }

  /** Resolves when every event published so far is acknowledged; rejects once the producer has failed. */
  async flush(): Promise<ProducerStats> {
    if (this.failure) throw this.failure;
    if (this.inFlight.size > 0) {
      await new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
    }
    return this.stats();
  }

  stats(): ProducerStats {
    return { ...this.counts, retries: this.inFlight.retries, inFlight: this.inFlight.size };
  }

  /**
   * What the producer is waiting for, while its oldest unacknowledged event is being retried
   * (a lost connection, a stream without a leader, an ack timeout); undefined otherwise.
   */
  waiting(): NatsWait | undefined {
    const oldest = this.inFlight.oldest();
    if (!oldest) return undefined;
    const retryUntilMs = oldest.firstSentAtMs + this.retryForMs;
    if (!this.connected) return { reason: 'connection to NATS lost, reconnecting', retryUntilMs };
    const stream = streams.partition(this.topic, oldest.partition);
    if (oldest.noResponders > 0) return { reason: `stream ${stream} has no leader (leader election)`, retryUntilMs };
    if (oldest.attempts > 1)
      return { reason: `no ack from stream ${stream} within ${formatSeconds(this.ackTimeoutMs)}`, retryUntilMs };
    return undefined;
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

  /** Tracks the connection for waiting(), and resends what is pending after a reconnect. */
  private async followConnection(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (this.closed) return;
      if (status.type === 'disconnect') this.connected = false;
      else if (status.type === 'reconnect') {
        this.connected = true;
        // Publishes sent on the lost connection will never be acked: send them again now
        // instead of after their ack timeout (the message id drops any that did arrive).
        if (!this.failure) this.inFlight.resendAll();
      }
    }
  }

  private headersFor(sequence: number): MsgHdrsImpl {
    // The class rather than headers(): its encode() gives the size the headers add to a message.
    const messageHeaders = new MsgHdrsImpl();
    messageHeaders.set('Nats-Msg-Id', `${this.messageIdPrefix}:${sequence}`);
    return messageHeaders;
  }

  private onAck(error: Error | null, message: Msg): void {
    const token = Number(message.subject.slice(this.inbox.length + 1));
    const publish = this.inFlight.get(token);
    // The ack of a publish that was resent and already acknowledged: nothing left to do.
    if (!publish) return;
    if (message.headers?.code === 503) {
      // No responders: the stream is electing a leader (a node of the cluster went away), or it
      // is gone. Resend it after a back-off (the sweep does) unless the stream does not exist.
      this.inFlight.awaitLeader(token, publish);
      this.streamCheck.check(publish.partition, (cause) => {
        const why = `publishing to ${publish.subject} failed: no stream listens on it (was the topic deleted?)`;
        this.fail(new PublishError(why, { cause }));
      });
      return;
    }
    if (error)
      return this.fail(new PublishError(`publishing to ${publish.subject} failed: ${error.message}`, { cause: error }));
    const ack = readPubAck(message.string());
    if (!ack.stored) {
      return this.fail(
        new PublishError(
          `the server refused event ${publish.messageId} on ${publish.subject}: ${ack.description} (err_code ${ack.code})`,
        ),
      );
    }
    this.counts.acknowledged++;
    if (ack.duplicate) this.counts.duplicates++;
    this.inFlight.acknowledged(token);
    if (this.inFlight.size <= this.lowWaterMark && this.roomWaiters.length > 0) this.wake('roomWaiters');
    if (this.inFlight.size === 0 && this.drainWaiters.length > 0) this.wake('drainWaiters');
  }

  private sweep(): void {
    if (this.failure) return;
    const now = Date.now();
    const oldest = this.inFlight.oldest();
    if (oldest && now - oldest.firstSentAtMs >= this.retryForMs) return this.fail(this.gaveUp(oldest));
    this.inFlight.resendDue(now, this.ackTimeoutMs);
  }

  /** The one-line reason the producer stops retrying its oldest event. */
  private gaveUp(oldest: PendingPublish): NatsUnavailableError {
    const stream = streams.partition(this.topic, oldest.partition);
    const why = !this.connected
      ? 'the connection to NATS is lost and no server took it back'
      : oldest.noResponders > 0
        ? `stream ${stream} has no leader (is a majority of its nodes down?)`
        : `no ack from stream ${stream} after ${oldest.attempts} sends`;
    return new NatsUnavailableError(
      `publishing to topic ${this.topic}: ${why}; ${this.inFlight.size} events unacknowledged, the oldest ${oldest.messageId} (gave up after retrying for ${formatSeconds(this.retryForMs)})`,
    );
  }

  private wake(which: 'roomWaiters' | 'drainWaiters'): void {
    const waiters = this[which];
    this[which] = [];
    for (const waiter of waiters) waiter.resolve();
  }

  private fail(error: KappaError): void {
    if (this.failure) return;
    this.failure = error;
    const waiters = [...this.roomWaiters, ...this.drainWaiters];
    this.roomWaiters = [];
    this.drainWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }
}
