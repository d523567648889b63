// How `kappa produce` shows progress: a bar with rate and ETA when reading a file of known size
// into a terminal, otherwise a plain line every few seconds (logs and pipes stay readable).
import cliProgress from 'cli-progress';

export interface ProgressSnapshot {
  bytesRead: number;
  published: number;
  rejected: number;
}

export interface ProduceProgress {
  stop(): void;
}

const PLAIN_INTERVAL_MS = 5_000;
const BAR_INTERVAL_MS = 200;

export function startProgress(totalBytes: number | undefined, snapshot: () => ProgressSnapshot): ProduceProgress {
  const startedAt = Date.now();
  const rate = (published: number) => Math.round(published / Math.max(0.001, (Date.now() - startedAt) / 1000));

  if (totalBytes !== undefined && process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: '{bar} {percentage}% | {published} published, {rejected} rejected | {rate} events/s | ETA {eta_formatted}',
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(1, totalBytes), 0, { published: 0, rejected: 0, rate: 0 });
    const timer = setInterval(() => {
      const now = snapshot();
      bar.update(now.bytesRead, { published: now.published, rejected: now.rejected, rate: rate(now.published) });
    }, BAR_INTERVAL_MS);
    timer.unref();
    let stopped = false;
    return {
      stop() {
        if (stopped) return;
        stopped = true;
        clearInterval(timer);
        const now = snapshot();
        bar.update(now.bytesRead, { published: now.published, rejected: now.rejected, rate: rate(now.published) });
        bar.stop();
      },
    };
  }

  const timer = setInterval(() => {
    const now = snapshot();
    const share = totalBytes ? ` (${Math.floor((100 * now.bytesRead) / Math.max(1, totalBytes))}% of input)` : '';
    console.error(`kappa: ${now.published} published, ${now.rejected} rejected${share}, ${rate(now.published)} events/s`);
  }, PLAIN_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
