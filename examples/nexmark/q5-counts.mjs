// Nexmark q5, hot items, stage 1 of 2: the bids on each auction in hopping windows of 10 s
// sliding by 2 s (each bid counts in 5 windows). Stage 2 (q5.mjs) picks, per window, the
// auctions with the most bids.
//
// In Kappa: a windowed count keyed by auction, as the bid topic is produced, so it reads the topic
// directly. Its results go to the topic `nexmark-q5-counts` (README "Chained jobs"), keyed by the
// window's start so that every count of one window reaches the same stage-2 actor.
//
//   kappa topic create nexmark-q5-counts --partitions 4
//   kappa start nexmark-q5-counts --version v1 && kappa start nexmark-q5 --version v1
export default {
  name: 'nexmark-q5-counts',
  version: 'v1',
  source: { topic: 'nexmark-bid' },
  key: 'auction',
  time: (bid) => bid.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  window: { kind: 'hopping', size: '10s', slide: '2s' },
  aggregate: { init: () => 0, add: (count) => count + 1 },
  sink: { kind: 'topic', topic: 'nexmark-q5-counts', key: (output) => String(output.window.start) },
};
