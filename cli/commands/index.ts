import type { Command } from 'commander';
import { registerAuth } from './auth.js';
import { registerCoordinator } from './coordinator.js';
import { registerProduce } from './produce.js';
import { registerTopic } from './topic.js';
import { registerDev } from './dev.js';
import { registerDiff } from './diff.js';
import { registerNexmark } from './nexmark.js';
import { registerRun } from './run.js';
import { registerStart } from './start.js';
import { registerCutover, registerReplay, registerRetire } from './replay.js';
import { registerStatus } from './status.js';
import { registerStop } from './stop.js';
import { registerView } from './view.js';
import { registerWorker } from './worker.js';

/** Adds every subcommand to the program; one line per command module. */
export function registerCommands(program: Command): void {
  registerTopic(program);
  registerProduce(program);
  registerWorker(program);
  registerRun(program);
  registerView(program);
  registerCoordinator(program);
  registerStart(program);
  registerStop(program);
  registerReplay(program);
  registerCutover(program);
  registerDiff(program);
  registerRetire(program);
  registerStatus(program);
  registerDev(program);
  registerNexmark(program);
  registerAuth(program);
}
