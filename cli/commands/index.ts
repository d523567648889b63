import type { Command } from 'commander';

/** Adds every subcommand to the program; one line per command module. */
export function registerCommands(_program: Command): void {
}
