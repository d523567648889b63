// The folder rules (DESIGN.md "Parts and where they live") are enforced by lint, which `npm test`
// runs: an import a folder may not make is an error naming the rule.
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: new URL('..', import.meta.url).pathname });

async function lint(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages
    .filter((message) => message.ruleId === 'no-restricted-imports')
    .map((message) => message.message);
}

describe('folder boundaries', () => {
  it.each([
    [
      'worker/bad.ts',
      "import { Coordinator } from '../coordinator/coordinator.js';\nexport const x = Coordinator;\n",
      'worker/ may import only protocol/',
    ],
    [
      'coordinator/bad.ts',
      "import { TaskRunner } from '../worker/task-runner.js';\nexport const x = TaskRunner;\n",
      'coordinator/ may import only protocol/',
    ],
    [
      'protocol/bad.ts',
      "import { KeyedState } from '../state/keyed-state.js';\nexport const x = KeyedState;\n",
      'protocol/ may import only nothing of ours',
    ],
    [
      'tables/bad.ts',
      "import { JobSinks } from '../worker/sinks.js';\nexport const x = JobSinks;\n",
      'tables/ may import only protocol/, client/',
    ],
    [
      'worker/window/bad.ts',
      "import { run } from '../../cli/main.js';\nexport const x = run;\n",
      'worker/ may import only protocol/',
    ],
  ])('%s: a forbidden import fails lint', async (file, code, expected) => {
    const messages = await lint(file, code);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain(expected);
  });

  it('allowed imports pass', async () => {
    expect(
      await lint(
        'worker/ok.ts',
        "import { encodeEvent } from '../protocol/index.js';\nimport { KeyedState } from '../state/keyed-state.js';\nexport const x = [encodeEvent, KeyedState];\n",
      ),
    ).toEqual([]);
    expect(
      await lint('cli/ok.ts', "import { Producer } from '../client/producer.js';\nexport const x = Producer;\n"),
    ).toEqual([]);
  });
});
