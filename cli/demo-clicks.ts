// The demo stream of `kappa dev`: page clicks of a few dozen users, mostly in event-time order,
// some a little out of order, now and then one far too late (so late data shows up too).
import type { EventEnvelope } from '../protocol/index.js';

export interface Click {
  user: string;
  page: string;
  ts: number;
}

const PAGES = ['/home', '/search', '/cart', '/checkout', '/help'];

export function demoClick(sequence: number, nowMs: number): EventEnvelope<Click> {
  const user = `user-${(sequence * 7919) % 40}`;
  const roll = (sequence * 2654435761) % 1000;
  // 5% up to 1.5 s out of order; 0.5% 30 s late (past the allowed lateness of the demo job).
  const ts = nowMs - (roll < 50 ? roll * 30 : 0) - (roll >= 995 ? 30_000 : 0);
  return { key: user, time: ts, value: { user, page: PAGES[sequence % PAGES.length]!, ts } };
}
