// How a long-running process (`kappa coordinator`, `kappa worker`) meets a NATS that does not answer
// while it starts: down, stalled, or electing its JetStream leaders (no quorum yet). Each start-up
// step that needs NATS is retried with back-off until it answers, every wait logged, instead of
// ending the process on a timeout or a refused connection; the process's /readyz says not ready
// meanwhile. Anything else (bad credentials, a bucket with another configuration, a lease another
// replica holds) still ends it.
import type { Logger } from 'pino';
import { retryThroughElections } from '../client/index.js';

/** Runs `step` until NATS answers it; `what` names the step in the logged wait ("connecting"). */
export function retryUntilNatsAnswers<T>(logger: Logger, what: string, step: () => Promise<T>): Promise<T> {
  return retryThroughElections(what, step, {
    retryForMs: Number.POSITIVE_INFINITY,
    onWait: (wait) => wait && logger.warn({ reason: wait.reason }, 'start-up: waiting for NATS'),
  });
}
