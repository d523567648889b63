// Errors of the state layer, with a stable `code` like protocol's KappaError. They live here and
// not in protocol/ because they never cross a process boundary; if one ever must, move its code
// into protocol's KappaErrorCode.

export type StateErrorCode =
  /** A key part that the order-preserving encoding cannot represent (NaN, non-string/number). */
  | 'STATE_KEY_INVALID'
  /** Bytes that are not an encoding produced by encodeKey. */
  | 'STATE_KEY_CORRUPT'
  /** get/put on an actor key that was not activated first: a bug in the engine, not in data. */
  | 'STATE_KEY_NOT_ACTIVE'
  /** putUncached/deleteUncached on an active key, whose cached rows would hide the write: a bug in the engine. */
  | 'STATE_KEY_ACTIVE'
  /** An operation on a TaskStore after close(). */
  | 'STATE_CLOSED'
  /** RocksDB refused a write batch (a full disk, an I/O error): nothing of the batch was applied. */
  | 'STATE_WRITE_FAILED';

export class StateError extends Error {
  constructor(
    readonly code: StateErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StateError';
  }
}
