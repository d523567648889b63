// The actor operator: runs a job's onEvent for each event and onTimer for each timer that comes
// due, through one reusable TaskActorContext; a handler that throws is retried with its writes,
// timers and emits undone, then dead-lettered. Timers are state rows (so they survive a restore)
// and live in the operator's timer service.
import type { KeyedState, SubKey } from '../state/keyed-state.js';
import { TaskActorContext, TIMER_NAMESPACE, type TimerRequest } from './actor-context.js';
import type { Clock } from '../protocol/clock.js';
import { digestOf } from './digest.js';
import type { ActorJobSpec } from './job.js';
import type { Operator, OperatorOutput, RawMessage } from './operator.js';
import { TimerService, type Timer, type TimerDomain } from './timer-service.js';

export class ActorOperator implements Operator {
  readonly residentNamespaces = [TIMER_NAMESPACE];
  readonly readsKeyedState = true;
  private readonly context: TaskActorContext;
  private readonly timers = new TimerService();

  constructor(
    private readonly job: ActorJobSpec,
    private readonly state: KeyedState,
    private readonly out: OperatorOutput,
    partition: number,
    clock: Clock,
  ) {
    this.context = new TaskActorContext(state, job, partition, out.outputs, () => clock.now(), out.late);
  }

  /** The output revision counter, for a checkpoint. */
  get emitCounter(): number {
    return this.context.emitCounter();
  }

  restoreEmitCounter(emits: number): void {
    this.context.restoreEmitCounter(emits);
  }

  isPinned(key: string): boolean {
    return this.timers.hasTimers(key);
  }

  takeLateUpdates(): number {
    return 0;
  }

  /** The actor's state and timers are keyed-state rows already. */
  async syncState(): Promise<void> {}

  onEvent(key: string, timeMs: number, value: unknown, watermarkMs: number, message: RawMessage): boolean {
    const context = this.context;
    for (let attempt = 1; ; attempt++) {
      context.begin(key, timeMs, watermarkMs, this.out.source, value, message);
      try {
        this.job.actor.onEvent(context, value);
        this.applyTimerRequests(context.timerRequests);
        return true;
      } catch (error) {
        context.rollback();
        if (attempt > this.job.handlerRetries) {
          this.out.deadLetter(
            'handler-failed',
            `onEvent threw after ${attempt} attempts: ${(error as Error).message}`,
            message,
          );
          return false;
        }
      }
    }
  }

  onWatermark(watermarkMs: number): void {
    this.firingAtWatermarkMs = watermarkMs;
    this.timers.advanceWatermark(watermarkMs, this.fireTimer);
  }

  onProcessingTime(nowMs: number, watermarkMs: number): void {
    this.firingAtWatermarkMs = watermarkMs;
    this.timers.advanceProcessingTime(nowMs, this.fireTimer);
  }

  /** The watermark the timers being fired see. */
  private firingAtWatermarkMs = -Infinity;
  /** runTimer, bound once: the watermark moves after nearly every event. */
  private readonly fireTimer = (timer: Timer): void => this.runTimer(timer, this.firingAtWatermarkMs);

  restoreRow(key: string, _namespace: string, subKey: SubKey): void {
    const [domain, timeMs, tag] = subKey as [TimerDomain, number, string];
    this.timers.register(domain, key, timeMs, tag);
  }

  private applyTimerRequests(requests: readonly TimerRequest[]): void {
    for (const request of requests) {
      const subKey = [request.domain, request.timeMs, request.tag];
      if (request.cancel) {
        if (this.timers.delete(request.domain, request.key, request.timeMs, request.tag))
          this.state.delete(request.key, TIMER_NAMESPACE, subKey);
      } else if (this.timers.register(request.domain, request.key, request.timeMs, request.tag)) {
        this.state.put(request.key, TIMER_NAMESPACE, subKey, 1);
      }
    }
  }

  private runTimer(timer: Timer, watermarkMs: number): void {
    this.state.delete(timer.key, TIMER_NAMESPACE, [timer.domain, timer.timeMs, timer.tag]);
    const onTimer = this.job.actor.onTimer;
    if (!onTimer) return;
    const context = this.context;
    const info = { domain: timer.domain, timeMs: timer.timeMs, tag: timer.tag };
    for (let attempt = 1; ; attempt++) {
      context.begin(timer.key, timer.timeMs, watermarkMs);
      try {
        onTimer(context, info);
        this.applyTimerRequests(context.timerRequests);
        return;
      } catch (error) {
        context.rollback();
        if (attempt > this.job.handlerRetries) {
          const data = new TextEncoder().encode(JSON.stringify({ key: timer.key, timer: info }));
          // Several timers may fail while one event advances the watermark: each letter is named by its timer.
          const idSuffix = `/timer/${digestOf([timer.key, timer.domain, timer.timeMs, timer.tag])}`;
          this.out.deadLetter(
            'handler-failed',
            `onTimer threw after ${attempt} attempts: ${(error as Error).message}`,
            { data, sequence: this.out.sequence },
            idSuffix,
          );
          return;
        }
      }
    }
  }
}
