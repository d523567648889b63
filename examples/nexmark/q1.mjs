// Nexmark q1, currency conversion: every bid with its price converted from dollars to euros
// (price × 0.908), the other fields unchanged.
//
// In Kappa: an actor over the bid topic emitting each converted bid to the `stream` sink, as
// Flink's q1 (`SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid`).
export default {
  name: 'nexmark-q1',
  version: 'v1',
  source: { topic: 'nexmark-bid' },
  time: (bid) => bid.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  actor: {
    onEvent(ctx, bid) {
      ctx.emit({
        auction: bid.auction,
        bidder: bid.bidder,
        price: 0.908 * bid.price,
        dateTime: bid.dateTime,
        extra: bid.extra,
      });
    },
  },
  sink: { kind: 'stream' },
};
