// Nexmark q8, monitor new users: the persons who registered and opened an auction in the same
// tumbling 10 s window: `{ id, name, start }`, one row per person and window.
//
// In Kappa: an actor keyed by the person (persons by `id`, auctions by `seller`), which notes in
// each window whether the person registered (their name) and whether they opened an auction, and
// when the window fires (an event-time timer at end − 1, as a window fires) emits the row if both
// happened. Flink's q8 groups each side per window first and then joins them, so a person with
// several auctions in the window is one row; `windowJoin` would give one row per (person,
// auction) pair instead, which is why this is a small actor of its own.
//
//   kappa run examples/nexmark/q8.mjs --input person=person.jsonl --input auction=auction.jsonl --key id
const SIZE_MS = 10_000;

export default {
  name: 'nexmark-q8',
  version: 'v1',
  sources: {
    person: { topic: 'nexmark-person', key: 'id' },
    auction: { topic: 'nexmark-auction', key: 'seller' },
  },
  time: (event) => event.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  actor: {
    onEvent(ctx, event) {
      const start = event.dateTime - (event.dateTime % SIZE_MS);
      if (start + SIZE_MS - 1 <= ctx.watermarkMs) return ctx.late(); // its window has fired
      const window = ctx.map('windows');
      const seen = window.get(String(start)) ?? { name: undefined, auction: false };
      if (ctx.source === 'person') seen.name = event.name;
      else seen.auction = true;
      window.set(String(start), seen);
      ctx.setEventTimeTimer(start + SIZE_MS - 1);
    },
    onTimer(ctx, timer) {
      const start = timer.timeMs - SIZE_MS + 1;
      const window = ctx.map('windows');
      const seen = window.get(String(start));
      window.delete(String(start));
      if (seen?.name !== undefined && seen.auction)
        ctx.emit({ id: Number(ctx.key), name: seen.name, start }, { row: String(start) });
    },
  },
};
