// What publish() checks before it sends an event: the key against MAX_KEY_BYTES
// (protocol/limits.ts) and the encoded message against the server's max_payload. Checked here,
// not left to the server: a key past the limit makes a subject longer than the server's control
// line (it drops the connection, the publish is lost and retried to no end), and nats.js throws
// on a message past max_payload.
import { encodeEvent, KappaError, keyProblem, MAX_KEY_BYTES, type EventEnvelope } from '../protocol/index.js';

/**
 * An event publish() refused before sending anything: its key is empty or past MAX_KEY_BYTES
 * (`KEY_INVALID`), or its encoded message is past the server's max_payload (`EVENT_TOO_LARGE`).
 * Only that event is refused; the producer goes on.
 */
export class EventRejectedError extends KappaError {
  constructor(
    code: 'KEY_INVALID' | 'EVENT_TOO_LARGE',
    message: string,
    /** The limit the event is past, in bytes (MAX_KEY_BYTES or max_payload); 0 for an empty key. */
    readonly limitBytes: number,
  ) {
    super(code, message);
  }
}

/**
 * The event encoded as a message payload, or EventRejectedError when it may not be published to
 * `topic`: its key is invalid, or the payload plus `maxHeaderBytes` is past `maxPayload` (the
 * server's max_payload; undefined when the connection has no server info, and then unchecked).
 */
export function encodePublishable(
  event: EventEnvelope,
  topic: string,
  maxHeaderBytes: number,
  maxPayload: number | undefined,
): Uint8Array {
  const keyIssue = keyProblem(event.key);
  if (keyIssue)
    throw new EventRejectedError(
      'KEY_INVALID',
      `event key ${keyPreview(event.key)} cannot be published to topic ${topic}: ${keyIssue}`,
      MAX_KEY_BYTES,
    );
  const payload = encodeEvent(event);
  if (maxPayload !== undefined && payload.length + maxHeaderBytes > maxPayload) {
    throw new EventRejectedError(
      'EVENT_TOO_LARGE',
      `event with key ${keyPreview(event.key)} is ${payload.length + maxHeaderBytes} bytes as a message, more than the server's max_payload of ${maxPayload} bytes`,
      maxPayload,
    );
  }
  return payload;
}

/** A key as error messages show it: quoted, and cut short when long (a rejected key may be kilobytes). */
function keyPreview(key: string): string {
  return key.length <= 40 ? JSON.stringify(key) : `${JSON.stringify(key.slice(0, 40))}… (${key.length} characters)`;
}
