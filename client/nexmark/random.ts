// A small seeded pseudo-random generator for the Nexmark generator. Only 32-bit integer
// arithmetic (Math.imul, >>>), so the sequence is the same on every Node version and platform.

const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

/** murmur3's 32-bit finalizer: spreads every input bit over the output. */
function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The seed of one stream, derived from a run's seed and a stream number (an event number, a
 * channel number), so each event has its own stream and can be generated without the others —
 * as Beam's generator seeds a `java.util.Random` with the event id.
 */
export function streamSeed(seed: number, streamNumber: number): number {
  const low = streamNumber >>> 0;
  const high = Math.floor(streamNumber / TWO_POW_32) >>> 0;
  return mix32(mix32(mix32(seed >>> 0) ^ low) + high);
}

/** mulberry32: a 32-bit state generator, plenty for synthetic data. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** An integer in [0, 2^32). */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A double in [0, 1) with 53 random bits. */
  nextDouble(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67108864 + low) / TWO_POW_53;
  }

  /** An integer in [0, bound); bound ≥ 1 (Java's `nextInt(bound)`, up to 2^53). */
  nextInt(bound: number): number {
    return Math.floor(this.nextDouble() * bound);
  }
}
