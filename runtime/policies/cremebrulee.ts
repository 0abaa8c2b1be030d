import { ByRates, KEY_TINY, Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest } from './types';

/**
 * CremeBrulee (Ogden et al., "Many Models at the Edge: Scaling Deep Inference via Model-Level
 * Caching", ACSOS'21): evict the model of lowest utility first,
 *
 *     utility(f) = popularity(f) × loadCost(f) / residentBytes(f)
 *
 * i.e. keep what is popular and expensive to reload per byte it holds. Frees only what is needed.
 */
export function utility(e: Pick<EntryFacts, 'popularity' | 'loadMs' | 'sizeBytes'>): number {
  return (e.popularity * e.loadMs) / Math.max(1, e.sizeBytes);
}

export function cremebrulee(): EvictionPolicy {
  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'cremebrulee',
    selectVictims(req: EvictionRequest) {
      // Scores filled in this policy's own loop (see `Selection.lowestScored`).
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = utility(c[i]!);
      return sel.lowestScored(c, s, req.needBytes, (e) =>
        `utility ${utility(e).toExponential(3)} lowest (popularity ${e.popularity.toFixed(4)}, load ${e.loadMs.toFixed(1)} ms, ${e.sizeBytes} B)`,
      );
    },
  };
  const byRates = new ByRates(
    sel,
    policy,
    (e, popularity) => (popularity * e.loadMs) / Math.max(1, e.sizeBytes), // (`utility`, by its operations)
    (c, keys, pop) => {
      // The utilities times the total, from the rates as approximated (within 2^-33, and a few
      // roundings: within 2^-30 of the total × the exact utility).
      let maxLoad = 0;
      let low = Infinity;
      let tiny = false;
      for (let i = 0; i < c.length; i++) {
        const e = c[i]!;
        const l = e.loadMs;
        maxLoad = Math.max(maxLoad, l);
        const x = (pop.approxRate(e.idx) * l) / Math.max(1, e.sizeBytes);
        keys[i] = x;
        low = Math.min(low, x);
        if (x < KEY_TINY && x !== 0) tiny = true;
      }
      // (A load time past 1e50 could make a popularity's quotient subnormal, off by more than a
      // few roundings; NaN too.)
      return tiny || !(maxLoad <= 1e50) ? NaN : low;
    },
  );
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    omitReasons: () => sel.omitReasons(),
    ...byRates.hints,
  });
}
