import { PositionMemo } from './memo';
import { OrderedHeap } from './ordered';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest, NumberedEntry } from './types';

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
  // With the caller's numbers (the simulator's `numberModels`): the boxes by number instead (null until then).
  let boxes: ({ p: number | undefined } | undefined)[] | null = null;
  let numberOf: Map<string, number> | undefined; // (for `forget`, by key)
  const boxOf = (e: EntryFacts) => (boxes !== null ? boxes[(e as NumberedEntry).idx] : priority.get(e.key));
  const score = (e: EntryFacts) => clock + (e.hits * e.loadMs) / Math.max(1, e.sizeBytes);
  // The loaded models by priority as the hooks set it (lowest first), for `selectAmongLoaded`:
  // kept only from its first call on (built then from its candidates, which are the loaded models),
  // so a caller that never asks (the runtime, or a run with no eviction) pays nothing at the hooks.
  const order = new OrderedHeap();
  let keeping = false;
  const set = (e: EntryFacts) => {
    const p = score(e);
    const box = boxOf(e);
    if (box) box.p = p;
    else if (boxes !== null) boxes[(e as NumberedEntry).idx] = { p };
    else priority.set(e.key, { p });
    if (keeping) order.set(e, p);
  };
  const pr = (e: EntryFacts) => boxOf(e)?.p ?? score(e);
  /** An eviction: the clock rises to the model's priority, which it then has no more. */
  const evicted = (box: { p: number | undefined } | undefined) => {
    const p = box?.p;
    if (p !== undefined && p > clock) clock = p;
    if (box) box.p = undefined;
  };
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
      evicted(priority.get(key));
      if (keeping) order.remove(key);
    },
    forget(key) {
      if (keeping) order.forget(key);
      // Gone for good: no box kept (a node where functions come and go would keep one per model).
      if (priority.delete(key)) byPosition.clear();
      const i = numberOf?.get(key);
      if (i !== undefined) boxes![i] = undefined;
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      if (boxes !== null) for (let i = 0; i < c.length; i++) s[i] = boxes[(c[i] as NumberedEntry).idx]?.p ?? score(c[i]!);
      else for (let i = 0; i < c.length; i++) s[i] = byPosition.at(i, c[i]!.key)?.p ?? score(c[i]!);
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
    // Entries carry the caller's numbers: boxes and the order's nodes by number, victims carry them.
    numberModels(keys: readonly string[]): boolean {
      if (priority.size > 0) return false; // (a key was seen: by key from then on)
      boxes = [];
      numberOf = new Map(keys.map((k, i) => [k, i]));
      order.useNumbers();
      return true;
    },
    onEvictNumber(i: number): void {
      evicted(boxes![i]);
      if (keeping) order.removeNumber(i);
    },
  });
}
