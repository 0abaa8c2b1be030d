/**
 * glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which a
 * model's weights and arena come from the heap and stay in the process once the model is evicted
 * (a worker reached 2.1x its budget above idle that way). A fixed threshold (any value set) keeps
 * large blocks in their own mappings, returned to the OS when freed (issue 12 §4, README).
 *
 * glibc reads it only at process start, so whatever starts a node sets it: `npm start`,
 * `npm test`, the image, `brulee serve`, and the benches' servers (through `withMallocTunables`).
 */
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=131072';

/** This environment gives freed model memory back to the OS (not Linux, or a fixed mmap threshold). */
export function mallocReturnsMemory(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): boolean {
  return platform !== 'linux' || /glibc\.malloc\.mmap_threshold=/.test(env.GLIBC_TUNABLES ?? '') || env.MALLOC_MMAP_THRESHOLD_ !== undefined;
}

/** `env` with brulee's GLIBC_TUNABLES unless it sets its own (an empty one included: a way to measure without). */
export function withMallocTunables<T extends Record<string, string | undefined>>(env: T): T & { GLIBC_TUNABLES: string } {
  return { ...env, GLIBC_TUNABLES: env.GLIBC_TUNABLES ?? MALLOC_TUNABLES };
}
