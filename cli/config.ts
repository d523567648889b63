// Process configuration from a JSON file, environment variables and flags (later wins), validated
// with zod so a bad value is a one-line message naming the setting and where it came from.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../protocol/index.js';
import { parseByteSize } from '../worker/byte-size.js';
import { parseDuration } from '../worker/duration.js';

export interface ConfigSources {
  /** Path of a JSON config file (--config / KAPPA_CONFIG). */
  file?: string;
  /** Setting name → environment variable name. */
  env: Record<string, string>;
  /** Setting name → flag value (undefined when the flag was not given). */
  flags: Record<string, unknown>;
}

export function loadConfig<S extends z.ZodObject>(schema: S, sources: ConfigSources, environment: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const merged: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  if (sources.file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(sources.file, 'utf8'));
    } catch (error) {
      throw new ConfigError(`cannot read config file ${sources.file}: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${sources.file} must hold a JSON object`);
    }
    for (const [name, value] of Object.entries(parsed)) {
      merged[name] = value;
      origin[name] = `config file ${sources.file}`;
    }
  }
  for (const [name, variable] of Object.entries(sources.env)) {
    const value = environment[variable];
    if (value !== undefined && value !== '') {
      merged[name] = value;
      origin[name] = `environment variable ${variable}`;
    }
  }
  for (const [name, value] of Object.entries(sources.flags)) {
    if (value !== undefined) {
      merged[name] = value;
      origin[name] = `flag --${name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
    }
  }
  const result = schema.strict().safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const name = String(issue.path[0] ?? '');
    const from = origin[name] ? ` (from ${origin[name]})` : '';
    if (issue.code === 'unrecognized_keys') {
      throw new ConfigError(`unknown setting(s) ${issue.keys.join(', ')}${sources.file ? ` in ${sources.file}` : ''}`);
    }
    throw new ConfigError(`setting '${name}'${from}: ${issue.message}`);
  }
  return result.data as z.infer<S>;
}

/** A port number given as a flag or env string. */
export const port = z.coerce.number().int().min(0).max(65535);
export const positiveInt = z.coerce.number().int().positive();
/** A duration given as ms or as a string such as '5s', '1m'. */
export const duration = z.union([z.number(), z.string()]).transform((value, context) => {
  const text = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  const parsed = parseDuration(text);
  if (typeof parsed === 'string') {
    context.addIssue({ code: 'custom', message: parsed });
    return z.NEVER;
  }
  return parsed;
});
/** A size given as bytes or as a string such as '1GiB', '500MB'. */
export const byteSize = z.union([z.number(), z.string()]).transform((value, context) => {
  const parsed = parseByteSize(value);
  if (typeof parsed === 'string') {
    context.addIssue({ code: 'custom', message: parsed });
    return z.NEVER;
  }
  return parsed;
});
export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
