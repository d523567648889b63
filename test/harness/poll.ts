// The one way tests wait for something that happens elsewhere (a process, a server, a thread):
// probe it every so often until it holds, and when it never does, fail with a message that says
// what was awaited, for how long, and what the probe saw last. Every wait loop in the tests and
// the harness goes through here. No vitest import: bench/ uses the harness outside vitest.
import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions<T> {
  /** What is awaited, as the failure message says it: "timed out after 30000 ms waiting for <what>". */
  what: string;
  timeoutMs: number;
  /** The pause between probes (default 250 ms). */
  intervalMs?: number;
  /**
   * Whether a value the probe returned ends the wait. By default any value but undefined, null and
   * false does; `() => true` waits only until the probe stops throwing.
   */
  until?: (value: T) => boolean;
  /** Checked after each probe that did not end the wait: a reason returned fails the wait at once (the awaited process exited). */
  giveUpIf?: () => string | undefined;
  /** More to show when the wait fails, such as the processes' last logs. */
  context?: () => string;
}

/** A wait that timed out or gave up; `lastValue` and `cause` (the probe's last error) are what it saw. */
export class PollError extends Error {
  override readonly name = 'PollError';

  constructor(
    message: string,
    readonly what: string,
    readonly lastValue: unknown,
    cause: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

const DEFAULT_INTERVAL_MS = 250;
const SHOWN_VALUE_CHARS = 2_000;

/**
 * Calls `probe` until it returns a value that ends the wait (see `until`), and returns that value.
 * A probe that throws counts as "not yet"; the last error is kept for the failure message.
 */
export function pollUntil<T>(
  probe: () => T | Promise<T>,
  options: PollOptions<T> & { until: (value: T) => boolean },
): Promise<T>;
export function pollUntil<T>(
  probe: () => T | Promise<T>,
  options: PollOptions<T>,
): Promise<Exclude<T, undefined | null | false>>;
export function pollUntil<T>(probe: () => T | Promise<T>, options: PollOptions<T>): Promise<T> {
  return poll(probe, options);
}

async function poll<T>(probe: () => T | Promise<T>, options: PollOptions<T>): Promise<T> {
  const { what, timeoutMs, intervalMs = DEFAULT_INTERVAL_MS, until = isSomething, giveUpIf, context } = options;
  const deadline = Date.now() + timeoutMs;
  let seen = false;
  let lastValue: T | undefined;
  let lastError: unknown;
  const fail = (how: string): never => {
    const saw = [
      seen ? `last value: ${show(lastValue)}` : 'no value returned',
      ...(lastError === undefined ? [] : [`last error: ${errorText(lastError)}`]),
    ];
    const extra = context?.() ?? '';
    throw new PollError(
      `${how} waiting for ${what}; ${saw.join('; ')}${extra ? `\n${extra}` : ''}`,
      what,
      lastValue,
      lastError,
    );
  };
  for (;;) {
    try {
      const value = await probe();
      seen = true;
      lastValue = value;
      if (until(value)) return value;
    } catch (error) {
      lastError = error;
    }
    const reason = giveUpIf?.();
    if (reason !== undefined) fail(`gave up (${reason})`);
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) fail(`timed out after ${timeoutMs} ms`);
    // One last probe at the deadline rather than none after a pause that overshoots it.
    await sleep(Math.min(intervalMs, remainingMs));
  }
}

function isSomething(value: unknown): boolean {
  return value !== undefined && value !== null && value !== false;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A value as the failure message shows it: JSON where it can be, cut to a readable length. */
function show(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = JSON.stringify(value);
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > SHOWN_VALUE_CHARS
    ? `${text.slice(0, SHOWN_VALUE_CHARS)}… (${text.length - SHOWN_VALUE_CHARS} more characters)`
    : text;
}
