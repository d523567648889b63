import type { Command } from 'commander';
import { registerProduce } from './produce.js';
import { registerTopic } from './topic.js';

/** Adds every subcommand to the program; one line per command module. */
export function registerCommands(program: Command): void {
  registerTopic(program);
  registerProduce(program);
}
