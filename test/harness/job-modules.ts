// Job modules written for a test: an example job re-exported with some of its fields replaced
// (its name, version, sink, source), as a user derives a job version from another.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Writes `<dir>/<name>.mjs`: the job `example` exports, with `fields` (plain JSON values) in
 * place of its own. Returns the file's path, for `--job`.
 */
export function derivedJobModule(dir: string, name: string, example: string, fields: Record<string, unknown>): string {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(
    file,
    `import base from ${JSON.stringify(pathToFileURL(example).href)};\nexport default { ...base, ...${JSON.stringify(fields)} };\n`,
  );
  return file;
}
