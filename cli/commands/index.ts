import type { Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Every subcommand and the module that registers it. Only the module of the command being run is
 * loaded (with what it imports: NATS, RocksDB, Parquet, piscina…), which is most of a command's
 * start-up time; `kappa --help`, `kappa help` and an unknown command load them all.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  topic: async () => (await import('./topic.js')).registerTopic,
  produce: async () => (await import('./produce.js')).registerProduce,
  worker: async () => (await import('./worker.js')).registerWorker,
  run: async () => (await import('./run.js')).registerRun,
  view: async () => (await import('./view.js')).registerView,
  coordinator: async () => (await import('./coordinator.js')).registerCoordinator,
  start: async () => (await import('./start.js')).registerStart,
  stop: async () => (await import('./stop.js')).registerStop,
  replay: async () => (await import('./replay.js')).registerReplay,
  cutover: async () => (await import('./replay.js')).registerCutover,
  diff: async () => (await import('./diff.js')).registerDiff,
  retire: async () => (await import('./replay.js')).registerRetire,
  status: async () => (await import('./status.js')).registerStatus,
  dev: async () => (await import('./dev.js')).registerDev,
  nexmark: async () => (await import('./nexmark.js')).registerNexmark,
  auth: async () => (await import('./auth.js')).registerAuth,
};

/**
 * Adds the subcommand `args` names (the first argument that is not an option) to the program, or
 * every subcommand, in the order `--help` lists them, when it names none of them.
 */
export async function registerCommands(program: Command, args: readonly string[]): Promise<void> {
  const named = args.find((arg) => !arg.startsWith('-'));
  const loaders = named !== undefined && Object.hasOwn(COMMANDS, named) ? [COMMANDS[named]!] : Object.values(COMMANDS);
  for (const register of await Promise.all(loaders.map((load) => load()))) register(program);
}
