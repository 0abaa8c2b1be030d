import { cremebrulee } from './cremebrulee';
import { cremebruleePlus, type CremeBruleePlusOptions } from './cremebrulee-plus';
import { gdsf } from './gdsf';
import { hybridHistogram } from './hybrid-histogram';
import { lfu } from './lfu';
import { lru } from './lru';
import { random } from './random';
import { ttl } from './ttl';
import type { EvictionPolicy, PolicyOptions } from './types';

export * from './types';
export * from './select';
export { utility } from './cremebrulee';

/** Policies the runtime can run (the simulator adds its oracles on top). */
export const RUNTIME_POLICIES = ['cremebrulee', 'cremebrulee-plus', 'lru', 'lfu', 'gdsf', 'ttl', 'random', 'hybrid-histogram'] as const;
export type RuntimePolicyName = (typeof RUNTIME_POLICIES)[number];

/**
 * `cremebrulee-plus` as the runtime and the simulator run it: eviction by the recency-aware
 * utility, plus prefetching into free memory (the warm pool's `prefetch`, the simulator's
 * `prewarm` calls). Under scarce memory (less than 1.5x the hottest function's model), it
 * prefetches at every check every function that is due (idle for 0.65 of its average gap) and
 * fits. Chosen on the first half of sample100 (sim/README.md).
 */
export const CREMEBRULEE_PLUS_TUNED = {
  prefetch: true,
  scarce: { below: 1.5, prefetchCount: Infinity, prefetchEveryMs: 0, prefetchDue: 0.65 },
} as const satisfies CremeBruleePlusOptions;

/** Builds a fresh policy instance (each holds its own bookkeeping). */
export function createPolicy(name: RuntimePolicyName, opts: PolicyOptions = {}): EvictionPolicy {
  switch (name) {
    case 'cremebrulee':
      return cremebrulee();
    case 'cremebrulee-plus':
      return cremebruleePlus(CREMEBRULEE_PLUS_TUNED);
    case 'lru':
      return lru();
    case 'lfu':
      return lfu();
    case 'gdsf':
      return gdsf();
    case 'ttl':
      return ttl(opts.ttlMs);
    case 'random':
      return random(opts.seed);
    case 'hybrid-histogram':
      return hybridHistogram(opts.ttlMs !== undefined ? { fixedKeepAliveMs: opts.ttlMs } : {});
  }
}
