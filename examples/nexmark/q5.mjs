// Nexmark q5, hot items, stage 2 of 2: per hopping window (10 s sliding by 2 s), the auctions with
// the most bids: `{ start, end, auctions: [ids ascending], count }`.
//
// In Kappa: stage 1 (q5-counts.mjs) counts bids per auction and window and writes each count to
// the topic `nexmark-q5-counts`, keyed by the window's start; this actor reads that topic as it
// was keyed (one actor per window) and keeps the newest revision of each count with
// `latestRevisions`, then re-emits the window's row from what it keeps. Flink's q5 does the same
// in one query: a count per auction and window, then the maximum per window and a join back.
// (One job cannot do it: a key names one actor, and a bid belongs to five windows.)
import { latestRevisions } from 'kappa-runtime';

/** The most bids any auction has among the counts, and those auctions (ascending). */
function hottest(counts) {
  let hot = { count: 0, auctions: [] };
  for (const kept of counts) {
    if (kept.value > hot.count) hot = { count: kept.value, auctions: [] };
    if (kept.value === hot.count) hot.auctions.push(Number(kept.key));
  }
  hot.auctions.sort((a, b) => a - b);
  return hot;
}

export default {
  name: 'nexmark-q5',
  version: 'v1',
  source: { topic: 'nexmark-q5-counts' },
  // No `key`: the events are keyed by window start, as stage 1's sink wrote them.
  time: (output) => output.time,
  watermark: { maxOutOfOrderness: '0s' },
  actor: {
    onEvent(ctx, output) {
      const latest = latestRevisions(ctx);
      const { change, previous } = latest.apply(output);
      if (change === 'stale') return;
      // The window's hottest auctions so far, kept up to date per count instead of recomputed
      // from all of the window's counts each time (hundreds of auctions per window).
      const top = ctx.value('hottest');
      let hot = top.get() ?? { count: 0, auctions: [] };
      const auction = Number(output.key);
      const fell = change === 'retracted' || (previous !== undefined && output.value < previous.value);
      if (fell && previous.value === hot.count)
        hot = hottest(latest.current()); // a top count fell: recount
      else if (change === 'retracted' || output.value < hot.count) return;
      else if (output.value > hot.count) hot = { count: output.value, auctions: [auction] };
      else if (!hot.auctions.includes(auction)) hot.auctions = [...hot.auctions, auction].sort((a, b) => a - b);
      else return;
      top.set(hot);
      ctx.emit({ start: output.window.start, end: output.window.end, auctions: hot.auctions, count: hot.count });
    },
  },
};
