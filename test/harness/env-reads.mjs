// Preloaded into a kappa process (NODE_OPTIONS=--import=<this file>) by deploy-processes.test.ts:
// records the name of every environment variable the process reads, one per line, in the file
// named by KAPPA_TEST_ENV_READS, so the test can tell which of a manifest's variables it consults.
import { appendFileSync } from 'node:fs';

const file = process.env.KAPPA_TEST_ENV_READS;
if (file) {
  const seen = new Set();
  const environment = process.env;
  process.env = new Proxy(environment, {
    get(target, name) {
      if (typeof name === 'string' && !seen.has(name)) {
        seen.add(name);
        appendFileSync(file, `${name}\n`);
      }
      return Reflect.get(target, name);
    },
  });
}
