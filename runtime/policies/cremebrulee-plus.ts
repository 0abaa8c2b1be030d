import { lowestFirst, type EntryFacts, type EvictionPolicy } from './types';

export interface CremeBruleePlusOptions {
  /** Weight of the newest gap in the moving average of a function's inter-arrival gaps. @default 0.3 */
  alpha?: number;
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
 * Needs only the hooks the runtime's warm pool already calls.
 */
export function cremebruleePlus(opts: CremeBruleePlusOptions = {}): EvictionPolicy {
  const alpha = opts.alpha ?? 0.3;
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`cremebrulee-plus: alpha must be in (0, 1], got ${alpha}`);
  const last = new Map<string, number>();
  const gap = new Map<string, number>();
  const seen = (key: string, t: number) => {
    const l = last.get(key);
    if (l !== undefined && t >= l) {
      const g = gap.get(key);
      const d = Math.max(1, t - l);
      gap.set(key, g === undefined ? d : g + alpha * (d - g));
    }
    last.set(key, t);
  };
  const rate = (e: EntryFacts, now: number) => {
    const g = gap.get(e.key);
    const l = last.get(e.key) ?? e.lastUsedAt;
    if (g === undefined) return e.popularity * 1e-6; // one sighting: as CremeBrulee, below any learned rate
    return 1 / Math.max(g, now - l, 1);
  };
  const utility = (e: EntryFacts, now: number) => (rate(e, now) * e.loadMs) / Math.max(1, e.sizeBytes);
  return {
    name: 'cremebrulee-plus',
    onLoad(e, now) {
      // The invocation that caused the load arrived loadMs ago; a pre-warm load (hits 0) is none.
      if (e.hits > 0) seen(e.key, now - e.loadMs);
    },
    onAccess(e, now) {
      seen(e.key, now);
    },
    selectVictims(req) {
      return lowestFirst(req.candidates, req.needBytes, (e) => utility(e, req.now), (e) =>
        `utility ${utility(e, req.now).toExponential(3)} lowest (gap ${Math.round(gap.get(e.key) ?? NaN)} ms, idle ${Math.round(req.now - (last.get(e.key) ?? e.lastUsedAt))} ms)`,
      );
    },
  };
}
