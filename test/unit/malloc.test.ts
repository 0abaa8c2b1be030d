import { describe, expect, it } from 'vitest';
import { MALLOC_TUNABLES, mallocReturnsMemory, runAgainForMalloc, withMallocTunables } from '../../runtime/malloc';

describe("brulee serve's run again under glibc's tunables", () => {
  it('runs again once, and only where the process run again would give freed memory back', () => {
    // No GLIBC_TUNABLES: run again with brulee's, and that process does not run again.
    expect(runAgainForMalloc({}, 'linux')).toBe(true);
    expect(runAgainForMalloc(withMallocTunables({}), 'linux')).toBe(false);
    expect(withMallocTunables({}).GLIBC_TUNABLES).toBe(MALLOC_TUNABLES);
    // One's own without a threshold (an empty one: measuring without) is kept: running again would
    // not change it, and that process would run again, and so on (12 processes in 5 s before).
    for (const own of ['', 'glibc.malloc.arena_max=2']) {
      const env = { GLIBC_TUNABLES: own };
      expect(mallocReturnsMemory(env, 'linux')).toBe(false);
      expect(withMallocTunables(env).GLIBC_TUNABLES).toBe(own);
      expect(runAgainForMalloc(env, 'linux')).toBe(false);
    }
    // A threshold set one way or another, or not Linux: nothing to do.
    expect(runAgainForMalloc({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }, 'linux')).toBe(false);
    expect(runAgainForMalloc({ MALLOC_MMAP_THRESHOLD_: '65536' }, 'linux')).toBe(false);
    expect(runAgainForMalloc({}, 'darwin')).toBe(false);
  });
});
