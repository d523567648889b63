// The one timer service of the engine (Flink's InternalTimerService): operators register
// event-time and processing-time timers per key and are called back when the watermark or the
// clock passes them; they keep no queues of their own. One instance per operator, so an operator
// only ever sees its own timers.
//
// - A timer is (domain, key, time, tag); registering one that exists is a no-op, as in Flink.
// - Deleting marks it dead; its queue entry is skipped when it comes up (no heap search).
// - Timers due together fire in (time, key, tag) order, so the order, and with it every revision
//   an actor emits, is the same in a live run, after a restore and in a replay.
// - The service keeps timers in memory only; the owner persists what it must (actor timers are
//   state rows; window timers follow from the window rows) and registers them again at restore.
import TinyQueue from 'tinyqueue';

export type TimerDomain = 'event-time' | 'processing-time';

export interface Timer {
  domain: TimerDomain;
  key: string;
  timeMs: number;
  tag: string;
}

function compareTimers(a: Timer, b: Timer): number {
  if (a.timeMs !== b.timeMs) return a.timeMs - b.timeMs;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0;
}

/** A timer in a queue; deleting it marks it dead, and its queue entry is dropped when it comes up. */
class QueuedTimer implements Timer {
  live = true;

  constructor(
    readonly domain: TimerDomain,
    readonly key: string,
    readonly timeMs: number,
    readonly tag: string,
    /** Its identity in the live map, built once when it is registered. */
    readonly id: string,
  ) {}
}

class TimerQueue {
  private readonly queue = new TinyQueue<QueuedTimer>([], compareTimers);
  /** Live timers by identity. */
  private readonly live = new Map<string, QueuedTimer>();

  constructor(readonly domain: TimerDomain) {}

  add(key: string, timeMs: number, tag: string): boolean {
    const id = identity(key, timeMs, tag);
    if (this.live.has(id)) return false;
    const timer = new QueuedTimer(this.domain, key, timeMs, tag, id);
    this.live.set(id, timer);
    this.queue.push(timer);
    return true;
  }

  delete(key: string, timeMs: number, tag: string): boolean {
    const id = identity(key, timeMs, tag);
    const timer = this.live.get(id);
    if (timer === undefined) return false;
    timer.live = false;
    this.live.delete(id);
    return true;
  }

  /** The earliest live timer's time, or undefined. */
  peekTime(): number | undefined {
    this.dropDead();
    return this.queue.peek()?.timeMs;
  }

  /**
   * Removes and returns the earliest live timer due at `untilMs`, or undefined. Called after every
   * event that moves the watermark, so it builds nothing unless a timer is due.
   */
  popDue(untilMs: number): Timer | undefined {
    this.dropDead();
    const next = this.queue.peek();
    if (next === undefined || next.timeMs > untilMs) return undefined;
    this.queue.pop();
    this.live.delete(next.id);
    return next;
  }

  get size(): number {
    return this.live.size;
  }

  private dropDead(): void {
    let next = this.queue.peek();
    while (next !== undefined && !next.live) {
      this.queue.pop();
      next = this.queue.peek();
    }
  }
}

function identity(key: string, timeMs: number, tag: string): string {
  return `${timeMs}\u0000${tag}\u0000${key}`;
}

export class TimerService {
  private readonly eventTime = new TimerQueue('event-time');
  private readonly processingTime = new TimerQueue('processing-time');
  /** Live timers per key: a key with timers must stay resident (its state is read when they fire). */
  private readonly perKey = new Map<string, number>();

  /** Registers a timer; false when the same timer was already registered. */
  register(domain: TimerDomain, key: string, timeMs: number, tag = ''): boolean {
    const added = this.queue(domain).add(key, timeMs, tag);
    if (added) this.count(key, 1);
    return added;
  }

  /** Deletes a registered timer; false when there was none. */
  delete(domain: TimerDomain, key: string, timeMs: number, tag = ''): boolean {
    const deleted = this.queue(domain).delete(key, timeMs, tag);
    if (deleted) this.count(key, -1);
    return deleted;
  }

  /** Fires every event-time timer at or before the watermark (Flink: a timer fires when wm >= its time). */
  advanceWatermark(watermarkMs: number, fire: (timer: Timer) => void): void {
    this.fireDue(this.eventTime, watermarkMs, fire);
  }

  /** Fires every processing-time timer at or before `nowMs`. */
  advanceProcessingTime(nowMs: number, fire: (timer: Timer) => void): void {
    this.fireDue(this.processingTime, nowMs, fire);
  }

  /** When the next processing-time timer is due, or undefined. */
  nextProcessingTime(): number | undefined {
    return this.processingTime.peekTime();
  }

  hasTimers(key: string): boolean {
    return this.perKey.has(key);
  }

  get size(): number {
    return this.eventTime.size + this.processingTime.size;
  }

  // A timer fired may register more; those due now fire in the same pass (as in Flink).
  private fireDue(queue: TimerQueue, untilMs: number, fire: (timer: Timer) => void): void {
    for (let timer = queue.popDue(untilMs); timer !== undefined; timer = queue.popDue(untilMs)) {
      this.count(timer.key, -1);
      fire(timer);
    }
  }

  private queue(domain: TimerDomain): TimerQueue {
    return domain === 'event-time' ? this.eventTime : this.processingTime;
  }

  private count(key: string, delta: number): void {
    const count = (this.perKey.get(key) ?? 0) + delta;
    if (count > 0) this.perKey.set(key, count);
    else this.perKey.delete(key);
  }
}
