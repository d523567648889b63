// Reading a PubAck, the server's JSON answer to a JetStream publish: `{"stream": …, "seq": …}`,
// with `"duplicate": true` when the message id was already in the duplicate window, or
// `{"error": {"description": …, "err_code": …}}` when the server refused the message. The
// producer and the batch publisher read it here, one ack per message.

/** The server writes `"duplicate": true` (2.9, with a space) or `"duplicate":true`. */
const DUPLICATE_ACK = /"duplicate":\s*true/;
const ACK_SEQUENCE = /"seq":\s*(\d+)/;

/** What the server answered to one message: stored (at `sequence`), or refused with its error code. */
export type PubAck =
  { stored: true; sequence: number; duplicate: boolean } | { stored: false; code: number; description: string };

/** What a PubAck body says. A body that is not JSON is a refusal described by the body itself. */
export function readPubAck(body: string): PubAck {
  if (body.includes('"error"')) {
    try {
      const parsed = JSON.parse(body) as { error?: { description?: string; err_code?: number } };
      return {
        stored: false,
        code: parsed.error?.err_code ?? 0,
        description: parsed.error?.description ?? 'unknown error',
      };
    } catch {
      return { stored: false, code: 0, description: body };
    }
  }
  return {
    stored: true,
    sequence: Number(ACK_SEQUENCE.exec(body)?.[1] ?? 0),
    duplicate: DUPLICATE_ACK.test(body),
  };
}
