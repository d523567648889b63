import { MsgHdrsImpl } from '@nats-io/transport-node';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExpectedLastSubjectSequence } from '../tables/kv-tables.js';

describe('the compare-and-set header of a KV row write', () => {
  it('encodes to the bytes MsgHdrsImpl gives for the same expected last subject sequence', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(0), fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
        (sequence) => {
          const library = new MsgHdrsImpl();
          library.set('Nats-Expected-Last-Subject-Sequence', String(sequence));
          expect(new ExpectedLastSubjectSequence(sequence).encode()).toEqual(library.encode());
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
