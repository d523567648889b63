// Reads one partition stream from a given sequence with an AckNone pull consumer in callback
// mode and large batches (FACTS.md: ≈2× faster than acking; positions live in our checkpoints,
// not in broker acks). The consumer is only a cursor: whenever it stops — back-pressure, a lost
// connection, a deleted consumer — a new one starts at the next sequence we have not buffered.
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { RawMessage } from './task-processor.js';

export interface PartitionSourceOptions {
  stream: string;
  /** First stream sequence to read. */
  startSequence: number;
  /** Messages per pull request; the buffer holds at most 4× as many. */
  batchMessages?: number;
  /**
   * Bytes of message data buffered at most (default 64 MiB), so a task with large events cannot
   * run the process out of memory while its sink is slow; one message larger than this is still
   * taken alone. A pull request asks for at most a quarter of it.
   */
  maxBufferedBytes?: number;
  /** Called when the consumer fails and is about to be recreated. */
  onRestart?: (error: unknown) => void;
  /**
   * Asked before a confirmed gap (sequences `from`…`to` that a new cursor did not deliver either)
   * is skipped: true skips it; false leaves the source idle at `from` for its owner to stop (a
   * hybrid source reads the range from the archive, archive-source.ts). Without it a confirmed
   * gap is skipped.
   */
  confirmGap?: (from: number, to: number) => Promise<boolean>;
  /** Told of every range skipped as gone (`from`…`to`, neither the stream nor, with confirmGap, the archive holds it). */
  onSkip?: (from: number, to: number) => void;
}

/** What a task reads its partition from: the live stream (PartitionSource) or the archive, then the stream (archive-source.ts). */
export interface TaskSource {
  /** Where the source reads: `archive` while it serves archived segments. */
  readonly phase: 'archive' | 'live';
  start(): Promise<void>;
  /** Resolves when messages are buffered, the source stopped, or after timeoutMs. */
  waitForMessages(timeoutMs: number): Promise<void>;
  /** Takes buffered messages (at most max) in sequence order. */
  take(max: number): RawMessage[];
  /** Replaces a live cursor silent for stallMs while the partition holds up to endSequence; whether it did. */
  restartIfStalled(endSequence: number, stallMs: number): boolean;
  stop(): Promise<void>;
}

export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

/**
 * The client's consume() takes max_messages or max_bytes, not both, and with max_bytes asks for at
 * most 100 messages at a time, which costs 20–50% of the read rate of small messages (measured:
 * bench/README.md "Per-event path"). So a pull is bounded by bytes through max_bytes only where
 * its byte share holds no more messages than that anyway.
 */
const MESSAGES_PER_BYTES_PULL = 100;

export class PartitionSource implements TaskSource {
  readonly phase = 'live';
  private buffer: RawMessage[] = [];
  private spare: RawMessage[] = [];
  private bufferedDataBytes = 0;
  private nextSequence: number;
  private messages: ConsumerMessages | undefined;
  /** Names the current cursor: a message of any earlier one is not taken. */
  private cursor = 0;
  private stopped = false;
  private paused = false;
  private wake: (() => void) | undefined;
  private readonly batchMessages: number;
  private readonly highWater: number;
  private readonly maxBufferedBytes: number;
  /** What one pull request may bring, in bytes. */
  private readonly requestBytes: number;
  /** Data bytes and messages taken in so far: their mean sizes the next pull requests. */
  private acceptedBytes = 0;
  private acceptedMessages = 0;
  /** A gap was seen and a new cursor started to tell a loss from deleted messages (accept()). */
  private checkingGap = false;
  /** The owner allowed the confirmed gap at nextSequence to be skipped (options.confirmGap). */
  private gapSkipAllowed = false;
  /** When the current cursor last delivered a message, or started (ms). */
  private lastDeliveryAtMs = Date.now();

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: PartitionSourceOptions,
  ) {
    this.nextSequence = options.startSequence;
    this.batchMessages = options.batchMessages ?? 10_000;
    this.highWater = this.batchMessages * 4;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.requestBytes = Math.max(1, Math.floor(this.maxBufferedBytes / 4));
  }

  get position(): number {
    return this.nextSequence - 1;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.startConsumer();
  }

  private async startConsumer(): Promise<void> {
    if (this.stopped) return;
    const cursor = ++this.cursor;
    const jsm = await jetstreamManager(this.nc);
    const info = await jsm.consumers.add(this.options.stream, {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.nextSequence,
      mem_storage: true,
      num_replicas: 1,
      // An abandoned cursor (a crashed worker) disappears by itself.
      inactive_threshold: 30_000_000_000,
    });
    const consumer = await jetstream(this.nc).consumers.get(this.options.stream, info.name);
    const limits = this.pullLimits(await this.meanMessageBytes(jsm));
    const replies = new DeliveryReader(); // one consumer's reply subjects
    const messages = await consumer.consume({
      ...limits,
      abort_on_missing_resource: true,
      callback: (message: JsMsg) => {
        if (cursor === this.cursor) this.accept(message, replies);
      },
    });
    if (cursor !== this.cursor || this.stopped) {
      messages.stop(); // stopped, or another cursor started, while this one was being set up
      return;
    }
    this.messages = messages;
    this.lastDeliveryAtMs = Date.now();
    void messages.closed().then(
      () => this.onConsumerClosed(messages, undefined),
      (error: unknown) => this.onConsumerClosed(messages, error),
    );
  }

  /**
   * How much one pull request asks for: batchMessages while that many messages of the mean size
   * fit in requestBytes, fewer when they do not, and for large messages max_bytes itself (the
   * server then stops each request there). max_bytes also fits the largest message the server
   * takes: a message larger than a request's max_bytes is never delivered to it.
   */
  private pullLimits(meanBytes: number): { max_messages: number } | { max_bytes: number } {
    const messages = Math.floor(this.requestBytes / Math.max(1, meanBytes));
    if (messages >= this.batchMessages) return { max_messages: this.batchMessages };
    if (messages > MESSAGES_PER_BYTES_PULL) return { max_messages: messages };
    const maxPayload = this.nc.info?.max_payload ?? 1024 * 1024;
    return { max_bytes: Math.max(this.requestBytes, 2 * maxPayload) };
  }

  /** The mean data bytes of the messages taken in so far, or before the first, of the stream's (a little more: subjects and headers). */
  private async meanMessageBytes(jsm: JetStreamManager): Promise<number> {
    if (this.acceptedMessages > 0) return this.acceptedBytes / this.acceptedMessages;
    const { state } = await jsm.streams.info(this.options.stream);
    return state.messages > 0 ? state.bytes / state.messages : 0;
  }

  private accept(message: JsMsg, replies: DeliveryReader): void {
    const raw = deliveredMessage(message, replies);
    const sequence = raw.sequence;
    // Anything before the next expected sequence was already buffered by an earlier cursor.
    if (sequence < this.nextSequence) return;
    if (sequence > this.nextSequence && !this.checkingGap) {
      // A gap. Either the stream no longer holds those messages (retention, a purge), or they were
      // lost on the way: when the server cuts off a slow client (write deadline exceeded, seen on a
      // loaded machine) what it had sent is gone, and an AckNone consumer never sends it again. A
      // new cursor at the next sequence tells which: whatever it delivers first is taken.
      this.checkingGap = true;
      this.replaceCursor(new Error(`sequence ${sequence} came where ${this.nextSequence} was expected`));
      return;
    }
    if (sequence > this.nextSequence && this.options.confirmGap && !this.gapSkipAllowed) {
      this.askToSkip(this.nextSequence, sequence - 1);
      return;
    }
    this.checkingGap = false;
    this.gapSkipAllowed = false;
    const bytes = raw.data.length;
    if (this.bufferedDataBytes + bytes > this.maxBufferedBytes && this.buffer.length > 0) {
      // Back-pressure by bytes: this message is not taken; the next cursor starts at it.
      this.pause();
      return;
    }
    if (sequence > this.nextSequence) this.options.onSkip?.(this.nextSequence, sequence - 1);
    this.nextSequence = sequence + 1;
    this.lastDeliveryAtMs = Date.now();
    this.buffer.push(raw);
    this.bufferedDataBytes += bytes;
    this.acceptedBytes += bytes;
    this.acceptedMessages++;
    // Back-pressure: stop pulling; the next cursor starts where the buffer ends.
    if (this.buffer.length >= this.highWater || this.bufferedDataBytes >= this.maxBufferedBytes) this.pause();
    if (this.wake) {
      const wake = this.wake;
      this.wake = undefined;
      wake();
    }
  }

  /** Stops the cursor and asks the owner whether the confirmed gap may be skipped (options.confirmGap). */
  private askToSkip(from: number, to: number): void {
    this.cursor++;
    const messages = this.messages;
    this.messages = undefined;
    messages?.stop();
    this.options.confirmGap!(from, to).then(
      (skip) => {
        if (!skip || this.stopped || this.nextSequence !== from) return;
        this.gapSkipAllowed = true;
        void this.startConsumer().catch((error) => this.restartSoon(error));
      },
      (error: unknown) => {
        this.checkingGap = false; // ask again after the new cursor sees the gap again
        this.restartSoon(error);
      },
    );
  }

  private pause(): void {
    this.paused = true;
    this.cursor++;
    const messages = this.messages;
    this.messages = undefined;
    messages?.stop();
  }

  private onConsumerClosed(messages: ConsumerMessages, error: unknown): void {
    // A cursor stopped on purpose (back-pressure, stop()) is no longer the current one.
    if (messages !== this.messages || this.stopped) return;
    this.messages = undefined;
    this.restartSoon(error ?? new Error('consumer closed'));
  }

  private restartSoon(error: unknown): void {
    this.options.onRestart?.(error);
    setTimeout(() => void this.startConsumer().catch((failure) => this.restartSoon(failure)), 500).unref();
  }

  /**
   * Starts a new cursor when the current one has delivered nothing for `stallMs` although the
   * partition holds more (`endSequence`, the stream's last sequence as the caller last saw it) and
   * nothing holds it back (not paused, nothing buffered). Seen on a loaded machine: a consumer
   * that neither delivered nor closed, its task waiting for ever 4,715 messages short of the end.
   * Returns whether it restarted.
   */
  restartIfStalled(endSequence: number, stallMs: number): boolean {
    if (this.stopped || this.paused || this.messages === undefined || this.buffer.length > 0) return false;
    if (endSequence < this.nextSequence || Date.now() - this.lastDeliveryAtMs < stallMs) return false;
    this.replaceCursor(
      new Error(`no message for ${Math.round(stallMs / 1000)} s with ${endSequence - this.nextSequence + 1} to read`),
    );
    return true;
  }

  /** Stops the current cursor (its messages are no longer taken) and starts one at the next sequence. */
  private replaceCursor(why: Error): void {
    this.cursor++;
    const messages = this.messages;
    this.messages = undefined;
    messages?.stop();
    this.restartSoon(why);
  }

  /** Resolves when messages are buffered or after timeoutMs. */
  waitForMessages(timeoutMs: number): Promise<void> {
    if (this.buffer.length > 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, timeoutMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Takes every buffered message (at most max) in sequence order. */
  take(max: number): RawMessage[] {
    let taken: RawMessage[];
    if (this.buffer.length <= max) {
      taken = this.buffer;
      this.buffer = this.spare;
      this.buffer.length = 0;
      this.spare = taken;
      this.bufferedDataBytes = 0;
    } else {
      taken = this.buffer.splice(0, max);
      for (const message of taken) this.bufferedDataBytes -= message.data.length;
    }
    // Resumes below a quarter of either bound, as it pauses at the bound.
    if (
      this.paused &&
      !this.stopped &&
      this.buffer.length < this.batchMessages &&
      this.bufferedDataBytes < this.requestBytes
    ) {
      this.paused = false;
      void this.startConsumer().catch((error) => this.restartSoon(error));
    }
    return taken;
  }

  get buffered(): number {
    return this.buffer.length;
  }

  /** Data bytes of the buffered messages. */
  get bufferedBytes(): number {
    return this.bufferedDataBytes;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cursor++;
    this.messages?.stop();
    this.messages = undefined;
    this.wake?.();
  }
}

/**
 * A delivered message as the processor takes it: its data, stream sequence and JetStream's own
 * timestamp in ms (the far-future guard's reference, task-processor.ts). Both numbers are read
 * from the reply subject in place: the library's `seq` and `info` split the whole subject and
 * parse all of its tokens (≈ 4% of a replaying worker's CPU), and its `reply` decodes the
 * subject's bytes into a string first (≈ 3% more, and a 60-character string per event for the
 * collector): so the bytes are read where the client keeps them when it has them there
 * (`msg._msg.reply` of nats.js 3), else the `reply` string. An unexpected subject is left to the
 * library. `reader` is the consumer's own (DeliveryReader).
 */
export function deliveredMessage(message: JsMsg, reader: DeliveryReader): RawMessage {
  const raw = { data: message.data, sequence: 0, logTimeMs: 0 };
  // Neither `msg` nor `reply` is part of the JsMsg type, but every JsMsg the client delivers has them.
  const replyBytes = (message as { msg?: { _msg?: { reply?: unknown } } }).msg?._msg?.reply;
  if (replyBytes instanceof Uint8Array) {
    if (reader.read(replyBytes, raw)) return raw;
  } else {
    const reply = (message as { reply?: unknown }).reply;
    if (typeof reply === 'string' && readDelivery(reply, raw)) return raw;
  }
  raw.sequence = message.seq;
  raw.logTimeMs = Math.floor(message.info.timestampNanos / 1_000_000);
  return raw;
}

/**
 * Reads the reply subjects of one consumer. Everything up to the consumer's name (`$JS.ACK.`, the
 * domain and account hash of the longer shape, the stream, the consumer) is the same in every
 * subject the server sends it, so only the first is read whole; later ones are read from their
 * end: the numbers sit in the last tokens, and finding the dots of the whole subject was half of
 * what reading it cost. The tail read stands only when the dot before the delivery count is
 * where the whole read found it (so no token was taken for another); any other subject is read
 * whole, and its shape learned again.
 */
export class DeliveryReader {
  /** Tokens after `pending`: 0 (9 or 11 tokens) or 1 (12: a random token last); −1 before a whole read. */
  private trailing = -1;
  /** Where the dot before the delivery count is: the end of the consumer's constant prefix. */
  private prefixEnd = -1;

  read(reply: Uint8Array, into: { sequence: number; logTimeMs: number }): boolean {
    if (this.trailing >= 0 && readDeliveryTail(reply, this.trailing, this.prefixEnd, into)) return true;
    const tokens = readDeliveryShape(reply, into);
    this.trailing = tokens === 12 ? 1 : tokens > 0 ? 0 : -1;
    // The whole read leaves the dots in `dots`: the delivery count follows dot 3 (9 tokens) or 5.
    this.prefixEnd = tokens === 9 ? dots[3]! : tokens > 0 ? dots[5]! : -1;
    return tokens > 0;
  }
}

/**
 * The tail read of DeliveryReader: `<prefix>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`
 * and `trailing` tokens more, their dots found from the end; the dot before `delivered` must be
 * at `prefixEnd`. The same checks as the whole read on the numbers it takes.
 */
function readDeliveryTail(
  reply: Uint8Array,
  trailing: number,
  prefixEnd: number,
  into: { sequence: number; logTimeMs: number },
): boolean {
  if (reply.length <= prefixEnd || reply[prefixEnd] !== DOT) return false;
  for (let index = 0; index < JS_ACK_PREFIX.length; index++) if (reply[index] !== JS_ACK_PREFIX[index]) return false;
  // Dots from the end: `trailing` of them, then the ones before pending, ns, consumer seq, stream seq and delivered.
  const wanted = trailing + 5;
  let found = 0;
  for (let at = reply.length - 1; at >= prefixEnd && found < wanted; at--) {
    if (reply[at] === DOT) dots[found++] = at;
  }
  if (found < wanted || dots[wanted - 1] !== prefixEnd) return false;
  const nanosFrom = dots[trailing + 1]! + 1;
  const nanosTo = dots[trailing]!;
  const sequence = digitsValue(reply, dots[trailing + 3]! + 1, dots[trailing + 2]!);
  if (sequence < 0 || !isDigits(reply, nanosFrom, nanosTo)) return false;
  into.sequence = sequence;
  into.logTimeMs = nanosAsMs(reply, nanosFrom, nanosTo);
  return true;
}

/** Positions of the dots of the subject being read (one array, reused). */
const dots = new Int32Array(12);
/** A string subject as bytes (readDelivery): one buffer, grown when needed. */
let subjectBytes = new Uint8Array(128);
const DOT = 46;
const JS_ACK_PREFIX = [36, 74, 83, 46, 65, 67, 75, 46]; // "$JS.ACK."

/**
 * Reads the stream sequence and the timestamp (ns, as ms) of a JetStream reply subject into
 * `into`; false (and `into` unchanged) when the subject has neither known shape. The shapes (nats-server, as the
 * client's parseInfo reads them):
 *
 *     $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>
 *     $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>[.<random>]
 *
 * No token may hold a dot (stream, consumer and domain names cannot), so the dots count them.
 */
export function readDelivery(reply: string, into: { sequence: number; logTimeMs: number }): boolean {
  if (reply.length > subjectBytes.length) subjectBytes = new Uint8Array(reply.length * 2);
  for (let index = 0; index < reply.length; index++) {
    const code = reply.charCodeAt(index);
    // Beyond ASCII: neither a dot nor a digit, as the bytes of its UTF-8 form are not.
    subjectBytes[index] = code < 128 ? code : 255;
  }
  return readDeliveryShape(subjectBytes.subarray(0, reply.length), into) > 0;
}

/** readDelivery over the subject's bytes, giving its token count when it reads it (9, 11 or 12), else 0. */
function readDeliveryShape(reply: Uint8Array, into: { sequence: number; logTimeMs: number }): number {
  if (reply.length < JS_ACK_PREFIX.length) return 0;
  for (let index = 0; index < JS_ACK_PREFIX.length; index++) if (reply[index] !== JS_ACK_PREFIX[index]) return 0;
  let count = 0;
  for (let at = 0; at < reply.length; at++) {
    if (reply[at] !== DOT) continue;
    if (count === dots.length) return 0;
    dots[count++] = at;
  }
  const tokens = count + 1;
  // Token i lies between dot i − 1 and dot i; the new shape has two more tokens before the stream.
  const shift = tokens === 9 ? 0 : tokens === 11 || tokens === 12 ? 2 : -1;
  if (shift < 0) return 0;
  const sequence = digitsValue(reply, dots[4 + shift]! + 1, dots[5 + shift]!);
  const nanosFrom = dots[6 + shift]! + 1;
  const nanosTo = dots[7 + shift]!;
  if (sequence < 0 || !isDigits(reply, nanosFrom, nanosTo)) return 0;
  into.sequence = sequence;
  into.logTimeMs = nanosAsMs(reply, nanosFrom, nanosTo);
  return tokens;
}

/**
 * The ms of the ns in text[from, to) (digits), exactly as the client computes them —
 * Math.floor(parseInt(token) / 1e6) in doubles — so a replay decides the far-future guard exactly
 * as a run of an earlier version did. The ns (19 digits today) do not fit a double: below 2^63
 * parsing them rounds by at most 512 ns, and below 2^43 ms (the year 2248) the division rounds by
 * at most 489 ns (half of 2^-10 ms). So when the ns within the ms (the last six digits) are 2,000 or more away from a
 * whole ms, the result is the leading digits as they stand; only near a ms boundary (0.4% of
 * messages), or beyond those bounds, is the whole token parsed as the client parses it.
 */
function nanosAsMs(text: Uint8Array, from: number, to: number): number {
  const msTo = to - 6;
  if (msTo - from >= 1 && msTo - from <= 13) {
    let ms = 0;
    for (let index = from; index < msTo; index++) ms = ms * 10 + (text[index]! - 48);
    let withinMs = 0;
    for (let index = msTo; index < to; index++) withinMs = withinMs * 10 + (text[index]! - 48);
    if (ms < MS_BOUND && withinMs >= 2_000 && withinMs < 998_000) return ms;
  }
  return Math.floor(Number(String.fromCharCode(...text.subarray(from, to))) / 1_000_000);
}

/** 2^43 ms: below it the division by 1e6 rounds by at most half of 2^-10 ms. */
const MS_BOUND = 2 ** 43;

/** The decimal number in text[from, to), or −1 when that is empty, not all digits or above 2^53. */
function digitsValue(text: Uint8Array, from: number, to: number): number {
  if (!isDigits(text, from, to)) return -1;
  let value = 0;
  for (let index = from; index < to; index++) value = value * 10 + (text[index]! - 48);
  return value <= Number.MAX_SAFE_INTEGER ? value : -1;
}

function isDigits(text: Uint8Array, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let index = from; index < to; index++) {
    const code = text[index]!;
    if (code < 48 || code > 57) return false;
  }
  return true;
}
