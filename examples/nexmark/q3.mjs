// Nexmark q3, local item suggestion: the auctions of category 10 whose seller lives in Oregon,
// Idaho or California, each with its seller's name, city and state:
// `{ name, city, state, id }` (id: the auction's), one row per auction.
//
// In Kappa: an unwindowed join (Flink's q3 is a regular inner join of the whole streams). Both
// topics reach the actor keyed by the person: persons by `id`, auctions by `seller`, so a seller
// and their auctions meet in one actor (a repartition stage puts them there). The actor keeps the
// seller once they registered in one of the states and emits a row for each matching auction; an
// auction that arrives before its seller (event-time jitter, or the other topic running ahead) is
// kept until the seller arrives. A person is registered once, so nothing is ever updated or
// retracted, and the state holds a matching person and their early auctions.
//
//   kappa run examples/nexmark/q3.mjs --input person=person.jsonl --input auction=auction.jsonl --key id
const STATES = new Set(['OR', 'ID', 'CA']);
const CATEGORY = 10;

function rowOf(person, auction) {
  return { name: person.name, city: person.city, state: person.state, id: auction.id };
}

export default {
  name: 'nexmark-q3',
  version: 'v1',
  sources: {
    person: { topic: 'nexmark-person', key: 'id' },
    auction: { topic: 'nexmark-auction', key: 'seller' },
  },
  time: (event) => event.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  actor: {
    onEvent(ctx, event) {
      const seller = ctx.value('seller');
      const early = ctx.map('auctions-before-seller');
      if (ctx.source === 'person') {
        // Remembered either way, so that later auctions of a seller elsewhere are not kept.
        const person = { name: event.name, city: event.city, state: event.state, local: STATES.has(event.state) };
        seller.set(person);
        for (const [id, auction] of early.entries()) {
          if (person.local) ctx.emit(rowOf(person, auction), { row: id });
          early.delete(id);
        }
        return;
      }
      if (event.category !== CATEGORY) return;
      const person = seller.get();
      if (person === undefined) early.set(String(event.id), { id: event.id });
      else if (person.local) ctx.emit(rowOf(person, event), { row: String(event.id) });
    },
  },
};
