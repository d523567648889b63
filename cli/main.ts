#!/usr/bin/env node
// The `kappa` command. Each subcommand lives in cli/commands/<name>.ts and registers itself here.
import { Command, CommanderError } from 'commander';
import { KappaError } from '../protocol/errors.js';
import { ExitCode } from './exit-codes.js';
import { registerCommands } from './commands/index.js';

const program = new Command('kappa')
  .description('Kappa: a stream-processing runtime on NATS JetStream')
  .version('0.1.0')
  // `kappa --version` prints ours; after a subcommand, `--version V` is that command's (start, stop, view).
  .enablePositionalOptions()
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

await registerCommands(program, process.argv.slice(2));

try {
  await program.parseAsync(process.argv);
} catch (error) {
  process.exitCode = exitCodeFor(error);
}

function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError) {
    // --help and --version end here with code 0; usage errors were already printed.
    return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  }
  if (error instanceof KappaError) {
    console.error(`kappa: ${error.message}`);
    if (error.code === 'CONNECTION_FAILED') return ExitCode.unreachable;
    if (error.code === 'CONFIG_INVALID' || error.code === 'JOB_INVALID') return ExitCode.usage;
    return ExitCode.failure;
  }
  console.error(`kappa: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return ExitCode.failure;
}
