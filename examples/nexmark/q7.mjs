// Nexmark q7, highest bid: per tumbling 10 s window, the highest price bid and every bid at that
// price: `{ start, end, price, bids: [{ auction, bidder, dateTime }] }`, the bids sorted by
// auction, then bidder, then dateTime.
//
// In Kappa: one windowed aggregate over all bids (every bid has the same key, so one task sees the
// whole window; a repartition stage brings them there), keeping the highest price so far and the
// bids at it. Flink's q7 computes the maximum per window and joins the bids back to it.
const SIZE_MS = 10_000;

function byAuctionBidderTime(a, b) {
  return a.auction - b.auction || a.bidder - b.bidder || a.dateTime - b.dateTime;
}

export default {
  name: 'nexmark-q7',
  version: 'v1',
  source: { topic: 'nexmark-bid' },
  key: () => 'all',
  time: (bid) => bid.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  window: { kind: 'tumbling', size: '10s' },
  aggregate: {
    init: () => null, // no bid yet
    add(highest, bid) {
      if (highest !== null && bid.price < highest.price) return highest;
      const top = { auction: bid.auction, bidder: bid.bidder, dateTime: bid.dateTime };
      if (highest === null || bid.price > highest.price) {
        const start = bid.dateTime - (bid.dateTime % SIZE_MS);
        return { start, price: bid.price, bids: [top] };
      }
      highest.bids.push(top);
      return highest;
    },
    result: (highest) => ({
      start: highest.start,
      end: highest.start + SIZE_MS,
      price: highest.price,
      bids: [...highest.bids].sort(byAuctionBidderTime),
    }),
  },
};
