// The kinds of value a setting takes (port, count, duration, size, log level): each a zod schema
// that reads the value from a flag or env string as well as from a JSON config file, with a
// message naming what was expected and found. A kind whose values read better in the user's
// units than as a number (durations, sizes) says how its default shows in --help.
import { z } from 'zod';
import { parseByteSize } from '../worker/byte-size.js';
import { parseDuration } from '../worker/duration.js';

const helpFormats = new WeakMap<z.ZodType, (value: never) => string>();

/** Registers how values of `schema` show in --help (a default of 604800000 ms as '7d'). */
function shownAs<S extends z.ZodType>(schema: S, format: (value: z.output<S>) => string): S {
  helpFormats.set(schema, format);
  return schema;
}

/** A value as --help shows it: in the units of its kind when it has some, else as JSON would write it. */
export function showValue(schema: z.ZodType, value: unknown): string {
  const format = helpFormats.get(schema) as ((value: unknown) => string) | undefined;
  if (format) return format(value);
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A port number given as a flag or env string. */
export const port = z.coerce.number().int().min(0).max(65535);
export const positiveInt = z.coerce.number().int().positive();
/** A duration given as ms or as a string such as '5s', '1m'. */
export const duration = shownAs(
  z.union([z.number(), z.string()]).transform((value, context) => {
    const text = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
    const parsed = parseDuration(text);
    if (typeof parsed === 'string') {
      context.addIssue({ code: 'custom', message: parsed });
      return z.NEVER;
    }
    return parsed;
  }),
  formatDurationMs,
);
/** A duration above zero, given as ms or as a string such as '6s' (the coordinator's timeouts). */
export const positiveDuration = shownAs(
  z.union([z.number(), z.string()]).transform((value, context) => {
    const parsed = typeof value === 'number' ? value : /^\d+$/.test(value) ? Number(value) : parseDuration(value);
    if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed <= 0) {
      context.addIssue({
        code: 'custom',
        message: `expected a duration such as 6000 or '6s', found ${JSON.stringify(value)}`,
      });
      return z.NEVER;
    }
    return parsed;
  }),
  formatDurationMs,
);
/** A size given as bytes or as a string such as '1GiB', '500MB'. */
export const byteSize = shownAs(
  z.union([z.number(), z.string()]).transform((value, context) => {
    const parsed = parseByteSize(value);
    if (typeof parsed === 'string') {
      context.addIssue({ code: 'custom', message: parsed });
      return z.NEVER;
    }
    return parsed;
  }),
  formatByteSize,
);
export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** The --log-level setting a long-running process (coordinator, worker) declares. */
export const logLevelSetting = {
  flag: '--log-level <level>',
  env: 'KAPPA_LOG_LEVEL',
  schema: logLevel.default('info'),
  help: 'fatal|error|warn|info|debug|trace',
} as const;

const DURATION_UNITS: [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
];

/** '7d', '10s', '1500ms': the largest unit the duration is a whole number of (`ms` would round 1500 to '2s'). */
export function formatDurationMs(durationMs: number): string {
  if (durationMs > 0) {
    for (const [unit, size] of DURATION_UNITS) if (durationMs % size === 0) return `${durationMs / size}${unit}`;
  }
  return `${durationMs}ms`;
}

const SIZE_UNITS: [string, number][] = [
  ['TiB', 1024 ** 4],
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
];

/** '1GiB', '512MiB', '1000': the largest binary unit the size is a whole number of, as parseByteSize reads it back. */
export function formatByteSize(sizeBytes: number): string {
  if (sizeBytes > 0) {
    for (const [unit, size] of SIZE_UNITS) if (sizeBytes % size === 0) return `${sizeBytes / size}${unit}`;
  }
  return String(sizeBytes);
}
