// Exit codes every kappa command uses, so scripts can branch on them.
export const ExitCode = {
  ok: 0,
  /** The command ran and failed (server error, task failure). */
  failure: 1,
  /** Bad flags, environment or config file: nothing was done. */
  usage: 2,
  /** The command finished but rejected some input (e.g. bad lines in `kappa produce`). */
  rejectedInput: 3,
  /**
   * NATS could not be reached, or did not answer for the whole retry window (`kappa produce
   * --retry-for`: no server reachable, or a stream or the JetStream meta group without a leader).
   */
  unreachable: 4,
} as const;
