import { lowestFirst, type EntryFacts, type EvictionPolicy, type Victim } from './types';

export interface CremeBruleePlusOptions {
  /** Weight of the newest gap in the moving average of a function's inter-arrival gaps. @default 0.3 */
  alpha?: number;
  /**
   * Weight of CremeBrulee's refreshed popularity share in the rate:
   * rate = (1 − w) × recency rate + w × popularity × (rate of all invocations). @default 0
   */
  popularityWeight?: number;
  /**
   * Prefetch into free memory through the `prewarm` hook (the simulator calls it; the runtime's
   * warm pool does not): the function of highest utility that is not loaded and fits in the free
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
}

interface Seen {
  key: string;
  sizeBytes: number;
  loadMs: number;
  popularity: number;
  lastUsedAt: number;
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
 * gap falls back to the refreshed popularity share (as plain CremeBrulee). Online: only the past.
 * Eviction needs only the hooks the runtime's warm pool already calls; prefetching (an option)
 * needs `prewarm`, which only the simulator calls.
 */
export function cremebruleePlus(opts: CremeBruleePlusOptions = {}): EvictionPolicy {
  const alpha = opts.alpha ?? 0.3;
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`cremebrulee-plus: alpha must be in (0, 1], got ${alpha}`);
  const popW = opts.popularityWeight ?? 0;
  if (!(popW >= 0 && popW <= 1)) throw new RangeError(`cremebrulee-plus: popularityWeight must be in [0, 1], got ${popW}`);
  const last = new Map<string, number>();
  const gap = new Map<string, number>();
  let firstSeenAt = NaN;
  let seenCount = 0;
  const calls = new Map<string, number>();
  const first = new Map<string, number>();
  const floorW = opts.lifetimeFloor ?? 0;
  const seen = (key: string, t: number) => {
    if (floorW > 0) {
      calls.set(key, (calls.get(key) ?? 0) + 1);
      if (!first.has(key)) first.set(key, t);
    }
    const l = last.get(key);
    if (l !== undefined && t >= l) {
      const g = gap.get(key);
      const d = Math.max(1, t - l);
      gap.set(key, g === undefined ? d : g + alpha * (d - g));
    }
    last.set(key, t);
    if (seenCount++ === 0) firstSeenAt = t;
  };
  const rate = (e: Pick<EntryFacts, 'key' | 'popularity' | 'lastUsedAt'>, now: number) => {
    const g = gap.get(e.key);
    const l = last.get(e.key) ?? e.lastUsedAt;
    if (g === undefined) return e.popularity * 1e-6; // one sighting: as CremeBrulee, below any learned rate
    let r = 1 / Math.max(g, now - l, 1);
    if (floorW > 0) r = Math.max(r, (floorW * calls.get(e.key)!) / Math.max(1, now - first.get(e.key)!));
    return popW === 0 ? r : (1 - popW) * r + (popW * e.popularity * seenCount) / Math.max(1, now - firstSeenAt);
  };
  const utility = (e: Pick<EntryFacts, 'key' | 'popularity' | 'lastUsedAt' | 'loadMs' | 'sizeBytes'>, now: number) =>
    (rate(e, now) * e.loadMs) / Math.max(1, e.sizeBytes);

  // Prefetching: what is known of each function, what is loaded, and the smallest model not loaded.
  const prefetch = opts.prefetch === true;
  const known = new Map<string, Seen>();
  const loaded = new Set<string>();
  let minAbsentBytes: number | undefined = Infinity;
  let nextPrefetchAt = -Infinity;
  const note = (e: EntryFacts) => {
    if (!prefetch) return;
    let k = known.get(e.key);
    if (!k) {
      k = { key: e.key, sizeBytes: e.sizeBytes, loadMs: e.loadMs, popularity: e.popularity, lastUsedAt: e.lastUsedAt };
      known.set(e.key, k);
    }
    k.popularity = e.popularity;
    k.lastUsedAt = e.lastUsedAt;
  };

  const policy: EvictionPolicy = {
    name: 'cremebrulee-plus',
    onLoad(e, now) {
      // The invocation that caused the load arrived loadMs ago; a pre-warm load (hits 0) is none.
      if (e.hits > 0) seen(e.key, now - e.loadMs);
      note(e);
      if (prefetch) {
        loaded.add(e.key);
        minAbsentBytes = undefined;
      }
    },
    onAccess(e, now) {
      seen(e.key, now);
      note(e);
    },
    onEvict(key) {
      if (prefetch && loaded.delete(key)) {
        const k = known.get(key);
        if (k && minAbsentBytes !== undefined) minAbsentBytes = Math.min(minAbsentBytes, k.sizeBytes);
      }
    },
    selectVictims(req) {
      return lowestFirst(req.candidates, req.needBytes, (e) => utility(e, req.now), (e) =>
        `utility ${utility(e, req.now).toExponential(3)} lowest (gap ${Math.round(gap.get(e.key) ?? NaN)} ms, idle ${Math.round(req.now - (last.get(e.key) ?? e.lastUsedAt))} ms)`,
      );
    },
  };
  if (prefetch) {
    policy.prewarm = (now, isResident, freeBytes) => {
      // Only where the caller says how much is free (and reports loads and evictions).
      if (freeBytes === undefined) return [];
      if (now < nextPrefetchAt) return [];
      nextPrefetchAt = now + (opts.prefetchEveryMs ?? 5000);
      if (minAbsentBytes === undefined) {
        minAbsentBytes = Infinity;
        for (const k of known.values()) if (!loaded.has(k.key)) minAbsentBytes = Math.min(minAbsentBytes, k.sizeBytes);
      }
      if (minAbsentBytes > freeBytes) return [];
      const count = opts.prefetchCount ?? 1;
      const bySaving = opts.prefetchBy === 'saving';
      const due = opts.prefetchDue ?? 0;
      const picks: { k: Seen; u: number }[] = [];
      for (const k of known.values()) {
        if (loaded.has(k.key) || k.sizeBytes > freeBytes || !gap.has(k.key)) continue;
        if (due > 0 && now - last.get(k.key)! < due * gap.get(k.key)!) continue;
        const u = bySaving ? rate(k, now) * k.loadMs : utility(k, now);
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
        if (!isResident(k.key)) out.push({ key: k.key, reason: `prefetch: utility ${u.toExponential(3)}, among the highest of what is not loaded` });
      }
      return out;
    };
  }
  return policy;
}
