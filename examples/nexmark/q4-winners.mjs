// Nexmark q4, average price per category, stage 1 of 2: the winning bid of each auction, as
// Beam's WinningBids defines it: the highest bid at or above the auction's reserve among the bids
// placed while it was open (auction.dateTime ≤ bid.dateTime < auction.expires). Each winner is
// written once, when its auction closes, to the topic `nexmark-q4-winners`, keyed by the auction's
// category; stage 2 (q4.mjs) averages them per category.
//
// In Kappa: an actor per auction reading both topics (auctions keyed by `id`, bids by `auction`).
// - It keeps the auction and its highest valid price so far, and closes it with an event-time
//   timer at expires − 1. Once the watermark is there, every bid still to come is at or after
//   `expires` (the watermark bound is at least the events' out-of-orderness), so the winner is
//   final and is emitted once, never revised.
// - The two topics are read independently, so a bid may arrive before its auction. Such a bid is
//   kept (per bid time only the highest price, all a winner needs) until the auction arrives, or
//   until the watermark reaches the bid's time (an event-time timer): an auction still to come
//   then opens after the bid, which cannot count for it.
// - A closed auction is remembered for a minute of event time, so the bids still coming for it
//   (bids on expired auctions are common in Nexmark) are dropped at once instead of being kept as
//   early bids until the watermark passes them (which would be correct too, only slower).
//
//   kappa run examples/nexmark/q4-winners.mjs --input auction=auction.jsonl --input bid=bid.jsonl
//   kappa topic create nexmark-q4-winners --partitions 4
//   kappa start nexmark-q4-winners --version v1 && kappa start nexmark-q4 --version v1
const FORGET_CLOSED_AFTER_MS = 60_000;

/** Whether the bid counts for the auction: placed while it was open, at or above the reserve. */
function counts(auction, bidTime, price) {
  return auction.dateTime <= bidTime && bidTime < auction.expires && price >= auction.reserve;
}

export default {
  name: 'nexmark-q4-winners',
  version: 'v1',
  sources: {
    auction: { topic: 'nexmark-auction', key: 'id' },
    bid: { topic: 'nexmark-bid', key: 'auction' },
  },
  time: (event) => event.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  actor: {
    onEvent(ctx, event) {
      const auction = ctx.value('auction');
      const early = ctx.map('bids-before-auction'); // bid time → highest price at that time
      if (ctx.source === 'auction') {
        const open = {
          dateTime: event.dateTime,
          expires: event.expires,
          reserve: event.reserve,
          category: event.category,
          price: null, // no winning bid yet
        };
        for (const [time, price] of early.entries()) {
          if (counts(open, Number(time), price) && price > (open.price ?? -1)) open.price = price;
          early.delete(time);
        }
        auction.set(open);
        ctx.setEventTimeTimer(event.expires - 1, 'close');
        return;
      }
      const open = auction.get();
      if (open === undefined) {
        const time = String(event.dateTime);
        const kept = early.get(time);
        if (kept === undefined) ctx.setEventTimeTimer(event.dateTime, 'early');
        if (kept === undefined || event.price > kept) early.set(time, event.price);
      } else if (!open.closed && counts(open, event.dateTime, event.price) && event.price > (open.price ?? -1)) {
        auction.set({ ...open, price: event.price });
      }
    },
    onTimer(ctx, timer) {
      const auction = ctx.value('auction');
      if (timer.tag === 'early') {
        ctx.map('bids-before-auction').delete(String(timer.timeMs));
      } else if (timer.tag === 'close') {
        const open = auction.get();
        if (open.price !== null) ctx.emit({ auction: Number(ctx.key), category: open.category, price: open.price });
        auction.set({ closed: true });
        ctx.setEventTimeTimer(timer.timeMs + FORGET_CLOSED_AFTER_MS, 'forget');
      } else {
        auction.clear();
      }
    },
  },
  sink: { kind: 'topic', topic: 'nexmark-q4-winners', key: 'category' },
};
