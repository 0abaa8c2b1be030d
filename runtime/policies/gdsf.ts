import { lowestFirst, type EntryFacts, type EvictionPolicy } from './types';

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
  const priority = new Map<string, number>();
  const score = (e: EntryFacts) => clock + (e.hits * e.loadMs) / Math.max(1, e.sizeBytes);
  return {
    name: 'gdsf',
    usesPopularity: false,
    onLoad(e) {
      priority.set(e.key, score(e));
    },
    onAccess(e) {
      priority.set(e.key, score(e));
    },
    onEvict(key) {
      const p = priority.get(key);
      if (p !== undefined && p > clock) clock = p;
      priority.delete(key);
    },
    selectVictims(req) {
      const pr = (e: EntryFacts) => priority.get(e.key) ?? score(e);
      return lowestFirst(req.candidates, req.needBytes, pr, (e) =>
        `lowest GDSF priority ${pr(e).toExponential(3)} (clock ${clock.toExponential(3)}, ${e.hits} hits)`,
      );
    },
  };
}
