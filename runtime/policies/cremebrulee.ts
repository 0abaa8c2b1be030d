import { Selection } from './select';
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
  return Object.assign(policy, {
    // Simulator speed hint (contract: `SimHints`, sim/hints.ts); the runtime does not use it.
    omitReasons: () => sel.omitReasons(),
  });
}
