// Lint rules. The workflow sandbox must stay deterministic: no Node builtins, no I/O,
// no wall clock and no Math.random in src/workflows (use the workflow API instead).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', '.cache/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after'] }] },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/workflows/**/*.ts', 'src/schemas/**/*.ts', 'src/config/defaults.ts'],
    languageOptions: { globals: {} },
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({ name, message: 'Workflows are deterministic: no Node builtins.' })),
          patterns: [
            { group: ['../activities/*', '../../activities/*'], allowTypeImports: true, message: 'Import activities only as types.' },
            { group: ['dockerode', 'nodemailer', 'pino', 'node-vault', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'], message: 'No I/O clients in the workflow sandbox.' },
          ],
        },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'Use random() from src/workflows/shared/deterministic.ts (the sandbox-seeded PRNG, replay-safe).' },
        { object: 'Date', property: 'now', message: 'Use now() from src/workflows/shared/deterministic.ts (workflow time, replay-safe).' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'No process access in workflows.' },
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'fetch', message: 'No I/O in workflows: call an activity.' },
        { name: 'require', message: 'No dynamic requires in workflows.' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'No wall clock in workflows: use now() from src/workflows/shared/deterministic.ts.' },
      ],
    },
  },
);
