// A job module with no imports: clicks per user in 10-second tumbling windows of event time.
// Events arrive up to 2 s out of order; a window accepts late clicks for 5 s after it fired
// (re-emitting an updated count); anything later goes to the late-data subject.
export default {
  name: 'clicks',
  version: 'v1',
  source: { topic: 'clicks' },
  // The field the clicks are produced by (`kappa produce --key user`): the job reads the topic as it
  // is partitioned. A function, or another field, would add a repartition stage (README "Keys and partitions").
  key: 'user',
  time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '2s' },
  window: { kind: 'tumbling', size: '10s' },
  allowedLateness: '5s',
  aggregate: {
    init: () => ({ clicks: 0, pages: 0 }),
    add: (totals, click) => ({ clicks: totals.clicks + 1, pages: totals.pages + (click.page ? 1 : 0) }),
  },
};
