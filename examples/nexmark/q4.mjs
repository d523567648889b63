// Nexmark q4, average price per category, stage 2 of 2: per auction category, the average winning
// price of its auctions that had a winner: `{ category, avg }`, the mean rounded down to a whole
// cent (as Flink's q4 casts its AVG to BIGINT; q4.sql divides the integers).
//
// In Kappa: stage 1 (q4-winners.mjs) writes each auction's winning bid once its auction has
// closed, to the topic `nexmark-q4-winners` keyed by category; this actor reads that topic as it
// was keyed (one actor per category) and keeps the sum and the number of winning prices. It keeps
// the newest revision of each winner with `latestRevisions` (README "Chained jobs"): stage 1 writes
// each winner once, but a replay after a crash may bring one again, and it must count once.
import { latestRevisions } from 'kappa-runtime';

export default {
  name: 'nexmark-q4',
  version: 'v1',
  source: { topic: 'nexmark-q4-winners' },
  // No `key`: the events are keyed by category, as stage 1's sink wrote them.
  time: (output) => output.time,
  watermark: { maxOutOfOrderness: '0s' },
  actor: {
    onEvent(ctx, output) {
      const { change, previous } = latestRevisions(ctx).apply(output);
      if (change === 'stale') return;
      const totals = ctx.value('totals');
      let { sum, count } = totals.get() ?? { sum: 0, count: 0 };
      if (previous !== undefined) {
        sum -= previous.value.price;
        count -= 1;
      }
      if (change !== 'retracted') {
        sum += output.value.price;
        count += 1;
      }
      totals.set({ sum, count });
      // Exact: sums of prices (at most 10^8 cents each) stay far below 2^53, and a quotient of two
      // such integers rounds to the nearest double, never across a whole number here.
      if (count > 0) ctx.emit({ category: Number(ctx.key), avg: Math.floor(sum / count) });
    },
  },
};
