// Policies as they were before the speed work (commit 3b62094), kept verbatim as references
// that the fast versions must match decision for decision.
import { byScore, takeUntilFreed } from '../../runtime/policies/select';
import type { EntryFacts, EvictionPolicy, Victim } from '../../runtime/policies/types';
import type { SimHints } from '../../sim/hints';

interface HybridHistogramOptions {
  /** Histogram range (idle times beyond it are out of bounds), ms. @default 14400000 (4 h) */
  rangeMs?: number;
  /** Bin width, ms. @default 60000 (1 minute) */
  binMs?: number;
  /** Head percentile: the pre-warm window. @default 5 */
  headPct?: number;
  /** Tail percentile: the end of the keep-alive window. @default 99 */
  tailPct?: number;
  /** Safety margin: pre-warm shortened and keep-alive lengthened by this fraction. @default 0.1 */
  margin?: number;
  /** Idle times needed before the histogram is trusted. @default 10 */
  minSamples?: number;
  /** Coefficient of variation of bin counts needed to call the histogram representative. @default 2 */
  minCv?: number;
  /** Keep-alive where the histogram is not representative, ms. @default 600000 (10 min) */
  fixedKeepAliveMs?: number;
}

interface FnState {
  last: number;
  bins: Uint32Array;
  samples: number;
  outOfRange: number;
  /** Windows from the last invocation: unloaded until `prewarmAt`, loaded until `keepUntil`. */
  prewarmAt: number;
  keepUntil: number;
}

/**
 * Hybrid histogram policy (Shahrad et al., "Serverless in the Wild", ATC'20, §4.2). Per function,
 * a histogram of idle times (time between consecutive invocations, 1-minute bins over 4 hours).
 * When it is representative (enough samples, CV of bin counts ≥ 2, mostly in range), after each
 * invocation the model is unloaded for a pre-warm window = 5th percentile × (1 − margin), loaded
 * again at its end, and kept for a keep-alive window ending at the 99th percentile × (1 + margin).
 * Otherwise a fixed keep-alive. Under memory pressure, the model whose keep-alive ends soonest goes
 * first. (The paper's ARIMA branch for idle times beyond 4 hours is left out: out-of-range
 * functions take the fixed keep-alive.) Needs the `prewarm` hook to pre-warm; without it (the
 * runtime's warm pool today) it degrades to keep-alive windows only.
 */
export function referenceHybridHistogram(opts: HybridHistogramOptions = {}): EvictionPolicy {
  const o = {
    rangeMs: 4 * 3_600_000, binMs: 60_000, headPct: 5, tailPct: 99, margin: 0.1,
    minSamples: 10, minCv: 2, fixedKeepAliveMs: 600_000, ...opts,
  };
  if (!(o.binMs > 0 && o.rangeMs >= o.binMs)) throw new RangeError('hybrid-histogram: need binMs > 0 and rangeMs >= binMs');
  const nBins = Math.ceil(o.rangeMs / o.binMs);
  const fns = new Map<string, FnState>();
  /** Functions inside or before a pre-warm window, so `prewarm` need not scan every function. */
  const pending = new Set<string>();

  const percentileBin = (s: FnState, pct: number): number => {
    const target = Math.max(1, Math.ceil((pct / 100) * s.samples));
    let acc = 0;
    for (let b = 0; b < nBins; b++) {
      acc += s.bins[b]!;
      if (acc >= target) return b;
    }
    return nBins - 1;
  };
  const representative = (s: FnState): boolean => {
    if (s.samples < o.minSamples || s.outOfRange > s.samples / 2) return false;
    const inRange = s.samples - s.outOfRange;
    const mean = inRange / nBins;
    let v = 0;
    for (let b = 0; b < nBins; b++) v += (s.bins[b]! - mean) ** 2;
    return Math.sqrt(v / nBins) / mean >= o.minCv;
  };
  const invoked = (key: string, t: number) => {
    let s = fns.get(key);
    if (!s) {
      s = { last: t, bins: new Uint32Array(nBins), samples: 0, outOfRange: 0, prewarmAt: t, keepUntil: t + o.fixedKeepAliveMs };
      fns.set(key, s);
      return;
    }
    const idle = t - s.last;
    s.last = t;
    s.samples++;
    if (idle >= o.rangeMs) s.outOfRange++;
    else s.bins[Math.floor(idle / o.binMs)]!++;
    if (representative(s)) {
      const head = percentileBin(s, o.headPct) * o.binMs;
      const tail = (percentileBin(s, o.tailPct) + 1) * o.binMs;
      s.prewarmAt = t + head * (1 - o.margin);
      s.keepUntil = t + tail * (1 + o.margin);
      if (s.prewarmAt > t) pending.add(key);
      else pending.delete(key);
    } else {
      s.prewarmAt = t;
      s.keepUntil = t + o.fixedKeepAliveMs;
      pending.delete(key);
    }
  };
  const keepUntil = (e: EntryFacts) => fns.get(e.key)?.keepUntil ?? e.lastUsedAt;

  return {
    name: 'hybrid-histogram',
    onLoad(e, now) {
      // A load for an invocation started loadMs ago; a pre-warm load (hits 0) is no invocation.
      if (e.hits > 0) invoked(e.key, now - e.loadMs);
    },
    onAccess(e, now) {
      invoked(e.key, now);
    },
    selectVictims(req) {
      return takeUntilFreed(byScore(req.candidates, keepUntil), req.needBytes, (e) =>
        `keep-alive window ends soonest (in ${Math.round(keepUntil(e) - req.now)} ms)`,
      );
    },
    expired(entries, now) {
      const out: Victim[] = [];
      for (const e of entries) {
        const s = fns.get(e.key);
        if (!s) continue;
        if (now >= s.keepUntil) out.push({ key: e.key, reason: 'keep-alive window ended' });
        else if (now < s.prewarmAt && e.hits > 0) out.push({ key: e.key, reason: `idle until the pre-warm window at ${Math.round(s.prewarmAt)} ms` });
      }
      return out;
    },
    prewarm(now, isResident) {
      const out: Victim[] = [];
      for (const key of pending) {
        const s = fns.get(key)!;
        if (now >= s.keepUntil) pending.delete(key);
        else if (now >= s.prewarmAt && !isResident(key)) out.push({ key, reason: 'pre-warm window reached' });
      }
      return out;
    },
  };
}

/** Random eviction as it was before key ranks replaced the per-call sort (commit 3b62094). */
export function referenceRandom(next: () => number): EvictionPolicy {
  return {
    name: 'random',
    selectVictims(req) {
      const pool = [...req.candidates].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      for (let i = pool.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
      return takeUntilFreed(pool, req.needBytes, () => 'chosen at random');
    },
  };
}

/** GDSF as it was before its priorities were found by candidate position (commit d317626). */
export function referenceGdsf(): EvictionPolicy & SimHints {
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
      return takeUntilFreed(byScore(req.candidates, pr), req.needBytes, (e) =>
        `lowest GDSF priority ${pr(e).toExponential(3)} (clock ${clock.toExponential(3)}, ${e.hits} hits)`,
      );
    },
  };
}
