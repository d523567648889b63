// The Nexmark generator (client/nexmark/generator.ts) against the rules of Beam's model, each
// checked by counting over the generated stream (not by calling the generator's own arithmetic):
// proportions, ids, hot ratios, references to earlier ids, value ranges and event-time bounds.
import { describe, expect, it } from 'vitest';
import {
  generateNexmark,
  nexmarkKey,
  NEXMARK_TOPICS,
  type Auction,
  type Bid,
  type NexmarkEvent,
  type NexmarkOptions,
  type Person,
} from '../client/nexmark/generator.js';
import { Watermark } from '../worker/watermark.js';

const generate = (options: NexmarkOptions): NexmarkEvent[] => [...generateNexmark(options)];

/** 50,000 events with the defaults: 1,000 persons, 3,000 auctions, 46,000 bids. */
const EVENTS = generate({ events: 50_000 });

/** Each event with the highest person and auction ids generated up to and including it. */
function withLatestIds(events: NexmarkEvent[]): { event: NexmarkEvent; maxPerson: number; maxAuction: number }[] {
  let maxPerson = -1;
  let maxAuction = -1;
  return events.map((event) => {
    if (event.type === 'person') maxPerson = Math.max(maxPerson, event.id);
    if (event.type === 'auction') maxAuction = Math.max(maxAuction, event.id);
    return { event, maxPerson, maxAuction };
  });
}

describe('nexmark generator', () => {
  it('gives the same events for the same seed, other events for another seed, and a prefix for fewer events', () => {
    const seven = generate({ events: 5_000, seed: 7 });
    expect(generate({ events: 5_000, seed: 7 })).toEqual(seven);
    expect(generate({ events: 1_234, seed: 7 })).toEqual(seven.slice(0, 1_234));
    const eight = generate({ events: 5_000, seed: 8 });
    const differing = eight.filter((event, index) => JSON.stringify(event) !== JSON.stringify(seven[index])).length;
    expect(differing).toBeGreaterThan(4_900);
    // The default seed is 1.
    expect(generate({ events: 500, seed: 1 })).toEqual(EVENTS.slice(0, 500));
  });

  it('makes event 0 of every 50 a person, events 1-3 auctions and events 4-49 bids', () => {
    expect(EVENTS).toHaveLength(50_000);
    for (let block = 0; block < 50_000; block += 50) {
      const types = EVENTS.slice(block, block + 50).map((event) => event.type);
      expect(types).toEqual(['person', 'auction', 'auction', 'auction', ...new Array(46).fill('bid')]);
    }
  });

  it('numbers persons and auctions from 1000 upwards in the order they are generated', () => {
    const persons = EVENTS.filter((event): event is Person => event.type === 'person');
    const auctions = EVENTS.filter((event): event is Auction => event.type === 'auction');
    expect(persons.map((person) => person.id)).toEqual(persons.map((_, index) => 1000 + index));
    expect(auctions.map((auction) => auction.id)).toEqual(auctions.map((_, index) => 1000 + index));
  });

  it('refers only to persons and auctions already generated, within the recent ones', () => {
    for (const { event, maxPerson, maxAuction } of withLatestIds(EVENTS)) {
      if (event.type === 'auction') {
        expect(event.seller).toBeGreaterThanOrEqual(Math.max(1000, maxPerson - 999));
        expect(event.seller).toBeLessThanOrEqual(maxPerson);
      } else if (event.type === 'bid') {
        expect(event.auction).toBeGreaterThanOrEqual(Math.max(1000, maxAuction - 100));
        expect(event.auction).toBeLessThanOrEqual(maxAuction);
        expect(event.bidder).toBeGreaterThanOrEqual(Math.max(1000, maxPerson - 999));
        expect(event.bidder).toBeLessThanOrEqual(maxPerson);
      }
    }
  });

  it("draws hot sellers (3/4), hot bidders (3/4) and hot auctions (1/2) as Beam's default ratios 4, 4 and 2", () => {
    // Beam: the hot seller is the first person of the latest batch of 100 persons, the hot bidder
    // the second, the hot auction the first of the latest batch of 100 auctions. A non-hot draw
    // hits them too now and then (at most 1 in 100 here), hence the tolerance.
    const batchStart = (id: number) => 1000 + Math.floor((id - 1000) / 100) * 100;
    let sellers = 0;
    let hotSellers = 0;
    let bids = 0;
    let hotBidders = 0;
    let hotAuctions = 0;
    for (const { event, maxPerson, maxAuction } of withLatestIds(EVENTS)) {
      if (event.type === 'auction') {
        sellers++;
        if (event.seller === batchStart(maxPerson)) hotSellers++;
      } else if (event.type === 'bid') {
        bids++;
        if (event.bidder === Math.min(batchStart(maxPerson) + 1, maxPerson)) hotBidders++;
        if (event.auction === batchStart(maxAuction)) hotAuctions++;
      }
    }
    expect(hotSellers / sellers).toBeGreaterThan(0.73);
    expect(hotSellers / sellers).toBeLessThan(0.78);
    expect(hotBidders / bids).toBeGreaterThan(0.74);
    expect(hotBidders / bids).toBeLessThan(0.77);
    expect(hotAuctions / bids).toBeGreaterThan(0.49);
    expect(hotAuctions / bids).toBeLessThan(0.52);
  });

  it('draws states, cities, categories, prices, channels and urls from their ranges', () => {
    const states = new Set<string>();
    const categories = new Set<number>();
    for (const event of EVENTS) {
      expect(event.extra).toMatch(/^[a-z]{0,130}$/);
      if (event.type === 'person') {
        states.add(event.state);
        expect(['AZ', 'CA', 'ID', 'OR', 'WA', 'WY']).toContain(event.state);
        expect(event.city).toMatch(
          /^(Phoenix|Los Angeles|San Francisco|Boise|Portland|Bend|Redmond|Seattle|Kent|Cheyenne)$/,
        );
        expect(event.name).toMatch(/^[A-Z][a-z]+ [A-Z][a-z]+$/);
        expect(event.emailAddress).toMatch(/^[a-z ]*@[a-z ]*\.com$/);
        expect(event.creditCard).toMatch(/^\d{4} \d{4} \d{4} \d{4}$/);
      } else if (event.type === 'auction') {
        categories.add(event.category);
        expect(event.category).toBeGreaterThanOrEqual(10);
        expect(event.category).toBeLessThanOrEqual(14);
        expect(Number.isInteger(event.initialBid) && event.initialBid >= 100).toBe(true);
        expect(event.initialBid).toBeLessThanOrEqual(100_000_000);
        expect(event.reserve).toBeGreaterThan(event.initialBid);
        expect(event.itemName.length).toBeGreaterThan(0);
      } else {
        expect(Number.isInteger(event.price) && event.price >= 100 && event.price <= 100_000_000).toBe(true);
        expect(event.channel).toMatch(/^(Google|Facebook|Baidu|Apple|channel-\d{1,4})$/);
        expect(event.url).toMatch(/^https:\/\/www\.nexmark\.com\/[a-z_]+\/[a-z_]+\/[a-z_]+\/item\.htm\?query=1/);
      }
    }
    expect([...states].sort()).toEqual(['AZ', 'CA', 'ID', 'OR', 'WA', 'WY']);
    expect([...categories].sort()).toEqual([10, 11, 12, 13, 14]);
  });

  it('spreads prices log-uniformly: about a sixth of bids in each decade from $1 to $1,000,000', () => {
    const decades = new Array<number>(6).fill(0);
    const bids = EVENTS.filter((event): event is Bid => event.type === 'bid');
    for (const bid of bids) decades[Math.min(5, Math.floor(Math.log10(bid.price / 100)))]!++;
    for (const count of decades) expect(Math.abs(count / bids.length - 1 / 6)).toBeLessThan(0.02);
  });

  it('lets every auction expire after it opened', () => {
    const auctions = EVENTS.filter((event): event is Auction => event.type === 'auction');
    for (const auction of auctions) expect(auction.expires).toBeGreaterThan(auction.dateTime);
    // Beam: on average until ~100 more auctions have opened (1,667 events, 1.7 s at 1,000/s).
    const meanMs = auctions.reduce((sum, auction) => sum + auction.expires - auction.dateTime, 0) / auctions.length;
    expect(meanMs).toBeGreaterThan(1_300);
    expect(meanMs).toBeLessThan(2_200);
  });

  it.each([
    { rate: 1000, outOfOrdernessMs: 500 },
    { rate: 3333, outOfOrdernessMs: 250 },
    { rate: 70, outOfOrdernessMs: 2_000 },
  ])('puts event n within $outOfOrdernessMs ms before its nominal time at $rate events/s', (timing) => {
    const firstEventTimeMs = Date.UTC(2025, 5, 1);
    const events = generate({ events: 20_000, seed: 3, firstEventTimeMs, ...timing });
    let maxSoFar = -Infinity;
    let earliest = 0;
    events.forEach((event, n) => {
      const nominal = firstEventTimeMs + Math.floor((n * 1000) / timing.rate);
      expect(event.dateTime).toBeLessThanOrEqual(nominal);
      expect(event.dateTime).toBeGreaterThan(nominal - timing.outOfOrdernessMs);
      // No event as far as the bound behind the latest so far.
      expect(event.dateTime).toBeGreaterThan(maxSoFar - timing.outOfOrdernessMs);
      maxSoFar = Math.max(maxSoFar, event.dateTime);
      earliest = Math.min(earliest, event.dateTime - nominal);
    });
    // The jitter uses most of its range.
    expect(earliest).toBeLessThan(-0.9 * timing.outOfOrdernessMs);
  });

  it('puts every event at its nominal time when the out-of-orderness is 0', () => {
    const events = generate({ events: 1_000, outOfOrdernessMs: 0, rate: 400, firstEventTimeMs: 0 });
    expect(events.map((event) => event.dateTime)).toEqual(events.map((_, n) => Math.floor((n * 1000) / 400)));
  });

  it.each([
    { rate: 1000, outOfOrdernessMs: 500 },
    // Several events a millisecond: an event jittered by the whole bound would meet the watermark.
    { rate: 4000, outOfOrdernessMs: 3 },
  ])("leaves no event behind the engine's watermark bounded by $outOfOrdernessMs ms at $rate events/s", (timing) => {
    // worker/watermark.ts: the watermark is max event time − bound; an event at or behind it
    // can fall in a purged window (purged at end − 1 ≤ watermark).
    const watermark = new Watermark(timing.outOfOrdernessMs);
    for (const event of generate({ events: 50_000, ...timing })) {
      if (watermark.current !== -Infinity) expect(event.dateTime).toBeGreaterThan(watermark.current);
      watermark.observe(event.dateTime);
    }
  });

  it('keys persons and auctions by id and bids by auction, in their topics', () => {
    const [person, auction, , , bid] = EVENTS;
    expect(nexmarkKey(person!)).toBe(String((person as Person).id));
    expect(nexmarkKey(auction!)).toBe(String((auction as Auction).id));
    expect(nexmarkKey(bid!)).toBe(String((bid as Bid).auction));
    expect(NEXMARK_TOPICS).toEqual({ person: 'nexmark-person', auction: 'nexmark-auction', bid: 'nexmark-bid' });
  });

  it('refuses options out of range with a ConfigError', () => {
    expect(() => generate({ events: -1 })).toThrow(/events -1/);
    expect(() => generate({ events: 10, rate: 0 })).toThrow(/rate 0/);
    expect(() => generate({ events: 10, outOfOrdernessMs: -5 })).toThrow(/outOfOrdernessMs -5/);
  });
});
