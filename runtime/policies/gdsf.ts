import { PositionMemo } from './memo';
import { OrderedHeap } from './ordered';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest } from './types';

/**
 * Greedy-Dual-Size-Frequency as used by FaaSCache (Fuerst & Sharma, ASPLOS'21):
 *
 *     priority(f) = clock + frequency(f) × cost(f) / size(f)
 *
 * where cost is the load time, frequency the hits since the model was loaded, and `clock` is
 * raised to the priority of each evicted entry, so entries that stay idle age relative to new ones.
 */
export function gdsf(): EvictionPolicy {
  let clock = 0;
  // Priority of each loaded model (`p`; undefined once evicted). A key keeps its box until it is
  // forgotten, so candidates' boxes can be found by position (`PositionMemo`, cleared then).
  const priority = new Map<string, { p: number | undefined }>();
  const byPosition = new PositionMemo((key) => priority.get(key));
  const score = (e: EntryFacts) => clock + (e.hits * e.loadMs) / Math.max(1, e.sizeBytes);
  // The loaded models by priority as the hooks set it (lowest first), for `selectAmongLoaded`:
  // kept only from its first call on (built then from its candidates, which are the loaded models),
  // so a caller that never asks (the runtime, or a run with no eviction) pays nothing at the hooks.
  const order = new OrderedHeap();
  let keeping = false;
  const set = (e: EntryFacts) => {
    const p = score(e);
    const box = priority.get(e.key);
    if (box) box.p = p;
    else priority.set(e.key, { p });
    if (keeping) order.set(e, p);
  };
  const pr = (e: EntryFacts) => priority.get(e.key)?.p ?? score(e);
  const reason = (e: EntryFacts) =>
    `lowest GDSF priority ${pr(e).toExponential(3)} (clock ${clock.toExponential(3)}, ${e.hits} hits)`;
  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'gdsf',
    onLoad(e) {
      set(e);
    },
    onAccess(e) {
      set(e);
    },
    onEvict(key) {
      const box = priority.get(key);
      const p = box?.p;
      if (p !== undefined && p > clock) clock = p;
      if (box) box.p = undefined;
      if (keeping) order.remove(key);
    },
    forget(key) {
      if (keeping) order.forget(key);
      // Gone for good: no box kept (a node where functions come and go would keep one per model).
      if (priority.delete(key)) byPosition.clear();
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = byPosition.at(i, c[i]!.key)?.p ?? score(c[i]!);
      return sel.lowestScored(c, s, req.needBytes, reason);
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    selectAmongLoaded(req: EvictionRequest) {
      if (!keeping) {
        for (const e of req.candidates) order.set(e, pr(e));
        keeping = true;
      }
      return order.lowest(req.needBytes, sel.reasons ? reason : null);
    },
  });
}
