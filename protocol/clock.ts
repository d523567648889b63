// Processing time is injected (STYLE.md "Time is injected"): production passes `systemClock`,
// tests a `ManualClock` they advance by hand. One definition for every process: the coordinator
// and the worker share only protocol/.
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to: tests drive time instead of sleeping. */
export class ManualClock implements Clock {
  constructor(private timeMs = 0) {}

  now(): number {
    return this.timeMs;
  }

  advance(ms: number): void {
    this.timeMs += ms;
  }

  set(ms: number): void {
    this.timeMs = ms;
  }
}
