// One rule for event times everywhere (`kappa produce`, the worker, `kappa run`): a number is ms
// since the epoch; a string must be ISO 8601 and is read as UTC when it carries no offset; a Date
// (what a job's `time` function may return) is its time. Anything else has no usable time.
// Date.parse alone is not the rule: it accepts "1" (year 2001) and "hello 7", and reads an ISO
// time without an offset in the local time zone of whichever machine runs it.

// ISO-8601 date, or date-time with optional seconds, fraction and offset.
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/** Event time in ms since the epoch, or a phrase saying why the value is not one ("is not …"). */
export function eventTimeOf(raw: unknown): number | string {
  if (typeof raw === 'number') {
    return Number.isFinite(raw) ? raw : `must be a finite number of ms, found ${raw}`;
  }
  if (raw instanceof Date) {
    const ms = raw.getTime();
    return Number.isFinite(ms) ? ms : 'is an invalid Date';
  }
  if (typeof raw !== 'string') return `must be a number of ms or an ISO-8601 string, found ${describeTimeValue(raw)}`;
  const match = ISO_8601.exec(raw);
  if (!match) return `is not an ISO-8601 time: ${JSON.stringify(raw.slice(0, 80))}`;
  const hasTime = match[4] !== undefined;
  const offset = match[7];
  let normalised = raw.replace(' ', 'T').replace(',', '.');
  if (hasTime && offset === undefined) normalised += 'Z';
  // Date.parse wants ±hh:mm; ISO also allows ±hhmm and ±hh.
  if (offset !== undefined && offset !== 'Z') {
    const sign = offset.slice(0, 3);
    const minutes = offset.slice(3).replace(':', '') || '00';
    normalised = normalised.slice(0, -offset.length) + `${sign}:${minutes}`;
  }
  const ms = Date.parse(normalised);
  // Date.parse rolls 2024-02-30 over to March; a round trip of the date part catches it.
  if (Number.isNaN(ms) || !validCalendarDate(Number(match[1]), Number(match[2]), Number(match[3]))) {
    return `is not a valid ISO-8601 time: ${JSON.stringify(raw)}`;
  }
  return ms;
}

function validCalendarDate(year: number, month: number, day: number): boolean {
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

function describeTimeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}
