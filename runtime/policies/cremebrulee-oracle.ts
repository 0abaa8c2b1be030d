import type { NumberedFuture } from './belady';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, FutureFacts, NumberedEntry } from './types';

/**
 * CremeBrulee with perfect knowledge of popularity (the ACSOS'21 paper's oracle variant): the same
 *
 *     utility(f) = popularity(f) × loadCost(f) / residentBytes(f)
 *
 * but popularity(f) is f's count of invocations in the next `horizonMs` (from
 * `EvictionRequest.future`) instead of its decayed past share. Entries with no use inside the
 * horizon go first, farthest next use first. Simulator only.
 */
export function cremebruleeOracle(horizonMs = 600_000): EvictionPolicy {
  if (!(horizonMs > 0)) throw new RangeError(`cremebrulee-oracle: horizonMs must be > 0, got ${horizonMs}`);
  const sel = new Selection();
  // The request being answered (made once, not per request: see `before` in select.ts).
  let future: FutureFacts;
  let now = 0;
  const score = (e: EntryFacts) => {
    const uses = future.usesWithin!(e.key, now, horizonMs);
    return uses > 0 ? (uses * e.loadMs) / Math.max(1, e.sizeBytes) : -(future.nextUse(e.key, now) - now);
  };
  // `score` by the caller's model numbers (the simulator's `numberModels`), when its future answers by number.
  let numbered = false;
  const scoreOf = (e: EntryFacts, f: NumberedFuture) => {
    const i = (e as NumberedEntry).idx;
    const uses = f.usesWithinOf!(i, now, horizonMs);
    return uses > 0 ? (uses * e.loadMs) / Math.max(1, e.sizeBytes) : -(f.nextUseOf!(i) - now);
  };
  const policy: EvictionPolicy = {
    name: 'cremebrulee-oracle',
    selectVictims(req) {
      if (!req.future?.usesWithin) throw new Error('cremebrulee-oracle needs future facts with usesWithin: it is a simulator-only oracle');
      future = req.future;
      now = req.now;
      const c = req.candidates;
      const s = sel.scores(c.length);
      const f = future as NumberedFuture;
      if (numbered && f.usesWithinOf !== undefined) for (let i = 0; i < c.length; i++) s[i] = scoreOf(c[i]!, f);
      else for (let i = 0; i < c.length; i++) s[i] = score(c[i]!);
      return sel.lowestScored(c, s, req.needBytes, (e) => {
        const s = score(e);
        return s >= 0 ? `future utility ${s.toExponential(3)} lowest` : `no use in the next ${horizonMs} ms`;
      });
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    numberModels: () => (numbered = true),
    onEvictNumber: () => {},
  });
}
