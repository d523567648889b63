// A vitest setup file (vitest.config.ts `setupFiles`): runs in every test file, so whatever a
// file's own hooks do or fail to do, the servers and kappa processes it started are stopped once
// it ends. A process killed outright is covered by the parent-death signal instead (harness/cli.ts,
// harness/nats-server.ts).
import { afterAll } from 'vitest';
import { killAllKappaProcesses } from './cli.js';
import { stopAllServers } from './nats-server.js';

afterAll(async () => {
  // Processes first: a worker whose server vanished first would only log reconnect attempts.
  await killAllKappaProcesses();
  await stopAllServers();
});
