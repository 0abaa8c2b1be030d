import { IdSet } from './heap';
import { HeapFront } from './ordered';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest, FutureFacts, NumberedEntry, Victim } from './types';

/** The simulator's future facts, which also answer by model number (sim/engine.ts `FutureIndex`). */
export type NumberedFuture = FutureFacts & {
  nextUseOf?(model: number): number;
  usesWithinOf?(model: number, now: number, horizonMs: number): number;
  /** The time of the model's last use (-Infinity if none). */
  lastUseOf?(model: number): number;
};

/**
 * Belady's MIN (Belady, "A study of replacement algorithms for a virtual-storage computer", IBM
 * Systems Journal 1966): evict the entry whose next use is farthest in the future. Optimal in
 * misses when all entries have one size; with mixed sizes and costs it is a strong oracle, not
 * the optimum. Needs `EvictionRequest.future`, so it runs in the simulator only.
 */
export function belady(): EvictionPolicy {
  const sel = new Selection();
  let future: FutureFacts | undefined;
  let now = 0;
  const reason = (e: EntryFacts) => {
    const next = future!.nextUse(e.key, now);
    return `next use farthest away (${next === Infinity ? 'never' : `at ${Math.round(next)} ms`})`;
  };
  const needFuture = (req: EvictionRequest): FutureFacts => {
    if (!req.future) throw new Error('belady needs future facts (EvictionRequest.future): it is a simulator-only oracle');
    return req.future;
  };
  const policy: EvictionPolicy = {
    name: 'belady',
    selectVictims(req) {
      future = needFuture(req);
      now = req.now;
      // Farthest next use first: ascending by the negated next use.
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = -future.nextUse(c[i]!.key, req.now);
      return sel.lowestScored(c, s, req.needBytes, reason);
    },
  };

  // For `selectAmongLoaded`, with the caller's model numbers: the loaded models in a heap by
  // `Selection.lowestScored`'s order (negated next use, then last use, then key), kept from the
  // first call on (built then from its candidates, the loaded models). A model's next use not yet
  // served moves only when one of its calls is served, which comes with a hook of it (its
  // `onAccess`, or its `onLoad` after the calls that waited for the load): a model hooked since the
  // last request is listed as stale and placed by its next use at the next request, before the
  // order is read (the call served right after its `onAccess` has moved it by then).
  let keys: readonly string[] = [];
  let numbered = false;
  let keeping = false;
  let score = new Float64Array(0);
  let lastUsed = new Float64Array(0);
  let sizes = new Float64Array(0);
  let entries: EntryFacts[] = [];
  /** Loaded (onLoad, not evicted since). */
  let loaded = new Uint8Array(0);
  let heap = new Int32Array(0);
  /** Each model's place in `heap`, -1 when not in it. */
  let pos = new Int32Array(0);
  let size = 0;
  /** Loaded models hooked since the last request: placed again at the next one. */
  const stale = new IdSet();
  const before = (a: number, b: number): boolean => {
    const sa = score[a]!;
    const sb = score[b]!;
    if (sa < sb) return true;
    if (sa > sb) return false;
    const la = lastUsed[a]!;
    const lb = lastUsed[b]!;
    if (la < lb) return true;
    if (la > lb) return false;
    return keys[a]! < keys[b]!;
  };
  const up = (at: number): void => {
    const x = heap[at]!;
    while (at > 0) {
      const p = (at - 1) >> 1;
      const y = heap[p]!;
      if (!before(x, y)) break;
      heap[at] = y;
      pos[y] = at;
      at = p;
    }
    heap[at] = x;
    pos[x] = at;
  };
  const down = (at: number): void => {
    const x = heap[at]!;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= size) break;
      const c = l + 1 < size && before(heap[l + 1]!, heap[l]!) ? l + 1 : l;
      const y = heap[c]!;
      if (!before(y, x)) break;
      heap[at] = y;
      pos[y] = at;
      at = c;
    }
    heap[at] = x;
    pos[x] = at;
  };
  /** Model i's place by its next use now (put in the heap if it is not). */
  const place = (i: number, fut: NumberedFuture): void => {
    score[i] = -fut.nextUseOf!(i);
    lastUsed[i] = entries[i]!.lastUsedAt;
    let at = pos[i]!;
    if (at < 0) {
      at = size++;
      heap[at] = i;
      pos[i] = at;
    }
    up(at);
    down(pos[i]!);
  };
  const removeAt = (i: number): void => {
    const at = pos[i]!;
    pos[i] = -1;
    const last = heap[--size]!;
    if (last !== i) {
      heap[at] = last;
      pos[last] = at;
      up(at);
      down(pos[last]!);
    }
  };
  const front = new HeapFront((a, b) => before(heap[a]!, heap[b]!));
  /** The models in heap order until their sizes cover `needBytes`. */
  const lowest = (needBytes: number): Victim[] => {
    const victims: Victim[] = [];
    front.start(size);
    let freed = 0;
    for (let at = front.next(); at >= 0 && !(freed >= needBytes); at = front.next()) {
      const i = heap[at]!;
      victims.push({ key: keys[i]!, reason: sel.reasons ? reason(entries[i]!) : '', idx: i } as Victim);
      freed += sizes[i]!;
    }
    return victims;
  };
  const evicted = (i: number): void => {
    loaded[i] = 0;
    if (pos[i]! >= 0) removeAt(i);
  };
  policy.onLoad = (e) => {
    if (!keeping) return;
    const i = (e as NumberedEntry).idx;
    loaded[i] = 1;
    entries[i] = e;
    sizes[i] = e.sizeBytes;
    stale.add(i);
  };
  policy.onAccess = (e) => {
    if (keeping) stale.add((e as NumberedEntry).idx);
  };

  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    numberModels(all: readonly string[]): boolean {
      const n = all.length;
      keys = all;
      numbered = true;
      score = new Float64Array(n);
      lastUsed = new Float64Array(n);
      sizes = new Float64Array(n);
      entries = new Array<EntryFacts>(n);
      loaded = new Uint8Array(n);
      heap = new Int32Array(n);
      pos = new Int32Array(n).fill(-1);
      return true;
    },
    onEvictNumber(i: number): void {
      if (keeping) evicted(i);
    },
    selectAmongLoaded(req: EvictionRequest): Victim[] {
      const fut = needFuture(req) as NumberedFuture;
      if (!numbered || fut.nextUseOf === undefined) return policy.selectVictims(req);
      future = fut;
      now = req.now;
      if (!keeping) {
        keeping = true;
        for (const e of req.candidates) {
          const i = (e as NumberedEntry).idx;
          loaded[i] = 1;
          entries[i] = e;
          sizes[i] = e.sizeBytes;
          place(i, fut);
        }
      } else {
        for (let k = 0; k < stale.size; k++) {
          const i = stale.items[k]!;
          if (loaded[i] !== 0) place(i, fut);
        }
      }
      stale.clear();
      return lowest(req.needBytes);
    },
  });
}
