// Leader election among coordinator replicas through one NATS KV key (DESIGN: "elected through a
// NATS KV key with compare-and-set on revision; the revision is the fencing token").
//
// - Acquire: `kv.create` (CAS against absent) when the key is missing, deleted or expired; or
//   `kv.update(key, me, revision)` when its holder stopped renewing for a whole lease.
// - Renew: `kv.update(key, me, myRevision)` every ttl/4. A CAS failure means someone else holds
//   the key now: step down at once.
// - Expire: the bucket's `max_age` is the lease (bucket-wide on 2.9, FACTS.md), so a dead
//   leader's key disappears by itself. Watchers see no event when a key expires on 2.9, so
//   followers poll instead of watching, and also take over a key whose revision has not changed
//   for a whole lease (the bucket may have been created with a longer max_age).
// - Safety: a leader considers itself leading only until `renewStartedAt + ttl·0.75`. A follower
//   waits at least a full ttl after it last saw the revision change, and the server expires the
//   key a ttl after it was written; both start no earlier than the leader's renew attempt, so
//   (with clocks running at the same rate) the old leader has stepped down before anyone wins.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, type Clock } from '../protocol/index.js';
import { internalReplicas } from '../runtime/index.js';

const LEADER_KEY = 'coordinator';
/** Fraction of the lease a leader trusts itself to still be leading after its last renew began. */
const LEADING_FRACTION = 0.75;

export interface LeaderElectionOptions {
  kv: KV;
  candidateId: string;
  /** Lease length: the bucket's max_age and the follower's patience. */
  ttlMs: number;
  clock: Clock;
  /** Called whenever this candidate starts or stops leading. */
  onChange?: (leading: boolean, fencingToken: number | undefined) => void;
  /** Errors from NATS that do not change leadership (timeouts while disconnected). */
  onError?: (error: unknown) => void;
}

interface HolderValue {
  candidateId: string;
  acquiredAtMs: number;
}

export class LeaderElection {
  private leading = false;
  /** Revision of our latest successful write of the key (changes on every renew). */
  private revision = 0;
  private token: number | undefined;
  private renewStartedAtMs = 0;
  /** Follower view: the revision last seen and when (local clock) it was first seen. */
  private seenRevision = 0;
  private seenRevisionSinceMs = 0;
  /** Follower view: when (local clock) a held leader key was last read. */
  private holderSeenAtMs = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private tickInFlight: Promise<void> = Promise.resolve();

  constructor(private readonly options: LeaderElectionOptions) {}

  /** Opens (or creates, with max_age = ttl) the leader bucket. */
  static async openBucket(nc: NatsConnection, ttlMs: number): Promise<KV> {
    return new Kvm(nc).create(buckets.leader, { history: 1, ttl: ttlMs, replicas: internalReplicas() });
  }

  get candidateId(): string {
    return this.options.candidateId;
  }

  /** The revision that won the election: increases with every change of leader. */
  get fencingToken(): number | undefined {
    return this.isLeader() ? this.token : undefined;
  }

  /** True only while the lease is certainly ours. */
  isLeader(): boolean {
    return this.leading && this.options.clock.now() < this.renewStartedAtMs + this.options.ttlMs * LEADING_FRACTION;
  }

  /**
   * True while leading, or while following a leader whose key was read within the last lease
   * (followers poll every ttl/4): the replica knows where admin requests go. For readiness.
   */
  hasLeader(): boolean {
    return this.isLeader() || (!this.leading && this.options.clock.now() - this.holderSeenAtMs <= this.options.ttlMs);
  }

  /** Who holds the key according to the last read (for status); may be stale. */
  async currentHolder(): Promise<string | undefined> {
    const entry = await this.options.kv.get(LEADER_KEY);
    if (!entry || entry.operation !== 'PUT') return undefined;
    return (entry.json() as HolderValue).candidateId;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops campaigning; keeps the key (a crash-like stop, used by tests). */
  async stop(): Promise<void> {
    await this.halt();
    this.setLeading(false);
  }

  /**
   * Graceful handover: stop campaigning and delete the key if it is still ours (CAS on revision).
   * True when it deleted the key, so a follower leads on its next poll instead of after a lease.
   */
  async resign(): Promise<boolean> {
    // The revision is read after the tick in flight settles: a renew that lands meanwhile moves
    // it, and a delete against the older one would fail and leave the key for a whole lease.
    await this.halt();
    const wasLeading = this.leading;
    const revision = this.revision;
    this.setLeading(false);
    if (!wasLeading) return false;
    try {
      // Delete with CAS: never delete a key a successor already rewrote.
      await this.options.kv.delete(LEADER_KEY, { previousSeq: revision });
      return true;
    } catch (error) {
      this.options.onError?.(error);
      return false;
    }
  }

  /** Stops the ticks and waits for the one in flight. */
  private async halt(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.tickInFlight;
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.tickInFlight = this.tick()
        .catch((error: unknown) => this.options.onError?.(error))
        .finally(() => this.schedule(this.options.ttlMs / 4));
    }, delayMs);
  }

  private async tick(): Promise<void> {
    if (this.leading) await this.renew();
    else await this.campaign();
    // The lease ran out without a successful renew (e.g. disconnected): step down.
    if (this.leading && !this.isLeader()) this.setLeading(false);
  }

  private value(): string {
    const holder: HolderValue = { candidateId: this.options.candidateId, acquiredAtMs: this.options.clock.now() };
    return JSON.stringify(holder);
  }

  private async renew(): Promise<void> {
    const startedAtMs = this.options.clock.now();
    try {
      this.revision = await this.options.kv.update(LEADER_KEY, this.value(), this.revision);
      this.renewStartedAtMs = startedAtMs;
    } catch (error) {
      // A CAS failure (someone else wrote the key, or it expired) ends our term; a timeout does
      // not by itself, the lease deadline in isLeader() does.
      const entry = await this.options.kv.get(LEADER_KEY).catch(() => undefined);
      if (entry !== undefined && (entry === null || entry.revision !== this.revision)) this.setLeading(false);
      else this.options.onError?.(error);
    }
  }

  private async campaign(): Promise<void> {
    const now = this.options.clock.now();
    const entry = await this.options.kv.get(LEADER_KEY);
    if (entry === null || entry.operation !== 'PUT') {
      await this.acquire(() => this.options.kv.create(LEADER_KEY, this.value()));
      return;
    }
    this.holderSeenAtMs = now;
    if (entry.revision !== this.seenRevision) {
      this.seenRevision = entry.revision;
      this.seenRevisionSinceMs = now;
      return;
    }
    if (now - this.seenRevisionSinceMs >= this.options.ttlMs) {
      // The holder has not renewed for a whole lease: take the key over with CAS on its revision.
      await this.acquire(() => this.options.kv.update(LEADER_KEY, this.value(), entry.revision));
    }
  }

  private async acquire(write: () => Promise<number>): Promise<void> {
    const startedAtMs = this.options.clock.now();
    let revision: number;
    try {
      revision = await write();
    } catch {
      return; // lost the race to another candidate: stay a follower
    }
    this.revision = revision;
    this.token = revision;
    this.renewStartedAtMs = startedAtMs;
    this.setLeading(true);
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    if (!leading) this.token = undefined;
    this.options.onChange?.(leading, this.token);
  }
}
