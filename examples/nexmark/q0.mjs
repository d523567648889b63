// Nexmark q0, pass-through: every bid, unchanged. It measures what reading, decoding and writing
// an event costs with no work in between.
//
// In Kappa: an actor over the bid topic that emits each bid to the `stream` sink (the job's output
// subject), as Flink's q0 inserts each bid into a blackhole sink. Keyed as the producer keyed it
// (by auction), so the job reads the topic directly, with no repartition stage.
//
//   kappa nexmark generate --events 100000
//   kappa start nexmark-q0 --version v1
export default {
  name: 'nexmark-q0',
  version: 'v1',
  source: { topic: 'nexmark-bid' },
  time: (bid) => bid.dateTime,
  watermark: { maxOutOfOrderness: '500ms' },
  actor: {
    onEvent(ctx, bid) {
      ctx.emit(bid);
    },
  },
  sink: { kind: 'stream' },
};
