import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';
import { withMallocTunables } from './runtime/malloc';

// The test files' processes (forked from this one) start with glibc's mmap threshold, as nodes do
// (runtime/malloc.ts): the memory accounting tests measure what a real node holds.
process.env.GLIBC_TUNABLES = withMallocTunables(process.env).GLIBC_TUNABLES;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-redis.ts'],
    // onnxruntime-node is a native addon: run test files in processes, not worker threads.
    pool: 'forks',
    // vitest's default in a run is cpus - 1: one file at a time on 2 cores. Most integration files
    // wait on Redis, child processes and timers more than they compute (a serial run kept about
    // 0.8 of a core busy), so a second file uses the idle core.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
