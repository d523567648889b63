// Message ids (the Nats-Msg-Id header the server deduplicates on) built from any string: a key,
// a producer id, an output id. A header value cannot carry \r or \n (nats.js throws) and other
// control or non-ASCII characters are at the mercy of every client that reads the header back, so
// ids are percent-encoded: visible ASCII stays as it is, '%' and everything else becomes %XX of
// its UTF-8 bytes. '%' itself is always encoded, so two different strings never share an id.

/** Visible ASCII (0x21–0x7E) but '%': the characters a message id keeps as they are. */
const PLAIN_MESSAGE_ID = /^[\x21-\x24\x26-\x7e]*$/;

/** `value` as a header-safe message id (unchanged when it is already visible ASCII without '%'). */
export function messageIdOf(value: string): string {
  if (PLAIN_MESSAGE_ID.test(value)) return value;
  let encoded = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const plain = byte >= 0x21 && byte <= 0x7e && byte !== 0x25;
    encoded += plain ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}
