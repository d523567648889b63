// Nexmark q11, user sessions: the bids of each bidder in session windows with a 10 s gap (a
// session ends when the bidder makes no bid for 10 s): `{ bidder, start, end, count }`, end = the
// last bid's time + 10 s.
//
// In Kappa: the engine's session windows keyed by bidder (the topic is produced by auction, so a
// repartition stage brings a bidder's bids together), with a count that merges as sessions merge.
// The aggregate's `result` does not see its window, so the accumulator carries the first and last
// bid time, which are the session's bounds.
const GAP_MS = 10_000;

/** Two sessions of one bidder as one; an empty one (count 0, from `init`) changes nothing. */
function merge(a, b) {
  if (a.count === 0) return b;
  if (b.count === 0) return a;
  return {
    bidder: a.bidder,
    first: Math.min(a.first, b.first),
    last: Math.max(a.last, b.last),
    count: a.count + b.count,
  };
}

export default {
  name: 'nexmark-q11',
  version: 'v1',
  source: { topic: 'nexmark-bid' },
  key: 'bidder',
  time: (bid) => bid.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  window: { kind: 'session', gap: '10s' },
  aggregate: {
    init: () => ({ bidder: 0, first: 0, last: 0, count: 0 }),
    add: (session, bid) => merge(session, { bidder: bid.bidder, first: bid.dateTime, last: bid.dateTime, count: 1 }),
    merge,
    result: (session) => ({
      bidder: session.bidder,
      start: session.first,
      end: session.last + GAP_MS,
      count: session.count,
    }),
  },
};
