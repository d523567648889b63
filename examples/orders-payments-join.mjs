// A job over two topics: each order joined with the payments for it that fall in the same
// 1-minute window of event time (a tumbling window join, Flink's, inner). Both topics are keyed
// by the field `orderId`, so an order and its payments reach the same actor; one row per
// (order, payment) pair appears when the window fires, and an event for a window that already
// fired goes to the late-data subject (README "Joins").
//
//   kappa run examples/orders-payments-join.mjs --input orders=orders.jsonl --input payments=payments.jsonl
//
// For "a payment within 10 minutes after its order, whatever the window", use the interval join:
//   actor: intervalJoin({ left: 'orders', right: 'payments', lower: 0, upper: '10m', join })
import { windowJoin } from 'kappa-runtime';

export default {
  name: 'orders-payments',
  version: 'v1',
  sources: {
    orders: { topic: 'orders', time: (order) => order.placedAt },
    payments: { topic: 'payments', time: (payment) => payment.paidAt },
  },
  key: 'orderId',
  watermark: { maxOutOfOrderness: '5s' },
  actor: windowJoin({
    left: 'orders',
    right: 'payments',
    window: { size: '1m' },
    join: (order, payment, { window }) => ({
      orderId: order.orderId,
      customer: order.customer,
      ordered: order.amount,
      paid: payment.amount,
      method: payment.method,
      windowStart: new Date(window.start).toISOString(),
    }),
  }),
};
