// Mutation testing (Stryker): `npm run mutate` runs every module below, one Stryker run each;
// `npm run mutate -- warm-pool` runs one. Not part of `npm test` (minutes per module).
// Each module names the fast tests (no onnxruntime, no Redis) that are meant to kill its mutants:
// Stryker's vitest runner uses worker threads, and a narrow selection keeps a run to minutes.
import { existsSync } from 'node:fs';
import { MODULES } from './test/mutation/modules.mjs';

const name = process.env.MUTATE_MODULE ?? 'errors';
const mod = MODULES[name];
if (!mod) throw new Error(`MUTATE_MODULE=${name} is not one of ${Object.keys(MODULES).join(', ')}`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.config.ts', related: false },
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  mutate: mod.mutate,
  // MUTATE_TESTS (comma-separated) runs another selection, e.g. to measure what older tests caught.
  testFiles: (process.env.MUTATE_TESTS ? process.env.MUTATE_TESTS.split(',') : mod.tests).filter((f) => existsSync(f)),
  concurrency: Number(process.env.MUTATE_CONCURRENCY ?? 1),
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  tempDirName: `.stryker-tmp/${name}`,
  incremental: false,
  timeoutMS: 10_000,
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 80, break: null },
};
