// Version 2 of the clicks job (examples/clicks-per-window.mjs), the "bug fix" that the deployment
// runbook (deploy/README.md) rolls out by replay: v1 counted clicks that had a page as `pages`;
// v2 counts distinct pages per user and window. Same name, topic, windows and lateness; v2 fills
// its own serving table from the start of the topic while v1 keeps serving.
export default {
  name: 'clicks',
  version: 'v2',
  source: { topic: 'clicks' },
  // The field the clicks are produced by (`kappa produce --key user`): the job reads the topic as it
  // is partitioned. A function, or another field, would add a repartition stage (README "Keys and partitions").
  key: 'user',
  time: (click) => click.ts,
  watermark: { maxOutOfOrderness: '2s' },
  window: { kind: 'tumbling', size: '10s' },
  allowedLateness: '5s',
  aggregate: {
    init: () => ({ clicks: 0, pages: [] }),
    add: (totals, click) => ({
      clicks: totals.clicks + 1,
      pages: click.page && !totals.pages.includes(click.page) ? [...totals.pages, click.page] : totals.pages,
    }),
    result: (totals) => ({ clicks: totals.clicks, pages: totals.pages.length }),
  },
};
