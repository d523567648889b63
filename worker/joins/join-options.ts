// Validation shared by the join helpers: their options are checked once, when the job module builds
// its handlers, and a mistake names the helper and the option, as the job API's errors do.
import { parseDuration } from '../duration.js';
import { JobDefinitionError } from '../job.js';
import type { Duration } from '../types.js';

export type JoinSide = 'left' | 'right';

/** The two sources a join pairs, by their names in the job's `sources`. */
export interface JoinSources {
  left: string;
  right: string;
}

export function optionError(helper: string, option: string, message: string): never {
  throw new JobDefinitionError(`${helper}: option '${option}': ${message}`);
}

/** The options object itself, and its `left`, `right` and `join`. */
export function checkJoinBasics(helper: string, options: unknown): JoinSources {
  if (options === null || typeof options !== 'object')
    throw new JobDefinitionError(`${helper}: expected an options object, found ${describe(options)}`);
  const { left, right, join } = options as Record<string, unknown>;
  for (const [option, value] of [
    ['left', left],
    ['right', right],
  ] as const) {
    if (typeof value !== 'string' || value.length === 0)
      optionError(helper, option, `expected the name of one of the job's sources, found ${describe(value)}`);
  }
  if (left === right) optionError(helper, 'right', `must name another source than 'left' (both are '${left}')`);
  if (typeof join !== 'function')
    optionError(helper, 'join', `expected a function (left, right, info) => value, found ${describe(join)}`);
  return { left: left as string, right: right as string };
}

/** A duration option in ms: required unless it has a fallback; negative only where allowed. */
export function durationOption(
  helper: string,
  option: string,
  value: unknown,
  rules: { fallback?: number; allowNegative?: boolean } = {},
): number {
  if (value === undefined) {
    if (rules.fallback !== undefined) return rules.fallback;
    return optionError(helper, option, "is required (a number of ms, or a duration such as '5s')");
  }
  if (typeof value !== 'number' && typeof value !== 'string')
    return optionError(helper, option, `expected a duration such as 500, '5s' or '1m', found ${describe(value)}`);
  const ms = parseDuration(value as Duration, rules.allowNegative ?? false);
  return typeof ms === 'number' ? ms : optionError(helper, option, ms);
}

/**
 * Which side an event is on, from `ctx.source`. An event of a third source is a job mistake: the
 * handler throws, so it is retried and then dead-lettered (`handler-failed`) with this message.
 */
export function sideOf(helper: string, sources: JoinSources, source: string | undefined): JoinSide {
  if (source === sources.left) return 'left';
  if (source === sources.right) return 'right';
  throw new JobDefinitionError(
    `${helper}: an event of source ${JSON.stringify(source)}, but the join pairs '${sources.left}' (left) with '${sources.right}' (right)`,
  );
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return JSON.stringify(value);
  return value === null || typeof value !== 'object' ? String(value) : Array.isArray(value) ? 'an array' : 'an object';
}
