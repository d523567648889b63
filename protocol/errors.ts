// Typed errors with a stable `code`, so callers branch on the code and never on message text.

/**
 * Every stable code, the one error-code type of the repo (as nats.js has `JetStreamApiCodes`).
 * They cross the wire in `reply.error` (messages.ts), so a code is added, never renamed.
 */
export const KAPPA_ERROR_CODES = [
  'PROTOCOL_GARBAGE',
  'PROTOCOL_VERSION',
  'PROTOCOL_SCHEMA',
  'CONFIG_INVALID',
  'FENCED',
  'CHECKPOINT_FAILED',
  'CONNECTION_FAILED',
  'TOPIC_NOT_FOUND',
  'TOPIC_EXISTS',
  'PUBLISH_FAILED',
  'KEY_INVALID',
  'EVENT_TOO_LARGE',
  'JOB_INVALID',
  'NO_LEADER',
  'ADMIN_REJECTED',
  'TASK_HELD',
  'BAD_REQUEST',
  /** An admin request names a job version the leader does not know. */
  'VERSION_NOT_FOUND',
  /** `kappa start` of a version still releasing its tasks after `kappa stop`. */
  'VERSION_STOPPING',
  /** An admin request failed on the leader for a reason that is not one of ours (a bug, a NATS error). */
  'INTERNAL',
  /** An archive segment or catalog entry that is not what it should be (checksum, gap, overlap). */
  'ARCHIVE_INVALID',
] as const;

export type KappaErrorCode = (typeof KAPPA_ERROR_CODES)[number];

export class KappaError extends Error {
  constructor(
    readonly code: KappaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bytes on the wire that are not a message we understand. */
export class ProtocolError extends KappaError {}

/** Configuration (flags, env, file, job definition) that fails validation. */
export class ConfigError extends KappaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
  }
}

/** An action taken under an assignment epoch that is no longer current. */
export class FencedError extends KappaError {
  constructor(
    message: string,
    /** The epoch that owns the task now, when known: a reassignment must go above it. */
    readonly ownerEpoch?: number,
  ) {
    super('FENCED', message);
  }
}

/** A task (or a standalone job version) already run by another live owner: this one refuses it. */
export class TaskHeldError extends KappaError {
  constructor(message: string) {
    super('TASK_HELD', message);
  }
}

export class CheckpointError extends KappaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CHECKPOINT_FAILED', message, options);
  }
}

/** The NATS server named by a URL could not be reached. */
export class ConnectionError extends KappaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONNECTION_FAILED', message, options);
  }
}

/** No coordinator leader answered an admin request in time. */
export class NoLeaderError extends KappaError {
  constructor(message: string) {
    super('NO_LEADER', message);
  }
}

/** The leader answered an admin request with an error; `reason` is its stable code (e.g. VERSION_NOT_FOUND). */
export class AdminRejectedError extends KappaError {
  constructor(
    readonly reason: KappaErrorCode,
    message: string,
  ) {
    super('ADMIN_REJECTED', message);
  }
}

/** An HTTP request (path, query) that is not one we answer: a 400 naming what was wrong. */
export class BadRequestError extends KappaError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}
