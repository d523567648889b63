// A command's settings, each declared once — its flag, environment variable, schema (kind, default,
// validation) and help — and compiled once per process into one typed object, as Temporal compiles
// WorkerOptions. The declaration registers the commander options, writes the env variable and the
// default into --help (so the help cannot drift from what is read), and merges the sources:
// a JSON config file < environment variables < flags. A bad value is one ConfigError (exit 2)
// naming the setting and where the value came from.
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { ConfigError } from '../protocol/index.js';
import { showValue } from './setting-values.js';

export interface Setting<S extends z.ZodType = z.ZodType> {
  /** The commander flag, e.g. '--threads <n>'; one without a value ('--standalone') is a boolean. */
  flag: string;
  /** The environment variable read when the flag is not given. */
  env?: string;
  /** Kind, default and validation; --help shows the default. */
  schema: S;
  help: string;
  /** How --help shows a default computed at start ('cores', '<host>-<pid>') rather than this machine's value. */
  shownDefault?: string;
  /** The flag may be given several times; its value is the list. */
  repeatable?: boolean;
  /**
   * The value is a secret: given as a flag it is visible to anyone who can list processes (`ps`)
   * or read the shell's history, so loading it warns, naming these safer ways to give it.
   */
  secret?: { instead: string };
}

/** Where a warning about how a setting was given goes (stderr, one line, as the CLI's errors). */
export type SettingWarning = (message: string) => void;

const warnOnStderr: SettingWarning = (message) => process.stderr.write(`kappa: warning: ${message}\n`);

/** Setting name → its declaration, or a group of settings compiled into one nested object (the NATS connection). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SettingDeclarations = Readonly<Record<string, Setting | SettingsDefinition<any>>>;

/** The compiled settings: each setting's parsed value (defaults applied), each group's object. */
export type Settings<D extends SettingDeclarations> = {
  -readonly [K in keyof D]: D[K] extends SettingsDefinition<infer G>
    ? Settings<G>
    : D[K] extends Setting<infer S>
      ? z.output<S>
      : never;
};

/** The compiled settings of a definition: `SettingsOf<typeof workerSettings>`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SettingsOf<T extends SettingsDefinition<any>> = T extends SettingsDefinition<infer D> ? Settings<D> : never;

type SettingNames<D extends SettingDeclarations> = { [K in keyof D]: D[K] extends Setting ? K : never }[keyof D];
type SettingsShape<D extends SettingDeclarations> = {
  [K in SettingNames<D>]: D[K] extends Setting<infer S> ? S : never;
};

/** The flag and env variable of the JSON config file, for a definition declared with `configFile`. */
const CONFIG_FILE = {
  flag: '--config <file>',
  env: 'KAPPA_CONFIG',
  help: 'JSON file with any of the settings above',
};

export class SettingsDefinition<D extends SettingDeclarations> {
  /** What a config file may hold (groups are flags and env only); checked strictly when loading. */
  readonly schema: z.ZodObject<SettingsShape<D>>;
  private readonly settings: [name: string, setting: Setting, option: Option][] = [];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private readonly groups: [name: string, group: SettingsDefinition<any>][] = [];

  constructor(
    readonly declarations: D,
    private readonly options: { configFile?: boolean } = {},
  ) {
    const shape: Record<string, z.ZodType> = {};
    for (const [name, declared] of Object.entries(declarations)) {
      if (declared instanceof SettingsDefinition) {
        this.groups.push([name, declared]);
      } else {
        shape[name] = declared.schema;
        this.settings.push([name, declared, new Option(declared.flag)]);
      }
    }
    this.schema = z.object(shape) as unknown as z.ZodObject<SettingsShape<D>>;
  }

  /** Adds the options in declaration order, then --config (when declared), then each group's. */
  addOptions(command: Command): Command {
    for (const [, setting, parsed] of this.settings) {
      const option = new Option(setting.flag, helpOf(setting, parsed));
      if (setting.repeatable)
        option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
      command.addOption(option);
    }
    if (this.options.configFile)
      command.addOption(new Option(CONFIG_FILE.flag, `${CONFIG_FILE.help} (env ${CONFIG_FILE.env})`));
    for (const [, group] of this.groups) group.addOptions(command);
    return command;
  }

  /**
   * The settings from the config file, the environment and the parsed flags (commander's `opts()`);
   * a secret given as a flag is taken, with a warning.
   */
  load(
    flags: Readonly<Record<string, unknown>>,
    environment: NodeJS.ProcessEnv = process.env,
    warn: SettingWarning = warnOnStderr,
  ): Settings<D> {
    const merged: Record<string, unknown> = {};
    const origin: Record<string, string> = {};
    const file = this.options.configFile
      ? ((flags.config as string | undefined) ?? environment[CONFIG_FILE.env])
      : undefined;
    if (file) {
      for (const [name, value] of Object.entries(readConfigFile(file))) {
        merged[name] = value;
        origin[name] = `config file ${file}`;
      }
    }
    for (const [name, setting] of this.settings) {
      const value = setting.env === undefined ? undefined : environment[setting.env];
      if (value !== undefined && value !== '') {
        merged[name] = value;
        origin[name] = `environment variable ${setting.env}`;
      }
    }
    for (const [name, setting, option] of this.settings) {
      const value = flags[option.attributeName()];
      if (value !== undefined) {
        merged[name] = value;
        origin[name] = `flag ${option.long}`;
        if (setting.secret)
          warn(
            `${option.long} puts a secret on the command line, where ps and the shell's history show it; use ${setting.secret.instead}`,
          );
      }
    }
    const result = this.schema.strict().safeParse(merged);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      if (issue.code === 'unrecognized_keys')
        throw new ConfigError(`unknown setting(s) ${issue.keys.join(', ')}${file ? ` in ${file}` : ''}`);
      const name = String(issue.path[0] ?? '');
      const from = origin[name] ? ` (from ${origin[name]})` : '';
      throw new ConfigError(`setting '${name}'${from}: ${issue.message}`);
    }
    const settings: Record<string, unknown> = result.data;
    for (const [name, group] of this.groups) settings[name] = group.load(flags, environment, warn);
    return settings as Settings<D>;
  }
}

/** Declares a command's settings once; `configFile` adds --config/KAPPA_CONFIG, the lowest of the sources. */
export function defineSettings<D extends SettingDeclarations>(
  declarations: D,
  options: { configFile?: boolean } = {},
): SettingsDefinition<D> {
  return new SettingsDefinition(declarations, options);
}

/** The help line: the setting's own text, then its env variable and default, both read from the declaration. */
function helpOf(setting: Setting, option: Option): string {
  const notes: string[] = [];
  if (setting.env !== undefined) notes.push(`env ${setting.env}`);
  const shown = setting.shownDefault ?? (option.isBoolean() ? undefined : defaultShownFor(setting.schema));
  if (shown !== undefined) notes.push(`default ${shown}`);
  return notes.length === 0 ? setting.help : `${setting.help} (${notes.join(', ')})`;
}

function defaultShownFor(schema: z.ZodType): string | undefined {
  if (!(schema instanceof z.ZodDefault)) return undefined;
  return showValue(schema.def.innerType as z.ZodType, schema.def.defaultValue);
}

function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}
