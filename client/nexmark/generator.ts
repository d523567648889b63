// The Nexmark event generator (persons, auctions, bids), deterministic for a seed. It follows the
// model of Beam's / Flink's Nexmark generator (GeneratorConfig, PersonGenerator,
// AuctionGenerator, BidGenerator, PriceGenerator, StringsGenerator): the event number decides the
// kind of event and the ids; each event draws its fields from its own seeded stream. Pure: no I/O.

import { ConfigError } from '../../protocol/index.js';
import { SeededRandom, streamSeed } from './random.js';

export interface NexmarkOptions {
  /** How many events to generate. */
  events: number;
  /** Same seed, same events (default 1). */
  seed?: number;
  /** Events per second of event time (default 1000): event n is nominally at n * 1000 / rate ms. */
  rate?: number;
  /** Each event is up to this much earlier than its nominal time (default 500). */
  outOfOrdernessMs?: number;
  /** The nominal time of event 0 (default 2026-01-01T00:00:00Z). */
  firstEventTimeMs?: number;
}

export interface Person {
  type: 'person';
  id: number;
  name: string;
  emailAddress: string;
  creditCard: string;
  city: string;
  state: string;
  dateTime: number;
  extra: string;
}

export interface Auction {
  type: 'auction';
  id: number;
  itemName: string;
  description: string;
  initialBid: number;
  reserve: number;
  dateTime: number;
  expires: number;
  seller: number;
  category: number;
  extra: string;
}

export interface Bid {
  type: 'bid';
  auction: number;
  bidder: number;
  price: number;
  channel: string;
  url: string;
  dateTime: number;
  extra: string;
}

export type NexmarkEvent = Person | Auction | Bid;

export const NEXMARK_TOPICS = { person: 'nexmark-person', auction: 'nexmark-auction', bid: 'nexmark-bid' } as const;

/** The key each event is produced with: person id, auction id, bid's auction — as a string. */
export function nexmarkKey(event: NexmarkEvent): string {
  return String(event.type === 'bid' ? event.auction : event.id);
}

// Beam's NexmarkConfiguration defaults and GeneratorConfig constants.
const PERSON_PROPORTION = 1;
const AUCTION_PROPORTION = 3;
const TOTAL_PROPORTION = 50; // bids: the other 46
const FIRST_PERSON_ID = 1000;
const FIRST_AUCTION_ID = 1000;
const FIRST_CATEGORY_ID = 10;
const NUM_CATEGORIES = 5;
const NUM_ACTIVE_PEOPLE = 1000;
const NUM_IN_FLIGHT_AUCTIONS = 100;
// P(hot) = 1 - 1/ratio: 1/2 of bids on a hot auction, 3/4 of auctions by a hot seller, 3/4 of
// bids by a hot bidder.
const HOT_AUCTION_RATIO = 2;
const HOT_SELLERS_RATIO = 4;
const HOT_BIDDERS_RATIO = 4;
// The hot auction / seller / bidder is the first (bidder: second) of the latest batch of 100.
const HOT_BATCH = 100;
const HOT_CHANNELS_RATIO = 2;
const CHANNELS = 10_000;
// Average event sizes the `extra` field pads to; Beam's are 200/500/100 bytes, ours shorter.
const AVG_PERSON_BYTES = 100;
const AVG_AUCTION_BYTES = 160;
const AVG_BID_BYTES = 48;

const US_STATES = ['AZ', 'CA', 'ID', 'OR', 'WA', 'WY'];
const US_CITIES = [
  'Phoenix',
  'Los Angeles',
  'San Francisco',
  'Boise',
  'Portland',
  'Bend',
  'Redmond',
  'Seattle',
  'Kent',
  'Cheyenne',
];
const FIRST_NAMES = ['Peter', 'Paul', 'Luke', 'John', 'Saul', 'Vicky', 'Kate', 'Julie', 'Sarah', 'Deiter', 'Walter'];
const LAST_NAMES = ['Shultz', 'Abrams', 'Spencer', 'White', 'Bartels', 'Walton', 'Smith', 'Jones', 'Noris'];
const HOT_CHANNELS = ['Google', 'Facebook', 'Baidu', 'Apple'];

type EventKind = NexmarkEvent['type'];

function kindOf(eventNumber: number): EventKind {
  const offset = eventNumber % TOTAL_PROPORTION;
  if (offset < PERSON_PROPORTION) return 'person';
  if (offset < PERSON_PROPORTION + AUCTION_PROPORTION) return 'auction';
  return 'bid';
}

/** The 0-based id of the person generated at or most recently before this event number. */
export function lastPersonIndex(eventNumber: number): number {
  const epoch = Math.floor(eventNumber / TOTAL_PROPORTION);
  const offset = Math.min(eventNumber % TOTAL_PROPORTION, PERSON_PROPORTION - 1);
  return epoch * PERSON_PROPORTION + offset;
}

/**
 * The 0-based id of the auction generated at or most recently before this event number (−1
 * before the first auction).
 */
export function lastAuctionIndex(eventNumber: number): number {
  let epoch = Math.floor(eventNumber / TOTAL_PROPORTION);
  let offset = eventNumber % TOTAL_PROPORTION;
  if (offset < PERSON_PROPORTION) {
    epoch -= 1; // a person: the last auction of the previous epoch
    offset = AUCTION_PROPORTION - 1;
  } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
    offset = AUCTION_PROPORTION - 1; // a bid: the last auction of this epoch
  } else {
    offset -= PERSON_PROPORTION;
  }
  return epoch * AUCTION_PROPORTION + offset;
}

/**
 * One of the active people: the latest `NUM_ACTIVE_PEOPLE`. Beam also draws from 10 ids ahead
 * (its "lead"); we do not, so every reference is to a person already generated.
 */
function recentPersonIndex(eventNumber: number, random: SeededRandom): number {
  const people = lastPersonIndex(eventNumber) + 1;
  const active = Math.min(people, NUM_ACTIVE_PEOPLE);
  return people - active + random.nextInt(active);
}

/** One of the auctions likely still in flight: the latest `NUM_IN_FLIGHT_AUCTIONS` + 1 (no lead, as above). */
function recentAuctionIndex(eventNumber: number, random: SeededRandom): number {
  const last = lastAuctionIndex(eventNumber);
  const first = Math.max(last - NUM_IN_FLIGHT_AUCTIONS, 0);
  return first + random.nextInt(last - first + 1);
}

/** Beam's PriceGenerator: log-uniform from 1.00 to 1,000,000.00, in cents. */
function nextPrice(random: SeededRandom): number {
  return Math.round(Math.pow(10, random.nextDouble() * 6) * 100);
}

/** Beam's StringsGenerator.nextString: 3 to maxLength − 1 letters, about 1 in 13 `special`, trimmed. */
function nextString(random: SeededRandom, maxLength: number, special = ' '): string {
  let length = 3 + random.nextInt(maxLength - 3);
  let text = '';
  while (length-- > 0) text += random.nextInt(13) === 0 ? special : String.fromCharCode(97 + random.nextInt(26));
  return text.trim();
}

function nextExactString(random: SeededRandom, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCharCode(97 + random.nextInt(26));
  return text;
}

/** Beam's nextExtra: pads an event towards an average size, ±20%. */
function nextExtra(random: SeededRandom, currentSize: number, averageSize: number): string {
  if (currentSize > averageSize) return '';
  const wanted = averageSize - currentSize;
  const delta = Math.round(wanted * 0.2);
  return nextExactString(random, wanted - delta + (delta === 0 ? 0 : random.nextInt(2 * delta)));
}

function pick<T>(random: SeededRandom, values: readonly T[]): T {
  return values[random.nextInt(values.length)]!;
}

function nextCreditCard(random: SeededRandom): string {
  const groups: string[] = [];
  for (let i = 0; i < 4; i++) groups.push(String(random.nextInt(10000)).padStart(4, '0'));
  return groups.join(' ');
}

function baseUrl(random: SeededRandom): string {
  const part = () => nextString(random, 5, '_');
  return `https://www.nexmark.com/${part()}/${part()}/${part()}/item.htm?query=1`;
}

// Channel URLs depend on the channel only (not on the run's seed), as Beam's cache of them.
const URL_STREAM = 0x75726c; // any constant apart from the run seeds' streams
const HOT_URLS = HOT_CHANNELS.map((_, i) => baseUrl(new SeededRandom(streamSeed(URL_STREAM, CHANNELS + i))));
const channelUrls = new Map<number, string>();

/** Java's Integer.reverse (the bits of a 32-bit int reversed), as Beam's channel_id. */
function reverseBits32(value: number): number {
  let reversed = 0;
  for (let bit = 0; bit < 32; bit++) reversed = (reversed << 1) | ((value >>> bit) & 1);
  return reversed | 0;
}

function channelUrl(channel: number): string {
  let url = channelUrls.get(channel);
  if (url === undefined) {
    const base = baseUrl(new SeededRandom(streamSeed(URL_STREAM, channel)));
    url = `${base}&channel_id=${Math.abs(reverseBits32(channel))}`;
    channelUrls.set(channel, url);
  }
  return url;
}

interface Timing {
  nominalTimeMs(eventNumber: number): number;
}

function nextPerson(eventNumber: number, random: SeededRandom, dateTime: number): Person {
  const name = `${pick(random, FIRST_NAMES)} ${pick(random, LAST_NAMES)}`;
  const emailAddress = `${nextString(random, 7)}@${nextString(random, 5)}.com`;
  const creditCard = nextCreditCard(random);
  const city = pick(random, US_CITIES);
  const state = pick(random, US_STATES);
  const size = 8 + name.length + emailAddress.length + creditCard.length + city.length + state.length;
  const extra = nextExtra(random, size, AVG_PERSON_BYTES);
  const id = FIRST_PERSON_ID + lastPersonIndex(eventNumber);
  return { type: 'person', id, name, emailAddress, creditCard, city, state, dateTime, extra };
}

function nextAuction(eventNumber: number, random: SeededRandom, dateTime: number, timing: Timing): Auction {
  const lastPerson = lastPersonIndex(eventNumber);
  const seller =
    random.nextInt(HOT_SELLERS_RATIO) > 0
      ? Math.floor(lastPerson / HOT_BATCH) * HOT_BATCH
      : recentPersonIndex(eventNumber, random);
  const category = FIRST_CATEGORY_ID + random.nextInt(NUM_CATEGORIES);
  const initialBid = nextPrice(random);
  // Beam: an auction lasts on average until NUM_IN_FLIGHT_AUCTIONS more auctions have been opened.
  const eventsPerInFlightAuctions = Math.floor((NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION) / AUCTION_PROPORTION);
  const horizonMs = timing.nominalTimeMs(eventNumber + eventsPerInFlightAuctions) - dateTime;
  const expires = dateTime + 1 + random.nextInt(Math.max(horizonMs * 2, 1));
  const itemName = nextString(random, 20);
  const description = nextString(random, 100);
  const reserve = initialBid + nextPrice(random);
  const extra = nextExtra(random, 8 + itemName.length + description.length + 40, AVG_AUCTION_BYTES);
  return {
    type: 'auction',
    id: FIRST_AUCTION_ID + lastAuctionIndex(eventNumber),
    itemName,
    description,
    initialBid,
    reserve,
    dateTime,
    expires,
    seller: FIRST_PERSON_ID + seller,
    category,
    extra,
  };
}

function nextBid(eventNumber: number, random: SeededRandom, dateTime: number): Bid {
  const lastAuction = lastAuctionIndex(eventNumber);
  const auction =
    random.nextInt(HOT_AUCTION_RATIO) > 0
      ? Math.floor(lastAuction / HOT_BATCH) * HOT_BATCH
      : recentAuctionIndex(eventNumber, random);
  const lastPerson = lastPersonIndex(eventNumber);
  // Beam: the second person of the batch, so hot bidders and hot sellers differ; at most the
  // latest person here, so the bidder exists (Beam may name one 50 events ahead).
  const bidder =
    random.nextInt(HOT_BIDDERS_RATIO) > 0
      ? Math.min(Math.floor(lastPerson / HOT_BATCH) * HOT_BATCH + 1, lastPerson)
      : recentPersonIndex(eventNumber, random);
  const price = nextPrice(random);
  let channel: string;
  let url: string;
  if (random.nextInt(HOT_CHANNELS_RATIO) > 0) {
    const hot = random.nextInt(HOT_CHANNELS.length);
    channel = HOT_CHANNELS[hot]!;
    url = HOT_URLS[hot]!;
  } else {
    const number = random.nextInt(CHANNELS);
    channel = `channel-${number}`;
    url = channelUrl(number);
  }
  const extra = nextExtra(random, 32, AVG_BID_BYTES);
  return {
    type: 'bid',
    auction: FIRST_AUCTION_ID + auction,
    bidder: FIRST_PERSON_ID + bidder,
    price,
    channel,
    url,
    dateTime,
    extra,
  };
}

function validated(options: NexmarkOptions): Required<NexmarkOptions> {
  const resolved = {
    events: options.events,
    seed: options.seed ?? 1,
    rate: options.rate ?? 1000,
    outOfOrdernessMs: options.outOfOrdernessMs ?? 500,
    firstEventTimeMs: options.firstEventTimeMs ?? Date.UTC(2026, 0, 1),
  };
  const problems: string[] = [];
  if (!Number.isSafeInteger(resolved.events) || resolved.events < 0) problems.push(`events ${resolved.events}`);
  if (!Number.isSafeInteger(resolved.seed)) problems.push(`seed ${resolved.seed}`);
  if (!Number.isFinite(resolved.rate) || resolved.rate <= 0) problems.push(`rate ${resolved.rate}`);
  if (!Number.isSafeInteger(resolved.outOfOrdernessMs) || resolved.outOfOrdernessMs < 0)
    problems.push(`outOfOrdernessMs ${resolved.outOfOrdernessMs}`);
  if (!Number.isSafeInteger(resolved.firstEventTimeMs)) problems.push(`firstEventTimeMs ${resolved.firstEventTimeMs}`);
  if (problems.length > 0) {
    throw new ConfigError(
      `nexmark: expected events ≥ 0, an integer seed, rate > 0, outOfOrdernessMs ≥ 0 and an integer firstEventTimeMs (integers where named); found ${problems.join(', ')}`,
    );
  }
  return resolved;
}

/**
 * The events 0 … events − 1. In every 50: event 0 a person, 1–3 auctions, 4–49 bids. Event n's
 * time is its nominal time `firstEventTimeMs + floor(n * 1000 / rate)` minus a jitter in
 * [0, outOfOrdernessMs) — strictly less, so with a watermark of (max event time − bound) and
 * bound ≥ outOfOrdernessMs no event is ever behind the watermark, even at a window's last ms.
 */
export function* generateNexmark(options: NexmarkOptions): Generator<NexmarkEvent> {
  const { events, seed, rate, outOfOrdernessMs, firstEventTimeMs } = validated(options);
  const timing: Timing = { nominalTimeMs: (n) => firstEventTimeMs + Math.floor((n * 1000) / rate) };
  for (let eventNumber = 0; eventNumber < events; eventNumber++) {
    const random = new SeededRandom(streamSeed(seed, eventNumber));
    const dateTime = timing.nominalTimeMs(eventNumber) - random.nextInt(outOfOrdernessMs);
    const kind = kindOf(eventNumber);
    if (kind === 'person') yield nextPerson(eventNumber, random, dateTime);
    else if (kind === 'auction') yield nextAuction(eventNumber, random, dateTime, timing);
    else yield nextBid(eventNumber, random, dateTime);
  }
}
