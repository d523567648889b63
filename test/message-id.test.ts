// Message ids built from any string (protocol/message-id.ts): always a valid header value, and
// never the same id for two different strings.
import fc from 'fast-check';
import { headers } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { messageIdOf } from '../protocol/index.js';

describe('messageIdOf', () => {
  it('keeps visible ASCII without % as it is', () => {
    expect(messageIdOf('orders-loader:17')).toBe('orders-loader:17');
  });

  it('percent-encodes newlines, spaces, % and non-ASCII as UTF-8 bytes', () => {
    expect(messageIdOf('a\nb c%Ω')).toBe('a%0Ab%20c%25%CE%A9');
  });

  it('gives a header-safe id that decodes back to the string, for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (value) => {
        const id = messageIdOf(value);
        expect(id).toMatch(/^[\x21-\x7e]*$/);
        expect(() => headers().set('Nats-Msg-Id', id)).not.toThrow();
        // Injective: the id determines the string.
        expect(decodeURIComponent(id)).toBe(value);
      }),
    );
  });
});
