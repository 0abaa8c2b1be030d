// Mutation testing (Stryker): `npm run mutate` runs every module below, one Stryker run each;
// `npm run mutate -- warm-pool` runs one. Not part of `npm test` (minutes per module).
// Each module names the fast tests (no onnxruntime, no Redis) that are meant to kill its mutants:
// Stryker's vitest runner uses worker threads, and a narrow selection keeps a run to minutes.
import { existsSync } from 'node:fs';
import { MODULES } from './test/mutation/modules.mjs';

const module = process.env.MUTATE_MODULE ?? 'errors';
const mod = MODULES[module];
if (!mod) throw new Error(`MUTATE_MODULE=${module} is not one of ${Object.keys(MODULES).join(', ')}`);
// MUTATE_PART names a part of a module run with MUTATE_FILES: its own report, sandbox and
// incremental file (reports/mutation/<module>-<part>.json), so parts can run one after another.
const name = process.env.MUTATE_PART ? `${module}-${process.env.MUTATE_PART}` : module;

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.config.ts', related: false },
  // MUTATE_CHECK=0 skips the TypeScript checker (faster; mutants that would not compile then run
  // and count as killed or survived, so scores are not comparable with checked runs).
  checkers: process.env.MUTATE_CHECK === '0' ? [] : ['typescript'],
  tsconfigFile: 'test/mutation/tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  // MUTATE_FILES (comma-separated, Stryker's `file:line-line` ranges allowed) mutates a part only.
  mutate: process.env.MUTATE_FILES ? process.env.MUTATE_FILES.split(',') : mod.mutate,
  // MUTATE_TESTS (comma-separated) runs another selection, e.g. to measure what older tests caught.
  testFiles: (process.env.MUTATE_TESTS ? process.env.MUTATE_TESTS.split(',') : mod.tests).filter((f) => existsSync(f)),
  concurrency: Number(process.env.MUTATE_CONCURRENCY ?? 1),
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  tempDirName: `.stryker-tmp/${name}`,
  // Other runs' sandboxes and reports stay out of this one's sandbox, so parts can run side by side.
  ignorePatterns: ['/.stryker-tmp', '/reports'],
  // MUTATE_INCREMENTAL=1 reuses the last run's results for mutants whose code and tests did not
  // change (reports/mutation/<module>.incremental.json; reports/ stays out of git).
  incremental: process.env.MUTATE_INCREMENTAL === '1',
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  timeoutMS: 10_000,
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 80, break: null },
};
