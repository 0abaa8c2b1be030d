import { belady } from '../runtime/policies/belady';
import { cremebruleeOracle } from '../runtime/policies/cremebrulee-oracle';
import { cremebruleePlus } from '../runtime/policies/cremebrulee-plus';
import { createPolicy, CREMEBRULEE_PLUS_TUNED, RUNTIME_POLICIES, type RuntimePolicyName } from '../runtime/policies/index';
import type { EvictionPolicy, PolicyOptions } from '../runtime/policies/types';

/** Oracles: they see the future, so they run in the simulator only. */
export const ORACLE_POLICIES = ['belady', 'cremebrulee-oracle'] as const;
/** Every policy the simulator runs: the runtime's own, plus the oracles. */
export const SIM_POLICIES = [...RUNTIME_POLICIES, ...ORACLE_POLICIES] as const;
export type SimPolicyName = (typeof SIM_POLICIES)[number];
/** What a sweep runs: a policy, or `bound`, the offline lower bound on load delay (`bound.ts`). */
export type SweepPolicyName = SimPolicyName | 'bound' | 'offline';

export interface SimPolicyOptions extends PolicyOptions {
  /** Look-ahead of `cremebrulee-oracle`, ms. @default 600000 */
  oracleHorizonMs?: number;
  /** Gap-average weight of `cremebrulee-plus`. @default 0.3 */
  alpha?: number;
  /** `cremebrulee-plus` prefetches into free memory (the `prewarm` hook). @default true */
  prefetch?: boolean;
}

export function isSimPolicy(name: string): name is SimPolicyName {
  return (SIM_POLICIES as readonly string[]).includes(name);
}

export function isOracle(name: string): boolean {
  return (ORACLE_POLICIES as readonly string[]).includes(name);
}

/** A fresh policy instance for one run. */
export function createSimPolicy(name: SimPolicyName, opts: SimPolicyOptions = {}): EvictionPolicy {
  switch (name) {
    case 'belady':
      return belady();
    case 'cremebrulee-oracle':
      return cremebruleeOracle(opts.oracleHorizonMs);
    case 'cremebrulee-plus':
      // As the runtime runs it, unless the options say otherwise.
      return cremebruleePlus({
        ...CREMEBRULEE_PLUS_TUNED,
        ...(opts.alpha !== undefined ? { alpha: opts.alpha } : {}),
        ...(opts.prefetch !== undefined ? { prefetch: opts.prefetch } : {}),
      });
    default:
      return createPolicy(name as RuntimePolicyName, opts);
  }
}
