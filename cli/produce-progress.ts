// How `kappa produce` shows progress: a bar with rate and ETA when reading a file of known size
// into a terminal, otherwise a plain line every few seconds (logs and pipes stay readable). While
// NATS is being waited for (a leader election, a lost node), the bar or a line says so, and for
// how much longer the producer retries.
import cliProgress from 'cli-progress';
import { formatSeconds, type NatsWait } from '../client/index.js';

export interface ProgressSnapshot {
  bytesRead: number;
  published: number;
  rejected: number;
  /** Set while NATS is being waited for. */
  waiting?: NatsWait;
}

export interface ProduceProgress {
  stop(): void;
}

const PLAIN_INTERVAL_MS = 5_000;
const BAR_INTERVAL_MS = 200;
/** How often plain mode looks for the start of a wait, so it is reported at once. */
const PLAIN_TICK_MS = 250;

/** "waiting for NATS: <reason>, retrying for 42 s more". */
export function describeWait(wait: NatsWait, nowMs = Date.now()): string {
  return `waiting for NATS: ${wait.reason}, retrying for ${formatSeconds(wait.retryUntilMs - nowMs)} more`;
}

export function startProgress(totalBytes: number | undefined, snapshot: () => ProgressSnapshot): ProduceProgress {
  const startedAt = Date.now();
  const rate = (published: number) => Math.round(published / Math.max(0.001, (Date.now() - startedAt) / 1000));

  if (totalBytes !== undefined && process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format:
          '{bar} {percentage}% | {published} published, {rejected} rejected | {rate} events/s | ETA {eta_formatted}{status}',
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    const fields = (now: ProgressSnapshot) => ({
      published: now.published,
      rejected: now.rejected,
      rate: rate(now.published),
      status: now.waiting ? ` | ${describeWait(now.waiting)}` : '',
    });
    bar.start(Math.max(1, totalBytes), 0, fields({ bytesRead: 0, published: 0, rejected: 0 }));
    const timer = setInterval(() => {
      const now = snapshot();
      bar.update(now.bytesRead, fields(now));
    }, BAR_INTERVAL_MS);
    timer.unref();
    let stopped = false;
    return {
      stop() {
        if (stopped) return;
        stopped = true;
        clearInterval(timer);
        const now = snapshot();
        bar.update(now.bytesRead, { ...fields(now), status: '' });
        bar.stop();
      },
    };
  }

  let lastLineAt = Date.now();
  let lastWaitReason: string | undefined;
  const timer = setInterval(() => {
    const now = snapshot();
    const time = Date.now();
    // A wait that starts (or changes) is reported at once, then like the counts, every few seconds.
    const waitChanged = now.waiting?.reason !== lastWaitReason;
    lastWaitReason = now.waiting?.reason;
    if (!(now.waiting && waitChanged) && time - lastLineAt < PLAIN_INTERVAL_MS) return;
    lastLineAt = time;
    if (now.waiting) {
      console.error(`kappa: ${describeWait(now.waiting, time)}`);
      return;
    }
    const share = totalBytes ? ` (${Math.floor((100 * now.bytesRead) / Math.max(1, totalBytes))}% of input)` : '';
    console.error(
      `kappa: ${now.published} published, ${now.rejected} rejected${share}, ${rate(now.published)} events/s`,
    );
  }, PLAIN_TICK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
