import type { NumberedFuture } from './belady';
import { IdSet } from './heap';
import { OrderedHeap } from './ordered';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest, FutureFacts, NumberedEntry, Victim } from './types';

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
  const reason = (e: EntryFacts) => {
    const s = score(e);
    return s >= 0 ? `future utility ${s.toExponential(3)} lowest` : `no use in the next ${horizonMs} ms`;
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
      return sel.lowestScored(c, s, req.needBytes, reason);
    },
  };

  // For `selectAmongLoaded`, with the caller's model numbers: the loaded models in a heap by
  // `Selection.lowestScored`'s order, kept from the first call on (built then from its candidates).
  // A model is *settled* once the horizon's end (now + horizonMs) has reached its last use: from
  // then on its uses within the horizon are all its uses not yet served, and with none left its
  // next use is Infinity (score -Infinity), so its score moves only when one of its calls is
  // served, which comes with a hook of it (as for belady: a model hooked since the last request is
  // stale, scored again at the next one). Requests come in order of time, so a settled model stays
  // settled. While some loaded model is not settled (the horizon still inside the trace) the
  // request is answered by `selectVictims`; on a busy node that is the first few of its requests.
  let heap = new OrderedHeap();
  let keeping = false;
  /** The horizon's end at the last request answered while keeping. */
  let lastLim = -Infinity;
  let loaded = new Uint8Array(0);
  let entries: EntryFacts[] = [];
  /** Loaded models hooked since the last request: scored again at the next one. */
  const stale = new IdSet();
  /** Loaded models (as of their listing) not settled when last looked at. */
  const unsettled = new IdSet();
  /** Scores loaded model i now, and lists it if it is not settled at `lim`. */
  const place = (i: number, fut: NumberedFuture, lim: number): void => {
    const e = entries[i]!;
    heap.set(e, scoreOf(e, fut));
    if (!(fut.lastUseOf!(i) <= lim)) unsettled.add(i);
  };
  policy.onLoad = (e) => {
    if (!keeping) return;
    const i = (e as NumberedEntry).idx;
    loaded[i] = 1;
    entries[i] = e;
    stale.add(i);
  };
  policy.onAccess = (e) => {
    if (keeping) stale.add((e as NumberedEntry).idx);
  };
  const selectAmongLoaded = (req: EvictionRequest): Victim[] => {
    const fut = req.future as NumberedFuture | undefined;
    if (!numbered || fut?.usesWithinOf === undefined || fut.nextUseOf === undefined || fut.lastUseOf === undefined) return policy.selectVictims(req);
    future = fut;
    now = req.now;
    const lim = now + horizonMs;
    // (Time going back would unsettle models: start again.)
    if (lim < lastLim) keeping = false;
    lastLim = lim;
    if (!keeping) {
      keeping = true;
      heap = new OrderedHeap();
      heap.useNumbers();
      loaded.fill(0);
      unsettled.clear();
      stale.clear();
      for (const e of req.candidates) {
        const i = (e as NumberedEntry).idx;
        loaded[i] = 1;
        entries[i] = e;
        place(i, fut, lim);
      }
    } else {
      for (let k = 0; k < stale.size; k++) {
        const i = stale.items[k]!;
        if (loaded[i] !== 0) place(i, fut, lim);
      }
      stale.clear();
    }
    // Those settled since they were listed are scored again (their score was the horizon's then);
    // backwards, so a deletion moves only members already looked at.
    for (let k = unsettled.size - 1; k >= 0; k--) {
      const i = unsettled.items[k]!;
      if (loaded[i] === 0) unsettled.delete(i);
      else if (fut.lastUseOf(i) <= lim) {
        unsettled.delete(i);
        heap.set(entries[i]!, scoreOf(entries[i]!, fut));
      }
    }
    if (unsettled.size > 0) return policy.selectVictims(req);
    return heap.lowest(req.needBytes, sel.reasons ? reason : null);
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    numberModels(all: readonly string[]): boolean {
      const n = all.length;
      numbered = true;
      loaded = new Uint8Array(n);
      entries = new Array<EntryFacts>(n);
      return true;
    },
    onEvictNumber(i: number): void {
      if (!keeping) return;
      loaded[i] = 0;
      heap.removeNumber(i);
    },
    selectAmongLoaded,
  });
}
