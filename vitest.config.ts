import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Stops every nats-server and kappa process a test file started, whatever its outcome.
    setupFiles: ['test/harness/setup.ts'],
    // Integration tests spawn real nats-server processes; a 2-core machine runs them two at a time.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
