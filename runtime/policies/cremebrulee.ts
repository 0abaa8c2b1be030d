import { Selection } from './select';
import { NONE, SCORE, ShareOrder } from './share-order';
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
  return utilityAt(e.popularity, e);
}

/** `utility` of an entry whose popularity is `share`. */
function utilityAt(share: number, e: Pick<EntryFacts, 'loadMs' | 'sizeBytes'>): number {
  return (share * e.loadMs) / Math.max(1, e.sizeBytes);
}

export function cremebrulee(): EvictionPolicy {
  const sel = new Selection();
  const reason = (e: EntryFacts) =>
    `utility ${utility(e).toExponential(3)} lowest (popularity ${e.popularity.toFixed(4)}, load ${e.loadMs.toFixed(1)} ms, ${e.sizeBytes} B)`;
  // For `selectAmongLoadedByShare`: a group per load time and size, where utility cannot fall as
  // the share rises (x × l, l >= 0, and x / b, b >= 1, are non-decreasing in x, rounded or not),
  // so it is its own lower bound (none for a negative load time).
  const groups = new Map<number, Map<number, number>>();
  let nGroups = 0;
  const group = (e: EntryFacts): number => {
    let bySize = groups.get(e.loadMs);
    if (bySize === undefined) groups.set(e.loadMs, (bySize = new Map()));
    let g = bySize.get(e.sizeBytes);
    if (g === undefined) bySize.set(e.sizeBytes, (g = nGroups++));
    return g;
  };
  const order = new ShareOrder({ group, bound: (e) => (e.loadMs >= 0 ? SCORE : NONE), score: utilityAt });
  const policy: EvictionPolicy = {
    name: 'cremebrulee',
    selectVictims(req: EvictionRequest) {
      // Scores filled in this policy's own loop (see `Selection.lowestScored`).
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = utility(c[i]!);
      return sel.lowestScored(c, s, req.needBytes, reason);
    },
  };
  // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
  return Object.assign(policy, order.hints(sel, reason));
}
