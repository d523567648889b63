// Exponential back-off between restarts of a failing task, which a stop can cut short (a revoke
// or SIGTERM must not wait out a 30-second pause).
export class Backoff {
  private delayMs: number;
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly initialMs = 500,
    private readonly maxMs = 30_000,
  ) {
    this.delayMs = initialMs;
  }

  /** The pause the next wait() will take. */
  get nextDelayMs(): number {
    return this.delayMs;
  }

  /** Waits the current delay (or until wake()), then doubles it up to the maximum. */
  async wait(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.delayMs);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wakeUp = undefined;
    this.delayMs = Math.min(this.delayMs * 2, this.maxMs);
  }

  /** Ends a wait in progress at once. */
  wake(): void {
    this.wakeUp?.();
  }

  reset(): void {
    this.delayMs = this.initialMs;
  }
}
