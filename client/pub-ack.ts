// Reading a PubAck, the server's JSON answer to a JetStream publish: `{"stream": …, "seq": …}`,
// with `"duplicate": true` when the message id was already in the duplicate window, or
// `{"error": {"description": …, "err_code": …}}` when the server refused the message.

/** The server writes `"duplicate": true` (2.9, with a space) or `"duplicate":true`. */
const DUPLICATE_ACK = /"duplicate":\s*true/;

export type PubAck = { refusal: string } | { refusal: undefined; duplicate: boolean };

/** What a PubAck body says: the server's reason for refusing the message, or whether it was a duplicate. */
export function readPubAck(body: string): PubAck {
  if (body.includes('"error"')) {
    let description = body;
    try {
      const parsed = JSON.parse(body) as { error?: { description?: string; err_code?: number } };
      description = `${parsed.error?.description ?? 'unknown error'} (err_code ${parsed.error?.err_code ?? '?'})`;
    } catch {
      // keep the raw body as the description
    }
    return { refusal: description };
  }
  return { refusal: undefined, duplicate: DUPLICATE_ACK.test(body) };
}
