import { cremebrulee } from './cremebrulee';
import { cremebruleePlus } from './cremebrulee-plus';
import { gdsf } from './gdsf';
import { lfu } from './lfu';
import { lru } from './lru';
import { random } from './random';
import { ttl } from './ttl';
import type { EvictionPolicy, PolicyOptions } from './types';

export * from './types';
export { utility } from './cremebrulee';

/** Policies the runtime can run (the simulator adds its oracles on top). */
export const RUNTIME_POLICIES = ['cremebrulee', 'cremebrulee-plus', 'lru', 'lfu', 'gdsf', 'ttl', 'random'] as const;
export type RuntimePolicyName = (typeof RUNTIME_POLICIES)[number];

/** Builds a fresh policy instance (each holds its own bookkeeping). */
export function createPolicy(name: RuntimePolicyName, opts: PolicyOptions = {}): EvictionPolicy {
  switch (name) {
    case 'cremebrulee':
      return cremebrulee();
    case 'cremebrulee-plus':
      return cremebruleePlus();
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
  }
}
