// The producer's publishes awaiting their PubAck, and when each is due to be sent again: after
// its ack timeout, at once after a reconnect, or after a back-off when its stream answered "no
// responders" (electing a leader). A resend repeats the message id, so the server's duplicate
// window drops any copy that did arrive.
import type { MsgHdrsImpl } from '@nats-io/transport-node';
import { retryDelayMs } from './nats-retry.js';

export interface PendingPublish {
  subject: string;
  payload: Uint8Array;
  /** Carries the message id; built once, sent again as is on a retry. */
  headers: MsgHdrsImpl;
  /** For error messages. */
  messageId: string;
  partition: number;
  firstSentAtMs: number;
  sentAtMs: number;
  attempts: number;
  /** "No responders" (503) answers so far: the stream has no leader. */
  noResponders: number;
  /** When a publish answered by "no responders" is due to be sent again. */
  resendAtMs: number;
}

export class InFlightPublishes {
  /** Reply token → publish awaiting its ack, oldest send first (a resend moves to the end). */
  private readonly pending = new Map<number, PendingPublish>();
  /** Tokens of pending publishes answered by "no responders", resent at their resendAtMs. */
  private readonly awaitingLeader = new Set<number>();
  /** Tokens are the sequence numbers 1, 2, …: no pending publish has a smaller one than this. */
  private oldestToken = 1;
  /** Sends repeated after an ack timeout, a reconnect or "no responders". */
  retries = 0;

  constructor(
    /** Puts a publish on the wire, with the reply subject of its token. */
    private readonly transmit: (token: number, publish: PendingPublish) => void,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  get(token: number): PendingPublish | undefined {
    return this.pending.get(token);
  }

  /** Sends a publish (its first send or a repeat) and files it as awaiting its ack. */
  send(token: number, publish: PendingPublish): void {
    publish.attempts++;
    publish.sentAtMs = Date.now();
    this.transmit(token, publish);
    // Re-inserting keeps the map ordered by send time, which resendDue() relies on.
    this.pending.delete(token);
    this.pending.set(token, publish);
  }

  /** The ack of a publish arrived: it is done. */
  acknowledged(token: number): void {
    this.pending.delete(token);
    this.awaitingLeader.delete(token);
  }

  /** Forgets every pending publish (their sender gave up) and returns them, oldest send first. */
  clear(): PendingPublish[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.awaitingLeader.clear();
    return all;
  }

  /** Its stream answered "no responders": send it again after a back-off (resendDue() does). */
  awaitLeader(token: number, publish: PendingPublish): void {
    publish.resendAtMs = Date.now() + retryDelayMs(publish.noResponders++);
    this.awaitingLeader.add(token);
  }

  /** After a reconnect: publishes sent on the lost connection will never be acked. */
  resendAll(): void {
    for (const [token, publish] of [...this.pending]) this.resend(token, publish);
  }

  /** Sends again what is due at `now`: "no responders" past their back-off, then sends older than the ack timeout. */
  resendDue(now: number, ackTimeoutMs: number): void {
    for (const token of this.awaitingLeader) {
      const publish = this.pending.get(token);
      if (publish && publish.resendAtMs <= now) this.resend(token, publish);
    }
    const expiredBefore = now - ackTimeoutMs;
    for (const [token, publish] of this.pending) {
      // Oldest first: the first publish still within its timeout ends the sweep (a resend moves
      // to the end with a fresh send time, so it ends the loop too).
      if (publish.sentAtMs > expiredBefore) break;
      this.resend(token, publish);
    }
  }

  /** The pending publish first sent longest ago (the tokens are consecutive sequence numbers). */
  oldest(): PendingPublish | undefined {
    // Every pending token is at least oldestToken, so with one pending the loop stops at the smallest.
    while (this.pending.size > 0 && !this.pending.has(this.oldestToken)) this.oldestToken++;
    return this.pending.get(this.oldestToken);
  }

  private resend(token: number, publish: PendingPublish): void {
    this.awaitingLeader.delete(token);
    this.retries++;
    this.send(token, publish);
  }
}
