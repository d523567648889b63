// fast-check arbitraries for keyed event streams in publish order: mostly advancing event time,
// bounded random disorder, and now and then a very late event, so every lateness path is hit.
import fc from 'fast-check';
import type { ReferenceWindowSpec } from './batch-windows.js';

export interface StreamEvent {
  /** Unique, = position in publish order. */
  id: number;
  user: string;
  /** Event time, ms. */
  ts: number;
  n: number;
}

export const USERS = ['ana', 'bo', 'cy', 'dee', 'eli', 'fay'] as const;

export interface EventStreamOptions {
  minLength?: number;
  maxLength?: number;
  users?: readonly string[];
  /** Largest step of the producer's clock between two events. */
  maxStepMs?: number;
  /** Ordinary disorder: an event is up to this far behind the producer's clock. */
  maxDisorderMs?: number;
  /** A very late event is this far behind the clock, at most. */
  maxVeryLateMs?: number;
  /** Chance, out of 100, that an event is very late. */
  veryLatePercent?: number;
}

/** A random stream of events in publish order. Start times range over negatives too. */
export function eventStream(options: EventStreamOptions = {}): fc.Arbitrary<StreamEvent[]> {
  const {
    minLength = 0,
    maxLength = 60,
    users = USERS,
    maxStepMs = 12,
    maxDisorderMs = 15,
    maxVeryLateMs = 200,
    veryLatePercent = 8,
  } = options;
  const step = fc.record({
    user: fc.constantFrom(...users),
    stepMs: fc.nat({ max: maxStepMs }),
    disorderMs: fc.nat({ max: maxDisorderMs }),
    veryLate: fc.integer({ min: 0, max: 99 }).map((roll) => roll < veryLatePercent),
    veryLateMs: fc.integer({ min: maxDisorderMs + 1, max: Math.max(maxDisorderMs + 1, maxVeryLateMs) }),
    n: fc.integer({ min: -50, max: 50 }),
  });
  return fc
    .tuple(fc.integer({ min: -500, max: 1_000 }), fc.array(step, { minLength, maxLength }))
    .map(([startMs, steps]) => {
      let clockMs = startMs;
      return steps.map((s, id) => {
        clockMs += s.stepMs;
        const ts = clockMs - (s.veryLate ? s.veryLateMs : s.disorderMs);
        return { id, user: s.user, ts, n: s.n };
      });
    });
}

/** The window specs `windowSpec()` generates: a ReferenceWindowSpec with its kind's fields present. */
export type GeneratedWindowSpec = ReferenceWindowSpec &
  (
    | { kind: 'tumbling'; sizeMs: number; offsetMs: number }
    | { kind: 'hopping'; sizeMs: number; slideMs: number; offsetMs: number }
    | { kind: 'session'; gapMs: number }
  );

/** A random window spec of any kind, with small sizes so windows fire and purge often. */
export function windowSpec(): fc.Arbitrary<GeneratedWindowSpec> {
  const tumbling = fc.record({
    kind: fc.constant('tumbling' as const),
    sizeMs: fc.integer({ min: 1, max: 40 }),
    offsetMs: fc.integer({ min: -50, max: 50 }),
  });
  const hopping = fc
    .record({
      kind: fc.constant('hopping' as const),
      slideMs: fc.integer({ min: 1, max: 20 }),
      multiple: fc.integer({ min: 1, max: 4 }),
      extraMs: fc.integer({ min: 0, max: 5 }),
      offsetMs: fc.integer({ min: -50, max: 50 }),
    })
    .map(({ kind, slideMs, multiple, extraMs, offsetMs }) => ({
      kind,
      slideMs,
      sizeMs: slideMs * multiple + extraMs,
      offsetMs,
    }));
  const session = fc.record({ kind: fc.constant('session' as const), gapMs: fc.integer({ min: 1, max: 30 }) });
  return fc.oneof<fc.Arbitrary<GeneratedWindowSpec>[]>(tumbling, hopping, session);
}

/** maxOutOfOrdernessMs and allowedLatenessMs, small enough to make late events common. */
export function lateness(): fc.Arbitrary<{ maxOutOfOrdernessMs: number; allowedLatenessMs: number }> {
  return fc.record({
    maxOutOfOrdernessMs: fc.integer({ min: 0, max: 20 }),
    allowedLatenessMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 30 })),
  });
}

/** Mostly small out-of-orderness with some allowed lateness, so late updates of fired windows (re-emissions) are common. */
export function reemittingLateness(): fc.Arbitrary<{ maxOutOfOrdernessMs: number; allowedLatenessMs: number }> {
  return fc.oneof(
    { arbitrary: lateness(), weight: 1 },
    {
      arbitrary: fc.record({
        maxOutOfOrdernessMs: fc.integer({ min: 0, max: 4 }),
        allowedLatenessMs: fc.integer({ min: 10, max: 40 }),
      }),
      weight: 2,
    },
  );
}
