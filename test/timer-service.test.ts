// The one timer service (worker/timer-service.ts): registered once, deleted timers never fire,
// due timers fire in (time, key, tag) order, and what a firing timer registers fires in the same pass.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimerService, type Timer } from '../worker/timer-service.js';

const named = (timer: Timer) => `${timer.timeMs}/${timer.key}/${timer.tag}`;

describe('TimerService', () => {
  it('fires due timers in (time, key, tag) order, each once, and never a deleted one', () => {
    const timers = new TimerService();
    expect(timers.register('event-time', 'b', 10, 'x')).toBe(true);
    expect(timers.register('event-time', 'a', 10, 'y')).toBe(true);
    expect(timers.register('event-time', 'a', 10, 'x')).toBe(true);
    expect(timers.register('event-time', 'a', 5)).toBe(true);
    expect(timers.register('event-time', 'a', 10, 'x')).toBe(false); // already registered
    expect(timers.register('event-time', 'c', 20)).toBe(true);
    expect(timers.delete('event-time', 'a', 10, 'y')).toBe(true);
    expect(timers.delete('event-time', 'a', 10, 'y')).toBe(false);
    expect(timers.size).toBe(4);

    const fired: string[] = [];
    timers.advanceWatermark(9, (timer) => fired.push(named(timer)));
    expect(fired).toEqual(['5/a/']);
    timers.advanceWatermark(19, (timer) => fired.push(named(timer)));
    expect(fired).toEqual(['5/a/', '10/a/x', '10/b/x']);
    timers.advanceWatermark(19, (timer) => fired.push(named(timer)));
    expect(fired).toHaveLength(3);
    expect([timers.hasTimers('a'), timers.hasTimers('b'), timers.hasTimers('c')]).toEqual([false, false, true]);
    expect(timers.size).toBe(1);
  });

  it('fires a timer deleted and registered again once, and keeps processing time apart', () => {
    const timers = new TimerService();
    timers.register('event-time', 'k', 10, 't');
    timers.delete('event-time', 'k', 10, 't');
    timers.register('event-time', 'k', 10, 't');
    timers.register('processing-time', 'k', 10, 't');
    const fired: string[] = [];
    timers.advanceWatermark(100, (timer) => fired.push(`${timer.domain} ${named(timer)}`));
    expect(fired).toEqual(['event-time 10/k/t']);
    expect(timers.nextProcessingTime()).toBe(10);
    timers.advanceProcessingTime(10, (timer) => fired.push(`${timer.domain} ${named(timer)}`));
    expect(fired).toEqual(['event-time 10/k/t', 'processing-time 10/k/t']);
    expect(timers.nextProcessingTime()).toBeUndefined();
  });

  it('fires what a firing timer registers when it is due in the same pass, in order', () => {
    const timers = new TimerService();
    timers.register('event-time', 'a', 1, 'first');
    timers.register('event-time', 'b', 3);
    const fired: string[] = [];
    timers.advanceWatermark(5, (timer) => {
      fired.push(named(timer));
      if (timer.tag === 'first') {
        timers.register('event-time', 'a', 2, 'second'); // due now: fires before b
        timers.register('event-time', 'a', 9, 'later');
      }
    });
    expect(fired).toEqual(['1/a/first', '2/a/second', '3/b/']);
    expect(timers.size).toBe(1);
  });

  it('equals a sorted list of live timers for any registrations, deletions and watermarks', () => {
    const operation = fc.oneof(
      fc.record({
        kind: fc.constantFrom('register' as const, 'delete' as const),
        key: fc.constantFrom('a', 'b', 'c'),
        timeMs: fc.integer({ min: 0, max: 20 }),
        tag: fc.constantFrom('', 'f', 'p'),
      }),
      fc.record({ kind: fc.constant('advance' as const), timeMs: fc.integer({ min: 0, max: 20 }) }),
    );
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 80 }), (operations) => {
        const timers = new TimerService();
        const model = new Map<string, { key: string; timeMs: number; tag: string }>();
        const id = (key: string, timeMs: number, tag: string) => JSON.stringify([timeMs, key, tag]);
        for (const op of operations) {
          if (op.kind === 'register') {
            const fresh = !model.has(id(op.key, op.timeMs, op.tag));
            expect(timers.register('event-time', op.key, op.timeMs, op.tag)).toBe(fresh);
            model.set(id(op.key, op.timeMs, op.tag), op);
          } else if (op.kind === 'delete') {
            expect(timers.delete('event-time', op.key, op.timeMs, op.tag)).toBe(
              model.delete(id(op.key, op.timeMs, op.tag)),
            );
          } else {
            const due = [...model.values()]
              .filter((timer) => timer.timeMs <= op.timeMs)
              .sort((x, y) =>
                x.timeMs !== y.timeMs
                  ? x.timeMs - y.timeMs
                  : x.key !== y.key
                    ? x.key < y.key
                      ? -1
                      : 1
                    : x.tag < y.tag
                      ? -1
                      : x.tag > y.tag
                        ? 1
                        : 0,
              );
            for (const timer of due) model.delete(id(timer.key, timer.timeMs, timer.tag));
            const fired: string[] = [];
            timers.advanceWatermark(op.timeMs, (timer) => fired.push(named(timer)));
            expect(fired).toEqual(due.map((timer) => `${timer.timeMs}/${timer.key}/${timer.tag}`));
          }
          expect(timers.size).toBe(model.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});
