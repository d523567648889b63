// Processing time is injected (STYLE.md): production passes the system clock, tests a manual one.
// The coordinator keeps its own copy of this two-line interface because it may not import worker/.
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
