// JSON lines → events: the rules by which `kappa produce` (or any loader) turns one line of
// input into an event, or into the reason it cannot. Pure: no I/O.
import type { EventEnvelope } from '../protocol/index.js';

export interface JsonEventFields {
  /** Field holding the key; a dotted path (`user.id`) reaches into nested objects. */
  key: string;
  /** Field holding the event time: a number of ms since the epoch, or an ISO-8601 string. */
  time: string;
}

export type LineResult = { event: EventEnvelope } | { reason: string };

export function eventFromJsonLine(line: string, fields: JsonEventFields): LineResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { reason: `not JSON (${(error as Error).message})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { reason: `expected a JSON object, found ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}` };
  }
  const rawKey = fieldOf(value, fields.key);
  let key: string;
  if (typeof rawKey === 'string') key = rawKey;
  else if (typeof rawKey === 'number' && Number.isFinite(rawKey)) key = String(rawKey);
  else return { reason: rawKey === undefined ? `key field "${fields.key}" is missing` : `key field "${fields.key}" must be a string or a number, found ${describeJson(rawKey)}` };

  const rawTime = fieldOf(value, fields.time);
  const time = eventTimeOf(rawTime);
  if (typeof time === 'string') return { reason: rawTime === undefined ? `time field "${fields.time}" is missing` : `time field "${fields.time}" ${time}` };
  return { event: { key, time, value } };
}

// ISO-8601 date, or date-time with optional seconds, fraction and offset.
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/**
 * Event time in ms since the epoch, or why the value is not one. A date-time without an offset
 * is read as UTC, never as the local time of whichever machine loads the file.
 */
export function eventTimeOf(raw: unknown): number | string {
  if (typeof raw === 'number') {
    return Number.isFinite(raw) ? raw : `must be a finite number of ms, found ${raw}`;
  }
  if (typeof raw !== 'string') return `must be a number of ms or an ISO-8601 string, found ${describeJson(raw)}`;
  const match = ISO_8601.exec(raw);
  if (!match) return `is not an ISO-8601 time: ${JSON.stringify(raw)}`;
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

function fieldOf(value: object, path: string): unknown {
  const record = value as Record<string, unknown>;
  if (Object.hasOwn(record, path)) return record[path];
  let current: unknown = value;
  for (const part of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

function describeJson(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}
