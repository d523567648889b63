import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Stops every nats-server and kappa process a test file started, whatever its outcome.
    setupFiles: ['test/harness/setup.ts'],
    // Integration tests spawn real nats-server clusters, coordinators and worker pools. On a 2-core
    // machine two such files at once starve each other's timing-sensitive steps (leader takeover,
    // quorum recovery, chaos faults): with issue 14's tests, 2 of the last 4 clean-clone runs had a
    // timing failure. One file at a time costs a few minutes and makes every run mean the same.
    maxWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
