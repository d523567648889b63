// Lint is part of the test command (scripts/test.sh).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The folder rules of DESIGN.md ("Parts and where they live"): what each folder may import of
// ours. An import of any other folder is a lint error, so `npm test` fails on it.
const FOLDERS = [
  'protocol',
  'runtime',
  'state',
  'tables',
  'archive',
  'client',
  'worker',
  'coordinator',
  'cli',
  'test',
  'bench',
];
const MAY_IMPORT = {
  protocol: [],
  runtime: ['protocol'],
  state: ['protocol'],
  // client/: the KV table writes its rows with the client's pipelined batch publisher.
  tables: ['protocol', 'client'],
  archive: ['protocol'],
  client: ['protocol'],
  // client/: the coordinator creates and deletes repartition topics, the worker's topic sinks
  // publish with the client's producer (DESIGN "Keys, stages and several inputs").
  worker: ['protocol', 'runtime', 'state', 'tables', 'archive', 'client'],
  coordinator: ['protocol', 'runtime', 'tables', 'archive', 'client'],
  cli: ['protocol', 'runtime', 'state', 'tables', 'archive', 'client', 'worker', 'coordinator'],
};
const folderRules = Object.entries(MAY_IMPORT).map(([folder, allowed]) => ({
  files: [`${folder}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: FOLDERS.filter((other) => other !== folder && !allowed.includes(other)).map((other) => ({
          group: [`**/${other}/**`, `**/${other}/*`],
          message: `${folder}/ may import only ${allowed.length ? allowed.map((name) => `${name}/`).join(', ') : 'nothing of ours'} (DESIGN.md, ${folder}/README.md)`,
        })),
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.kappa/**', 'bench/out/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  ...folderRules,
  {
    // The job API is generic over user event types; `any` is its documented default.
    files: ['worker/job.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
