// Nexmark q2, selection: the bids on a fixed set of auctions (those whose id is a multiple of
// 123), as `{ auction, price }`.
//
// In Kappa: an actor over the bid topic emitting the bids that pass the filter to the `stream`
// sink, as Flink's q2 (`SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`).
export default {
  name: 'nexmark-q2',
  version: 'v1',
  source: { topic: 'nexmark-bid' },
  time: (bid) => bid.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  actor: {
    onEvent(ctx, bid) {
      if (bid.auction % 123 === 0) ctx.emit({ auction: bid.auction, price: bid.price });
    },
  },
  sink: { kind: 'stream' },
};
