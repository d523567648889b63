import ms from 'ms';
import type { Duration } from './types.js';

/** Parses a Duration (ms number or '5s', '1m', …) or returns an error message naming what was found. */
export function parseDuration(value: Duration, allowNegative = false): number | string {
  if (typeof value === 'number') {
    return Number.isFinite(value) && (allowNegative || value >= 0)
      ? value
      : `expected a non-negative number of ms, found ${value}`;
  }
  const parsed = ms(value as ms.StringValue) as number | undefined;
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || (!allowNegative && parsed < 0)) {
    return `expected a duration such as 500, '5s' or '1m', found ${JSON.stringify(value)}`;
  }
  return parsed;
}
