import { OrderedList } from './ordered';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest } from './types';

/** Least recently used: evict the entry whose last use is oldest. */
export function lru(): EvictionPolicy {
  const sel = new Selection();
  // The loaded models by last use as the hooks report it (oldest first), for `selectAmongLoaded`:
  // kept only from its first call on (built then from its candidates, which are the loaded models),
  // so a caller that never asks (the runtime, or a run with no eviction) pays nothing at the hooks.
  const order = new OrderedList();
  let keeping = false;
  let now = 0;
  const reason = (e: EntryFacts) => `least recently used (idle ${Math.round(now - e.lastUsedAt)} ms)`;
  const policy: EvictionPolicy = {
    name: 'lru',
    onLoad(e) {
      if (keeping) order.set(e, e.lastUsedAt);
    },
    onAccess(e) {
      if (keeping) order.set(e, e.lastUsedAt);
    },
    onEvict(key) {
      if (keeping) order.remove(key);
    },
    forget(key) {
      if (keeping) order.forget(key);
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = c[i]!.lastUsedAt;
      now = req.now;
      return sel.lowestScored(c, s, req.needBytes, reason);
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    selectAmongLoaded(req: EvictionRequest) {
      if (!keeping) {
        for (const e of req.candidates) order.set(e, e.lastUsedAt);
        keeping = true;
      }
      now = req.now;
      return order.lowest(req.needBytes, sel.reasons ? reason : null);
    },
    // Entries carry the caller's numbers: the order finds its nodes by them, and victims carry them.
    numberModels(): boolean {
      if (keeping) return false; // (nodes made by key already)
      order.useNumbers();
      return true;
    },
    onEvictNumber(i: number): void {
      if (keeping) order.removeNumber(i);
    },
  });
}
