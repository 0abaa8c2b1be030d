import { grown } from './heap';
import { PositionMemo } from './memo';
import { LoadedFacts } from './plus-select';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest, NumberedEntry, Victim } from './types';

export interface CremeBruleePlusOptions {
  /** Weight of the newest gap in the moving average of a function's inter-arrival gaps. @default 0.3 */
  alpha?: number;
  /**
   * Weight of CremeBrulee's refreshed popularity share in the rate:
   * rate = (1 − w) × recency rate + w × popularity × (rate of all invocations). @default 0
   */
  popularityWeight?: number;
  /**
   * Prefetch into free memory through the `prewarm` hook (the simulator and the runtime's warm
   * pool call it): the function of highest utility that is not loaded and fits in the free
   * memory. @default false
   */
  prefetch?: boolean;
  /** Most models named per prefetch check, best first (the caller loads those that fit). @default 1 */
  prefetchCount?: number;
  /** Prefetch checks at most this often (the caller may ask more often), ms. @default 5000 */
  prefetchEveryMs?: number;
  /**
   * How prefetch candidates are ranked: `utility` (per byte, as eviction ranks) or `saving`
   * (rate × load time: what a hit saves, since free memory costs nothing). @default 'utility'
   */
  prefetchBy?: 'utility' | 'saving';
  /**
   * Prefetch a function only once it is "due": idle for at least this fraction of its average
   * gap (its next call is expected soon), so what was just used is not reloaded at once. @default 0
   */
  prefetchDue?: number;
  /**
   * Floor the recency rate at this fraction of the function's lifetime rate (its calls since
   * first seen / time since), so a rarely but steadily used function keeps some rank. @default 0
   */
  lifetimeFloor?: number;
  /**
   * Rate of a function seen only once: `popularity` (CremeBrulee's refreshed share, scaled below
   * any learned rate; decays with idle time, so these rank by recency, whatever their size) or
   * `window` (one call in the time the policy has watched: 1 / (now − first invocation seen), at
   * or below every learned rate, equal for all of them, so they rank by load cost per byte, then
   * by last use, as GDSF ranks entries with one hit). `window` (fifth session) keeps one-off
   * calls of large models from outranking small models that are called again. @default 'window'
   */
  oneSighting?: 'popularity' | 'window';
  /**
   * Drop victims the eviction does not need: lowest utility first can take several small entries
   * and then a large one that alone would have freed enough; keep (not evict) such earlier
   * victims, highest utility first, as long as what is left still frees `needBytes`.
   * `vsPrefetch` (with `prefetch`; tried, not the default): keep such a victim only if its utility
   * is at least that of the best function prefetching could load into the memory left free.
   * @default true
   */
  trimVictims?: boolean | 'vsPrefetch';
  /**
   * Prefetch settings for scarce memory: while the memory the policy has seen (loaded + free, its
   * running maximum) is below `below` × the model size of the hottest function (smallest average
   * gap), these replace the prefetch settings above. @default none
   */
  scarce?: {
    below: number;
    prefetchCount?: number;
    prefetchEveryMs?: number;
    prefetchBy?: 'utility' | 'saving' | 'soonest';
    prefetchDue?: number;
    /**
     * Whether `trimVictims` applies while memory is scarce (where free memory is the room the
     * due functions are prefetched into). @default false
     */
    trimVictims?: boolean;
  };
}

/**
 * Victims (lowest utility first) without those not needed: walking back from the last but one
 * (highest utility), drop a victim while the others still free `needBytes`. Order kept.
 */
function trimmed(
  victims: Victim[],
  /** The candidates, and the victims' places among them (`picked[i]` is victim i's). */
  candidates: readonly EntryFacts[],
  picked: readonly number[],
  needBytes: number,
  worthKeeping?: (e: EntryFacts, spareBytes: number) => boolean,
): Victim[] {
  let freed = 0;
  for (let i = 0; i < picked.length; i++) freed += candidates[picked[i]!]!.sizeBytes;
  if (!(freed >= needBytes)) return victims;
  const spare = freed - needBytes;
  let dropped: boolean[] | undefined; // made only when a victim is dropped (rarely)
  for (let i = victims.length - 2; i >= 0; i--) {
    const e = candidates[picked[i]!]!;
    const b = e.sizeBytes;
    if (freed - b >= needBytes && (worthKeeping === undefined || worthKeeping(e, spare))) {
      (dropped ??= [])[i] = true;
      freed -= b;
    }
  }
  return dropped === undefined ? victims : victims.filter((_, i) => dropped[i] !== true);
}

/**
 * `trimmed` for victims whose sizes are `sizes` (in eviction order), keeping every one worth it:
 * `victims` (the caller's own array) is compacted in place.
 */
function trimmedBySize(victims: Victim[], sizes: Float64Array, needBytes: number, drop: Uint8Array): Victim[] {
  const n = victims.length;
  let freed = 0;
  for (let i = 0; i < n; i++) freed += sizes[i]!;
  if (!(freed >= needBytes)) return victims;
  // Walking back from the last but one, drop a victim while the others still free needBytes.
  let dropped = 0;
  for (let i = n - 2; i >= 0; i--) {
    const b = sizes[i]!;
    drop[i] = 0;
    if (freed - b >= needBytes) {
      drop[i] = 1;
      dropped++;
      freed -= b;
    }
  }
  if (dropped === 0) return victims;
  let k = 0;
  for (let i = 0; i < n - 1; i++) if (drop[i] === 0) victims[k++] = victims[i]!;
  victims[k++] = victims[n - 1]!;
  while (victims.length > k) victims.pop(); // (quicker than setting the length)
  return victims;
}

/** What the policy knows of one function. */
interface Fn {
  key: string;
  /** Last invocation seen, or NaN. */
  last: number;
  /** Moving average of inter-arrival gaps, or NaN until two invocations. */
  gap: number;
  // For prefetching: the facts last reported, and whether it is loaded.
  sizeBytes: number;
  loadMs: number;
  popularity: number;
  lastUsedAt: number;
  loaded: boolean;
  /** Invocations and first sighting (for `lifetimeFloor`). */
  calls: number;
  first: number;
  /**
   * While not loaded and with a learned gap: 0 (else -1), its size group (`bySize`; its place there
   * is found from its bound), and its utility's upper bound `(1 / max(gap, 1)) × loadMs / max(1,
   * sizeBytes)` (none of which changes while it is not loaded).
   */
  boundAt: number;
  /** Its place in `absent` while it is there (not loaded since it was evicted), else -1. */
  absentAt: number;
  bound: number;
  group: SizeGroup | undefined;
  /** Its number (records are numbered as first seen), the index of its facts in `LoadedFacts`. */
  id: number;
  /** The caller's number for its model (`numberModels`), or -1. */
  num: number;
}

/**
 * The functions not loaded since their eviction (`absent`): add and delete in O(1), by the place
 * each keeps (`Fn.absentAt`; a `Set` of objects spent most of an eviction's hook hashing). Not in
 * any order: every reader takes a minimum, a maximum, or the best by utility with ties by key.
 */
class AbsentList {
  readonly fns: Fn[] = [];
  add(f: Fn): void {
    if (f.absentAt >= 0) return;
    f.absentAt = this.fns.length;
    this.fns.push(f);
  }
  delete(f: Fn): boolean {
    const at = f.absentAt;
    if (at < 0) return false;
    const last = this.fns.pop()!;
    if (last !== f) {
      this.fns[at] = last;
      last.absentAt = at;
    }
    f.absentAt = -1;
    return true;
  }
}

/** Functions not loaded whose models have one size, highest utility bound first. */
interface SizeGroup {
  readonly sizeBytes: number;
  /** Their numbers (`Fn.id`) and bounds (`Fn.bound`), `n` of each (typed: shifted without write barriers). */
  ids: Int32Array;
  bounds: Float64Array;
  n: number;
}

/**
 * CremeBrulee+ : CremeBrulee's utility with a per-function, recency-aware rate in place of the
 * periodically refreshed popularity share,
 *
 *     utility(f) = rate(f) × loadCost(f) / residentBytes(f),
 *     rate(f)    = 1 / max(gap(f), now − lastUse(f))
 *
 * where gap(f) is an exponential moving average of f's inter-arrival gaps, kept across evictions
 * (learned from the invocations the policy has seen: each load or hit). A function that has gone
 * quiet for longer than its usual gap loses rate at once, not at the next popularity refresh, and
 * a timer-like function keeps its rate between calls. Until a function has two invocations, its
 * rate is one call in the time the policy has watched (option `oneSighting`). A miss evicts the
 * lowest utilities first, then keeps those a later victim made unnecessary (`trimVictims`).
 * Online: only the past.
 * Prefetching (an option) goes through `prewarm`, which the simulator and the runtime's warm pool
 * (`WarmPool.prefetch`) both call.
 */
/** What `prewarm` returns when it names nothing (callers only read it; frozen so none can add to it). */
const NO_VICTIMS = Object.freeze([]) as unknown as Victim[];
/** `prefetchEveryMs`'s default, ms. */
const PREFETCH_EVERY_MS = 5000;

export function cremebruleePlus(opts: CremeBruleePlusOptions = {}): EvictionPolicy {
  const alpha = opts.alpha ?? 0.3;
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`cremebrulee-plus: alpha must be in (0, 1], got ${alpha}`);
  const popW = opts.popularityWeight ?? 0;
  if (!(popW >= 0 && popW <= 1)) throw new RangeError(`cremebrulee-plus: popularityWeight must be in [0, 1], got ${popW}`);
  /** One record per function, never replaced; deleted when it is forgotten (`byPosition` cleared then). */
  const fns = new Map<string, Fn>();
  /** The records by number (`Fn.id`); the numbers of forgotten ones serve new ones (`freeIds`). */
  const byId: Fn[] = [];
  const freeIds: number[] = [];
  const facts = new LoadedFacts();
  /** The largest model of any function seen (an upper bound of the hottest one's, for `scarce`). */
  let maxBytes = 0;
  /**
   * The caller numbers its models and passes each entry's number (the simulator's `numberModels`
   * hint, sim/hints.ts): records are found by that number (`byNum`), not by key, and victims carry it.
   */
  let numbered = false;
  const byNum: (Fn | undefined)[] = [];
  const newFn = (e: EntryFacts, num: number): Fn => {
    const f: Fn = { key: e.key, last: NaN, gap: NaN, sizeBytes: e.sizeBytes, loadMs: e.loadMs, popularity: e.popularity, lastUsedAt: e.lastUsedAt, loaded: false, calls: 0, first: NaN, boundAt: -1, absentAt: -1, bound: 0, group: undefined, id: freeIds.pop() ?? byId.length, num };
    fns.set(e.key, f);
    byId[f.id] = f;
    facts.ensure(f.id, e.key, num);
    facts.gap[f.id] = NaN;
    facts.last[f.id] = NaN;
    facts.fix(f.id);
    maxBytes = Math.max(maxBytes, e.sizeBytes);
    return f;
  };
  const fnOf = (e: EntryFacts): Fn => {
    if (numbered) {
      const i = (e as NumberedEntry).idx;
      return byNum[i] ?? (byNum[i] = newFn(e, i));
    }
    return fns.get(e.key) ?? newFn(e, -1);
  };
  const byPosition = new PositionMemo((key) => fns.get(key));
  const floorW = opts.lifetimeFloor ?? 0;
  const oneWindow = (opts.oneSighting ?? 'window') === 'window';
  const trim = (opts.trimVictims ?? true) !== false;
  const trimVsPrefetch = opts.trimVictims === 'vsPrefetch';
  const trimScarce = opts.scarce?.trimVictims === true;
  let firstSeenAt = NaN;
  let seenCount = 0;
  const seen = (f: Fn, t: number) => {
    if (floorW > 0) {
      f.calls++;
      if (Number.isNaN(f.first)) f.first = t;
    }
    const l = f.last;
    if (!Number.isNaN(l) && t >= l) {
      const d = Math.max(1, t - l);
      f.gap = Number.isNaN(f.gap) ? d : f.gap + alpha * (d - f.gap);
    }
    f.last = t;
    facts.gap[f.id] = f.gap;
    facts.last[f.id] = t; // (`fixed` follows the new gap at the `note` after each `seen`)
    if (seenCount++ === 0) firstSeenAt = t;
  };
  /** Rate of a function (f: what the policy knows of it, or undefined; e: the caller's facts). */
  const rateOf = (f: Fn | undefined, e: Pick<EntryFacts, 'popularity' | 'lastUsedAt'>, now: number): number => {
    if (f === undefined || Number.isNaN(f.gap)) {
      // One sighting: one call in the window watched so far, or as CremeBrulee, below any learned rate.
      if (oneWindow && seenCount > 0) return 1 / Math.max(1, now - firstSeenAt);
      return e.popularity * 1e-6;
    }
    const l = Number.isNaN(f.last) ? e.lastUsedAt : f.last;
    let r = 1 / Math.max(f.gap, now - l, 1);
    if (floorW > 0) r = Math.max(r, (floorW * f.calls) / Math.max(1, now - f.first));
    if (popW !== 0) r = (1 - popW) * r + (popW * e.popularity * seenCount) / Math.max(1, now - firstSeenAt);
    return r;
  };
  const utilityOf = (f: Fn | undefined, e: Pick<EntryFacts, 'popularity' | 'lastUsedAt' | 'loadMs' | 'sizeBytes'>, now: number): number =>
    (rateOf(f, e, now) * e.loadMs) / Math.max(1, e.sizeBytes);
  const utility = (e: EntryFacts, now: number) => utilityOf(fns.get(e.key), e, now);

  // Prefetching: the functions not loaded, and the smallest of their models.
  const prefetch = opts.prefetch === true;
  const absent = new AbsentList();
  /**
   * The functions not loaded that have a learned gap, by model size (`bySize`, smallest size
   * first), each size's highest utility bound first (`Fn.bound`): a check for the single best one
   * (the default settings) looks only at the sizes that fit in the free memory, and in each stops
   * at the first function whose bound is below the best utility found, instead of scoring every
   * function not loaded. The same pick: the best is the highest utility among the functions that
   * fit (ties to the smallest key), whatever the order they are looked at in, and a function's
   * utility never exceeds its bound (the same operations on a larger rate).
   */
  const bySize: SizeGroup[] = [];
  const groupOf = new Map<number, SizeGroup>();
  const fastPick = (opts.prefetchCount ?? 1) === 1 && (opts.prefetchBy ?? 'utility') === 'utility' && (opts.prefetchDue ?? 0) === 0 && floorW === 0 && popW === 0;
  const unbound = (f: Fn) => {
    if (f.boundAt < 0) return;
    // Its place: after those of higher bound (a binary search), then among those of equal bound.
    const g = f.group!;
    const { ids, bounds } = g;
    const b = f.bound;
    let lo = 0;
    let hi = g.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bounds[mid]! > b) lo = mid + 1;
      else hi = mid;
    }
    while (lo < g.n && ids[lo] !== f.id) lo++;
    // Not found after the search: a bound that orders with nothing (NaN, from a load time no
    // validation let through) misleads it, and the scan must not run past the end (a hang).
    if (lo === g.n) lo = ids.subarray(0, g.n).indexOf(f.id);
    const n = --g.n;
    for (let i = lo; i < n; i++) {
      ids[i] = ids[i + 1]!;
      bounds[i] = bounds[i + 1]!;
    }
    f.boundAt = -1;
    f.group = undefined;
  };
  const bind = (f: Fn) => {
    if (f.boundAt >= 0 || Number.isNaN(f.gap)) return;
    const b = ((1 / Math.max(f.gap, 1)) * f.loadMs) / Math.max(1, f.sizeBytes);
    f.bound = b;
    let g = groupOf.get(f.sizeBytes);
    if (!g) {
      g = { sizeBytes: f.sizeBytes, ids: new Int32Array(16), bounds: new Float64Array(16), n: 0 };
      groupOf.set(f.sizeBytes, g);
      let at = bySize.length;
      while (at > 0 && bySize[at - 1]!.sizeBytes > f.sizeBytes) at--;
      bySize.splice(at, 0, g);
    }
    if (g.n === g.ids.length) {
      g.ids = grown(g.ids, 2 * g.n);
      g.bounds = grown(g.bounds, 2 * g.n);
    }
    const { ids, bounds } = g;
    let lo = 0;
    let hi = g.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bounds[mid]! >= b) lo = mid + 1;
      else hi = mid;
    }
    for (let i = g.n++; i > lo; i--) {
      ids[i] = ids[i - 1]!;
      bounds[i] = bounds[i - 1]!;
    }
    ids[lo] = f.id;
    bounds[lo] = b;
    f.boundAt = 0;
    f.group = g;
  };
  let minAbsentBytes: number | undefined = Infinity;
  let nextPrefetchAt = -Infinity;
  // For `scarce`: bytes loaded (as the hooks report them) and the most memory seen.
  let loadedBytes = 0;
  let memorySeen = 0;
  /** Whether the last prefetch check found memory scarce. */
  let scarceNow = false;
  const scarce = opts.scarce;
  const note = (f: Fn, e: EntryFacts) => {
    f.popularity = e.popularity;
    f.lastUsedAt = e.lastUsedAt;
    const id = f.id;
    facts.popularity[id] = e.popularity;
    facts.lastUsedAt[id] = e.lastUsedAt;
    facts.loadMs[id] = e.loadMs;
    facts.sizeBytes[id] = e.sizeBytes;
    facts.fix(id);
  };

  /**
   * Whether popularity is ever read (the `usesPopularity` hint): with `oneSighting: 'window'` and
   * no `popularityWeight`, only `rateOf` before the first invocation is seen would read it, and a
   * caller that reports its loads (the simulator) has no candidates then.
   */
  const readsPopularity = !oneWindow || popW !== 0;
  const evicted = (f: Fn): void => {
    if (f.loaded) loadedBytes -= f.sizeBytes;
    f.loaded = false;
    facts.delete(f.id);
    if (prefetch) {
      absent.add(f);
      if (minAbsentBytes !== undefined) minAbsentBytes = Math.min(minAbsentBytes, f.sizeBytes);
      bind(f);
    }
  };
  const sel = new Selection();
  /** The victims' places among the candidates, for `trimmed` (refilled by each request). */
  const pickedScratch: number[] = [];
  const policy: EvictionPolicy = {
    name: 'cremebrulee-plus',
    onLoad(e, now) {
      const f = fnOf(e);
      // The invocation that caused the load arrived loadMs ago; a pre-warm load (hits 0) is none.
      if (e.hits > 0) seen(f, now - e.loadMs);
      note(f, e);
      if (!f.loaded) loadedBytes += e.sizeBytes;
      f.sizeBytes = e.sizeBytes;
      maxBytes = Math.max(maxBytes, e.sizeBytes);
      f.loaded = true;
      facts.add(f.id);
      if (prefetch && absent.delete(f)) minAbsentBytes = undefined;
      if (prefetch) unbound(f);
    },
    onAccess(e, now) {
      const f = fnOf(e);
      seen(f, now);
      note(f, e);
    },
    onEvict(key) {
      const f = fns.get(key);
      if (f) evicted(f);
    },
    forget(key) {
      // Deleted or replaced: never prefetch it again, and drop its record (it reads as a function
      // never seen; a node where functions come and go keeps none of those gone).
      const f = fns.get(key);
      if (!f) return;
      if (f.loaded) loadedBytes -= f.sizeBytes;
      facts.delete(f.id);
      if (absent.delete(f)) minAbsentBytes = undefined;
      const g = f.group;
      unbound(f);
      if (g && g.n === 0) {
        groupOf.delete(g.sizeBytes);
        bySize.splice(bySize.indexOf(g), 1);
      }
      fns.delete(key);
      if (f.num >= 0) byNum[f.num] = undefined;
      freeIds.push(f.id);
      byPosition.clear();
    },
    selectVictims(req) {
      const c = req.candidates;
      const scores = sel.scores(c.length);
      const now = req.now;
      if (popW === 0 && floorW === 0) {
        // utilityOf, written out (the same operations in the same order) for these settings: this
        // loop runs for every candidate of every eviction.
        const useOnce = oneWindow && seenCount > 0;
        const once = useOnce ? 1 / Math.max(1, now - firstSeenAt) : 0;
        for (let i = 0; i < c.length; i++) {
          const e = c[i]!;
          const f = numbered ? byNum[(e as NumberedEntry).idx] : byPosition.at(i, e.key);
          let r: number;
          if (f === undefined || Number.isNaN(f.gap)) r = useOnce ? once : e.popularity * 1e-6;
          else r = 1 / Math.max(f.gap, now - (Number.isNaN(f.last) ? e.lastUsedAt : f.last), 1);
          scores[i] = (r * e.loadMs) / Math.max(1, e.sizeBytes);
        }
      } else for (let i = 0; i < c.length; i++) scores[i] = utilityOf(byPosition.at(i, c[i]!.key), c[i]!, now);
      const picked = pickedScratch;
      picked.length = 0;
      const victims = sel.lowestScored(c, scores, req.needBytes, (e) => {
        const f = fns.get(e.key);
        return `utility ${utility(e, req.now).toExponential(3)} lowest (gap ${Math.round(f?.gap ?? NaN)} ms, idle ${Math.round(req.now - (f && !Number.isNaN(f.last) ? f.last : e.lastUsedAt))} ms)`;
      }, picked);
      if (!trim || victims.length < 2 || (scarceNow && !trimScarce)) return victims;
      if (!prefetch || !trimVsPrefetch) return trimmed(victims, c, picked, req.needBytes);
      // With prefetching, memory left free is not idle: keep a redundant victim only if it is worth
      // more than what prefetching could load into the memory the eviction would leave free.
      let best: number | undefined;
      return trimmed(victims, c, picked, req.needBytes, (e, spare) => {
        if (best === undefined) {
          best = 0;
          for (const k of absent.fns) {
            if (k.key === req.incoming.key || k.sizeBytes > spare || Number.isNaN(k.gap)) continue;
            best = Math.max(best, utilityOf(k, k, req.now));
          }
        }
        return utility(e, req.now) >= best;
      });
    },
  };
  /**
   * The victims `selectVictims(req)` gives when the candidates are exactly the loaded functions,
   * each with the facts of its last `onLoad` / `onAccess` (the simulator's `selectAmongLoaded`
   * hint, sim/hints.ts), scored from `facts` by function number instead of each candidate's record
   * found by key: the same operations on the same numbers, so the same scores; the same order
   * (score, then last use, then key: total, so the order the functions are visited in does not
   * matter); the same trimming. From the buckets `facts` keeps (only the functions in the lowest
   * are scored); when a score is NaN, `scanAmong` scores every one. Written for the settings the
   * runtime runs (no popularity read, no lifetime floor, no `vsPrefetch`, no reasons); otherwise
   * `selectVictims` answers: `facts` holds each function's popularity as of its last hook, and the
   * simulator refreshes the candidates' popularity before a request (sim/engine.ts makeRoom), so
   * with `oneSighting: 'popularity'` the two differed (a function with no learned gap is rated by it).
   */
  const fastAmong = !readsPopularity && floorW === 0 && !(prefetch && trimVsPrefetch);
  const selectAmongLoaded = (req: EvictionRequest): Victim[] => {
    if (!fastAmong || sel.reasons || req.candidates.length !== facts.n) return policy.selectVictims(req);
    const now = req.now;
    const useOnce = oneWindow && seenCount > 0;
    const once = useOnce ? 1 / Math.max(1, now - firstSeenAt) : 0;
    const victims = facts.lowest(now, useOnce, once, req.needBytes) ?? scanAmong(now, useOnce, once, req.needBytes);
    if (!trim || victims.length < 2 || (scarceNow && !trimScarce)) return victims;
    if (dropScratch.length < victims.length) dropScratch = new Uint8Array(2 * victims.length);
    return trimmedBySize(victims, facts.sizes, req.needBytes, dropScratch);
  };
  /**
   * `selectAmongLoaded`'s victims by scoring every loaded function in the order of their places
   * (`facts.ids`), then repeated minimum scans (as `Selection.lowestScored`, whose heap beyond 8
   * victims gives that order too): for a request where some score is NaN (the order is then not
   * total, and this scan's answer is the one the policy gave).
   */
  const scanAmong = (now: number, useOnce: boolean, once: number, need: number): Victim[] => {
    const n = facts.n;
    const { ids, sizeBytes } = facts;
    const scores = sel.scores(n);
    const taken = takenScratch.length >= n ? takenScratch : (takenScratch = new Uint8Array(2 * n));
    // The scores by place, and the first minimum (d < 0: lower; d > 0: higher; else the full order).
    let best = -1;
    let bestS = NaN;
    for (let p = 0; p < n; p++) {
      const sp = facts.scoreAt(ids[p]!, now, useOnce, once);
      scores[p] = sp;
      taken[p] = 0;
      const d = sp - bestS;
      if (best < 0 || d < 0 || (!(d > 0) && placeBefore(scores, p, best))) {
        best = p;
        bestS = sp;
      }
    }
    const victims: Victim[] = [];
    const sizes = facts.sizes;
    let freed = 0;
    while (!(freed >= need) && victims.length < n) {
      if (victims.length > 0) {
        best = -1;
        bestS = NaN;
        for (let p = 0; p < n; p++) {
          if (taken[p] !== 0) continue;
          const d = scores[p]! - bestS;
          if (best < 0 || d < 0 || (!(d > 0) && placeBefore(scores, p, best))) {
            best = p;
            bestS = scores[p]!;
          }
        }
      }
      taken[best] = 1;
      const id = ids[best]!;
      sizes[victims.length] = sizeBytes[id]!;
      victims.push(facts.victims[id]!);
      freed += sizeBytes[id]!;
    }
    return victims;
  };
  /** The simulator's `numberModels` hint (sim/hints.ts): taken only before any function is seen. */
  const numberModels = (): boolean => {
    if (fns.size > 0) return false;
    numbered = true;
    return true;
  };
  const onEvictNumber = (i: number): void => {
    const f = byNum[i];
    if (f) evicted(f);
  };
  let takenScratch = new Uint8Array(64);
  /** `trimmedBySize`'s marks (refilled by each request). */
  let dropScratch = new Uint8Array(64);
  /** Place a before place b in `Selection.lowestScored`'s order (`before` in select.ts). */
  const placeBefore = (scores: Float64Array, a: number, b: number): boolean => {
    const d = scores[a]! - scores[b]!;
    if (d < 0) return true;
    if (d > 0) return false;
    const ia = facts.ids[a]!;
    const ib = facts.ids[b]!;
    const l = facts.lastUsedAt[ia]! - facts.lastUsedAt[ib]!;
    if (l < 0) return true;
    if (l > 0) return false;
    return byId[ia]!.key < byId[ib]!.key;
  };
  if (prefetch) {
    policy.prewarm = (now, isResident, freeBytes) => {
      // Only where the caller says how much is free (and reports loads and evictions).
      if (freeBytes === undefined) return NO_VICTIMS;
      if (now < nextPrefetchAt) return NO_VICTIMS;
      let o: { prefetchCount?: number; prefetchEveryMs?: number; prefetchBy?: 'utility' | 'saving' | 'soonest'; prefetchDue?: number } = opts;
      if (scarce) {
        memorySeen = Math.max(memorySeen, loadedBytes + freeBytes);
        scarceNow = false;
        // Scarce only below `below` x the hottest function's model, so never at or above `below` x the largest.
        if (memorySeen < scarce.below * maxBytes) {
          let hot: Fn | undefined;
          for (const f of fns.values()) if (!Number.isNaN(f.gap) && (hot === undefined || f.gap < hot.gap)) hot = f;
          scarceNow = hot !== undefined && memorySeen < scarce.below * hot.sizeBytes;
        }
        if (scarceNow) o = scarce;
      }
      nextPrefetchAt = now + (o.prefetchEveryMs ?? PREFETCH_EVERY_MS);
      if (fastPick && o === opts) {
        let best: Fn | undefined;
        let bu = -Infinity;
        for (let j = 0; j < bySize.length; j++) {
          const g = bySize[j]!;
          if (g.sizeBytes > freeBytes) break;
          const { ids, bounds } = g;
          for (let i = 0; i < g.n; i++) {
            if (best !== undefined && bounds[i]! < bu) break;
            const k = byId[ids[i]!]!;
            const u = utilityOf(k, k, now);
            if (best === undefined || u > bu || (u === bu && k.key < best.key)) {
              best = k;
              bu = u;
            }
          }
        }
        if (best === undefined || isResident(best.key)) return NO_VICTIMS;
        return [sel.reasons ? { key: best.key, reason: `prefetch: utility ${bu.toExponential(3)}, among the highest of what is not loaded` } : facts.victims[best.id]!];
      }
      if (minAbsentBytes === undefined) {
        minAbsentBytes = Infinity;
        for (const f of absent.fns) minAbsentBytes = Math.min(minAbsentBytes, f.sizeBytes);
      }
      if (minAbsentBytes > freeBytes) return NO_VICTIMS;
      const count = o.prefetchCount ?? 1;
      const by = o.prefetchBy ?? 'utility';
      const due = o.prefetchDue ?? 0;
      const picks: { k: Fn; u: number }[] = [];
      for (const k of absent.fns) {
        if (k.sizeBytes > freeBytes || Number.isNaN(k.gap)) continue;
        if (due > 0 && now - k.last < due * k.gap) continue;
        const u =
          by === 'saving' ? rateOf(k, k, now) * k.loadMs
          : by === 'soonest' ? -Math.max(0, k.last + k.gap - now) - k.gap * 1e-9 // expected next call soonest (then shortest gap)
          : utilityOf(k, k, now);
        // Keep the `count` best, best first (ties by key).
        let i = picks.length;
        while (i > 0 && (picks[i - 1]!.u < u || (picks[i - 1]!.u === u && picks[i - 1]!.k.key > k.key))) i--;
        if (i < count) {
          picks.splice(i, 0, { k, u });
          if (picks.length > count) picks.pop();
        }
      }
      const out: Victim[] = [];
      for (const { k, u } of picks) {
        if (!isResident(k.key)) out.push({ key: k.key, reason: sel.reasons ? `prefetch: utility ${u.toExponential(3)}, among the highest of what is not loaded` : '' });
      }
      return out;
    };
    /**
     * `prewarm`'s period if, with `freeBytes` free, a check due would name nothing (no function
     * that is not loaded fits) whatever its time, until a hook, and change nothing but
     * `nextPrefetchAt`: `memorySeen` already counts this free memory, and memory is not scarce
     * (`scarceNow` stays false). NaN otherwise, or for other settings than `fastPick`'s. A caller
     * that skips such checks keeps their quiet time itself (`SimHints.idleCheckPeriod`), so
     * `nextPrefetchAt` may lag: the next check that runs is at or after the time it would hold.
     */
    const idleCheckPeriod = (freeBytes: number): number => {
      if (!fastPick) return NaN;
      if (scarce && (scarceNow || !(loadedBytes + freeBytes <= memorySeen) || !(memorySeen >= scarce.below * maxBytes))) return NaN;
      for (let j = 0; j < bySize.length; j++) {
        const g = bySize[j]!;
        if (g.sizeBytes > freeBytes) break;
        if (g.n > 0) return NaN;
      }
      return opts.prefetchEveryMs ?? PREFETCH_EVERY_MS;
    };
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    // Before nextPrefetchAt, prewarm returns at once and changes nothing.
    return Object.assign(policy, { quietUntil: (): number => nextPrefetchAt, idleCheckPeriod, usesPopularity: readsPopularity, omitReasons: () => sel.omitReasons(), selectAmongLoaded, numberModels, onEvictNumber });
  }
  return Object.assign(policy, { usesPopularity: readsPopularity, omitReasons: () => sel.omitReasons(), selectAmongLoaded, numberModels, onEvictNumber });
}
