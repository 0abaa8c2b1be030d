import { DeadlineHeap, NONE } from './heap';
import { PositionMemo } from './memo';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, Victim } from './types';

export interface HybridHistogramOptions {
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
  /** Sum of squared bin counts (for the CV test without a pass over the bins). */
  sumSq: number;
  /** The highest bin with a count (-1: none). */
  topBin: number;
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
 * functions take the fixed keep-alive.) Pre-warms through the `prewarm` hook (the simulator and
 * the runtime's warm pool call it); a caller without it gets keep-alive windows only.
 */
export function hybridHistogram(opts: HybridHistogramOptions = {}): EvictionPolicy {
  const o = {
    rangeMs: 4 * 3_600_000, binMs: 60_000, headPct: 5, tailPct: 99, margin: 0.1,
    minSamples: 10, minCv: 2, fixedKeepAliveMs: 600_000, ...opts,
  };
  if (!(o.binMs > 0 && o.rangeMs >= o.binMs)) throw new RangeError('hybrid-histogram: need binMs > 0 and rangeMs >= binMs');
  const nBins = Math.ceil(o.rangeMs / o.binMs);
  const fns = new Map<string, FnState>();

  // Bookkeeping that makes the periodic checks event-driven (O(what is due), not O(functions));
  // none of it changes a decision. `pending`: functions inside or before a pre-warm window, in
  // the order `prewarm` reports them (first insertion); `seq` is that order.
  const pending = new Set<string>();
  const seq = new Map<string, number>();
  let nextSeq = 0;
  /** Keep-alive ends of pending functions (to drop them from `pending` when it passes). */
  const pendingEnds = new DeadlineHeap();
  /** Pre-warm window starts of pending functions not yet reached. */
  const windowStarts = new DeadlineHeap();
  /** Pending functions whose pre-warm window has started. */
  const ripe = new Set<string>();
  /** Loaded models (onLoad, not yet onEvict): true when an invocation used it since the load. */
  const loaded = new Map<string, boolean>();
  /** Ripe functions not loaded: what `prewarm` may name. */
  const wanted = new Set<string>();
  /**
   * At most the smallest size among `wanted` (removals only raise the smallest, so it stays a
   * bound; `prewarm` makes it exact whenever it goes through `wanted`).
   */
  let wantedMinBytes = Infinity;
  /** Model sizes, as the hooks report them. */
  const sizes = new Map<string, number>();
  const want = (key: string) => {
    wanted.add(key);
    wantedMinBytes = Math.min(wantedMinBytes, sizes.get(key) ?? 0);
  };
  const unwant = (key: string) => {
    wanted.delete(key);
  };
  /** Keep-alive ends of loaded models. */
  const loadedEnds = new DeadlineHeap();
  /** Loaded, used models that may be inside their idle (pre-pre-warm) window. */
  const idle = new Set<string>();

  /** The first bin whose cumulative count reaches pct% of the samples (the last bin if none does). */
  const percentileBin = (s: FnState, pct: number): number => {
    const target = Math.max(1, Math.ceil((pct / 100) * s.samples));
    const inRange = s.samples - s.outOfRange;
    if (target > inRange) return nBins - 1;
    if (pct > 50) {
      // Down from the highest bin with a count: the first bin b whose count up to b reaches the
      // target is the lowest whose count above b is at most inRange - target (integers: exact).
      const limit = inRange - target;
      let above = 0;
      let b = s.topBin;
      while (b > 0 && above + s.bins[b]! <= limit) above += s.bins[b--]!;
      return b;
    }
    let acc = 0;
    for (let b = 0; b < nBins; b++) {
      acc += s.bins[b]!;
      if (acc >= target) return b;
    }
    return nBins - 1;
  };
  const cvByBins = (s: FnState): number => {
    const inRange = s.samples - s.outOfRange;
    const mean = inRange / nBins;
    let v = 0;
    for (let b = 0; b < nBins; b++) v += (s.bins[b]! - mean) ** 2;
    return Math.sqrt(v / nBins) / mean;
  };
  const representative = (s: FnState): boolean => {
    if (s.samples < o.minSamples || s.outOfRange > s.samples / 2) return false;
    // CV >= minCv  <=>  nBins x sumSq >= (1 + minCv^2) x inRange^2 (variance = sumSq/nBins - mean^2).
    // Decided from the running sum of squares, except near the boundary, where the pass over the
    // bins decides as it always did (so rounding cannot flip a decision).
    const inRange = s.samples - s.outOfRange;
    const lhs = nBins * s.sumSq;
    const rhs = (1 + o.minCv * o.minCv) * inRange * inRange;
    if (lhs > rhs * (1 + 1e-9)) return true;
    if (lhs < rhs * (1 - 1e-9)) return false;
    return cvByBins(s) >= o.minCv;
  };
  const unpend = (key: string) => {
    pending.delete(key);
    ripe.delete(key);
    unwant(key);
  };
  const invoked = (key: string, t: number): FnState => {
    let s = fns.get(key);
    if (!s) {
      s = { last: t, bins: new Uint32Array(nBins), samples: 0, outOfRange: 0, sumSq: 0, topBin: -1, prewarmAt: t, keepUntil: t + o.fixedKeepAliveMs };
      fns.set(key, s);
    } else {
      const idleMs = t - s.last;
      s.last = t;
      s.samples++;
      if (idleMs >= o.rangeMs) s.outOfRange++;
      else {
        const b = Math.floor(idleMs / o.binMs);
        s.sumSq += 2 * s.bins[b]! + 1;
        s.bins[b]!++;
        if (b > s.topBin) s.topBin = b;
      }
      if (representative(s)) {
        const head = percentileBin(s, o.headPct) * o.binMs;
        const tail = (percentileBin(s, o.tailPct) + 1) * o.binMs;
        s.prewarmAt = t + head * (1 - o.margin);
        s.keepUntil = t + tail * (1 + o.margin);
        if (s.prewarmAt > t) {
          if (!pending.has(key)) {
            pending.add(key);
            seq.set(key, nextSeq++);
          }
          ripe.delete(key);
          unwant(key);
          pendingEnds.push(s.keepUntil, key);
          windowStarts.push(s.prewarmAt, key);
        } else unpend(key);
      } else {
        s.prewarmAt = t;
        s.keepUntil = t + o.fixedKeepAliveMs;
        unpend(key);
      }
    }
    if (loaded.has(key)) loadedEnds.push(s.keepUntil, key);
    return s;
  };
  const keepUntil = (e: EntryFacts) => fns.get(e.key)?.keepUntil ?? e.lastUsedAt;
  // (`fns` states are never replaced or deleted.)
  const byPosition = new PositionMemo((key) => fns.get(key));

  const sel = new Selection();
  const policy: EvictionPolicy = {
    name: 'hybrid-histogram',
    onLoad(e, now) {
      sizes.set(e.key, e.sizeBytes);
      loaded.set(e.key, e.hits > 0);
      unwant(e.key);
      // A load for an invocation started loadMs ago; a pre-warm load (hits 0) is no invocation.
      if (e.hits > 0) {
        // (`idle` holds only models inside their idle window: `expiryCandidates` would drop the others unnamed.)
        if (invoked(e.key, now - e.loadMs).prewarmAt > now) idle.add(e.key);
      } else {
        const s = fns.get(e.key);
        if (s) loadedEnds.push(s.keepUntil, e.key);
      }
    },
    onAccess(e, now) {
      sizes.set(e.key, e.sizeBytes);
      loaded.set(e.key, true);
      if (invoked(e.key, now).prewarmAt > now) idle.add(e.key);
    },
    forget(key) {
      // Deleted or replaced: no pre-warm window for it any more. (Its histogram stays: per-key
      // state is never replaced, see PositionMemo; a new version is a new key.)
      unpend(key);
      idle.delete(key);
    },
    onEvict(key) {
      loaded.delete(key);
      idle.delete(key);
      if (ripe.has(key)) want(key);
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) s[i] = byPosition.at(i, c[i]!.key)?.keepUntil ?? c[i]!.lastUsedAt;
      return sel.lowestScored(c, s, req.needBytes, (e) =>
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
    prewarm(now, isResident, freeBytes) {
      // Functions whose keep-alive window has ended leave `pending`.
      while (pendingEnds.peekTime() <= now) {
        const key = pendingEnds.peekKey();
        pendingEnds.pop();
        if (pending.has(key) && now >= fns.get(key)!.keepUntil) unpend(key);
      }
      // Functions whose pre-warm window has started.
      while (windowStarts.peekTime() <= now) {
        const t = windowStarts.peekTime();
        const key = windowStarts.peekKey();
        windowStarts.pop();
        if (pending.has(key) && fns.get(key)!.prewarmAt === t && !ripe.has(key)) {
          ripe.add(key);
          if (!loaded.has(key)) want(key);
        }
      }
      const keys: string[] = [];
      if (freeBytes === undefined) {
        for (const key of ripe) if (!isResident(key)) keys.push(key);
      } else {
        // The caller reports every load and eviction through the hooks: what is not loaded is
        // `wanted`, and nothing larger than the free memory would be loaded.
        if (wanted.size === 0 || wantedMinBytes > freeBytes) return [];
        let min = Infinity;
        for (const key of wanted) {
          const size = sizes.get(key) ?? 0;
          if (size < min) min = size;
          if (!(size > freeBytes) && !isResident(key)) keys.push(key);
        }
        wantedMinBytes = min;
      }
      if (keys.length > 1) {
        // In `seq` order (one lookup a key, not two a comparison).
        const order = keys.map((key) => ({ key, q: seq.get(key)! }));
        order.sort((a, b) => a.q - b.q);
        for (let i = 0; i < keys.length; i++) keys[i] = order[i]!.key;
      }
      return keys.map((key) => ({ key, reason: 'pre-warm window reached' }));
    },
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    nextCheckAt(): number {
      // After a check, what is left in `idle` is what the caller could not evict (in flight) and
      // what is left in `wanted` does not fit; only the deadlines below (or hooks, or the caller's
      // state) change what a check decides.
      // Stale heap entries (superseded deadlines) would only wake a check that drops them: drop them here.
      while (loadedEnds.size > 0) {
        const key = loadedEnds.peekKey();
        if (loaded.has(key) && fns.get(key)!.keepUntil === loadedEnds.peekTime()) break;
        loadedEnds.pop();
      }
      while (windowStarts.size > 0) {
        const key = windowStarts.peekKey();
        if (pending.has(key) && fns.get(key)!.prewarmAt === windowStarts.peekTime() && !ripe.has(key)) break;
        windowStarts.pop();
      }
      while (pendingEnds.size > 0) {
        const key = pendingEnds.peekKey();
        if (pending.has(key) && fns.get(key)!.keepUntil === pendingEnds.peekTime()) break;
        pendingEnds.pop();
      }
      return Math.min(loadedEnds.peekTime(), windowStarts.peekTime(), pendingEnds.peekTime());
    },
    expiryCandidates(now: number): readonly string[] {
      if (idle.size === 0 && loadedEnds.peekTime() > now) return NONE;
      const out: string[] = [];
      // Used models inside their idle window (only a new invocation reopens one, so drop the rest).
      for (const key of idle) {
        if (now < fns.get(key)!.prewarmAt) out.push(key);
        else idle.delete(key);
      }
      // Loaded models whose keep-alive window has ended (stale heap entries are dropped).
      if (loadedEnds.peekTime() <= now) {
        const due: string[] = [];
        while (loadedEnds.peekTime() <= now) {
          const t = loadedEnds.peekTime();
          const key = loadedEnds.peekKey();
          loadedEnds.pop();
          if (loaded.has(key) && fns.get(key)!.keepUntil === t) due.push(key);
        }
        // Still loaded after this check (in flight, say): look again next time.
        for (const key of due) {
          loadedEnds.push(fns.get(key)!.keepUntil, key);
          out.push(key);
        }
      }
      return out;
    },
  });
}
