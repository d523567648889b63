// JSON lines → events: the rules by which `kappa produce` (or any loader) turns one line of
// input into an event, or into the reason it cannot. Pure: no I/O.
import { eventTimeOf, type EventEnvelope } from '../protocol/index.js';

export { eventTimeOf };

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
    return {
      reason: `expected a JSON object, found ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`,
    };
  }
  const rawKey = fieldOf(value, fields.key);
  let key: string;
  if (typeof rawKey === 'string') key = rawKey;
  else if (typeof rawKey === 'number' && Number.isFinite(rawKey)) key = String(rawKey);
  else
    return {
      reason:
        rawKey === undefined
          ? `key field "${fields.key}" is missing`
          : `key field "${fields.key}" must be a string or a number, found ${describeJson(rawKey)}`,
    };

  const rawTime = fieldOf(value, fields.time);
  const time = eventTimeOf(rawTime);
  if (typeof time === 'string')
    return {
      reason: rawTime === undefined ? `time field "${fields.time}" is missing` : `time field "${fields.time}" ${time}`,
    };
  return { event: { key, time, value } };
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
