// The rules that turn one JSON line into an event, or into the reason it is rejected.
import { expect, it } from 'vitest';
import { eventFromJsonLine, eventTimeOf } from '../client/index.js';

it('reads event time from ms or ISO-8601, taking a date-time without offset as UTC', () => {
  expect(eventTimeOf(1_700_000_000_123)).toBe(1_700_000_000_123);
  expect(eventTimeOf('2024-03-01T10:00:00Z')).toBe(Date.UTC(2024, 2, 1, 10));
  expect(eventTimeOf('2024-03-01T10:00:00.250+02:00')).toBe(Date.UTC(2024, 2, 1, 8, 0, 0, 250));
  expect(eventTimeOf('2024-03-01T10:00:00+0200')).toBe(Date.UTC(2024, 2, 1, 8));
  expect(eventTimeOf('2024-03-01T10:00')).toBe(Date.UTC(2024, 2, 1, 10));
  expect(eventTimeOf('2024-03-01')).toBe(Date.UTC(2024, 2, 1));
});

it('rejects times that are not ms or a real ISO-8601 instant', () => {
  for (const raw of ['2024-02-30T00:00:00Z', '2024-13-01', 'yesterday', '1700000000000', null, true, {}]) {
    expect(typeof eventTimeOf(raw), JSON.stringify(raw)).toBe('string');
  }
});

it('keys an event by a string or number field, nested paths included, and says why a line is rejected', () => {
  expect(eventFromJsonLine('{"u":{"id":7},"t":5}', { key: 'u.id', time: 't' })).toEqual({
    event: { key: '7', time: 5, value: { u: { id: 7 }, t: 5 } },
  });
  expect(eventFromJsonLine('{"a.b":"x","t":5}', { key: 'a.b', time: 't' })).toMatchObject({ event: { key: 'x' } });
  expect(eventFromJsonLine('nope', { key: 'k', time: 't' })).toMatchObject({
    reason: expect.stringMatching(/^not JSON/),
  });
  expect(eventFromJsonLine('[1]', { key: 'k', time: 't' })).toMatchObject({
    reason: expect.stringMatching(/JSON object/),
  });
  expect(eventFromJsonLine('{"t":1}', { key: 'k', time: 't' })).toEqual({ reason: 'key field "k" is missing' });
  expect(eventFromJsonLine('{"k":null,"t":1}', { key: 'k', time: 't' })).toMatchObject({
    reason: expect.stringMatching(/must be a string or a number/),
  });
  expect(eventFromJsonLine('{"k":"a"}', { key: 'k', time: 't' })).toEqual({ reason: 'time field "t" is missing' });
});
