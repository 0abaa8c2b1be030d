/**
 * Victim selection helpers shared by the policies: "lowest score first until enough is freed",
 * in a plain form (`byScore` + `takeUntilFreed`, the reference) and a fast one (`Selection`).
 */
import type { EntryFacts, EvictionPolicy, EvictionRequest, Victim } from './types';

/** Takes entries from `ordered` until `needBytes` is covered. */
export function takeUntilFreed(
  ordered: readonly EntryFacts[],
  needBytes: number,
  reason: (e: EntryFacts) => string,
): Victim[] {
  const victims: Victim[] = [];
  let freed = 0;
  for (const e of ordered) {
    if (freed >= needBytes) break;
    victims.push({ key: e.key, reason: reason(e) });
    freed += e.sizeBytes;
  }
  return victims;
}

/** Sorts ascending by score; ties go to the least recently used, then by key, so runs repeat. */
export function byScore<T extends EntryFacts>(entries: readonly T[], score: (e: T) => number): T[] {
  return entries
    .map((e) => ({ e, s: score(e) }))
    .sort((a, b) => a.s - b.s || a.e.lastUsedAt - b.e.lastUsedAt || (a.e.key < b.e.key ? -1 : a.e.key > b.e.key ? 1 : 0))
    .map((x) => x.e);
}

/**
 * The same victims as `takeUntilFreed(byScore(candidates, score), needBytes, reason)` without
 * sorting every candidate, with scratch buffers of its own: a policy instance keeps one
 * `Selection` (no allocation per request, nothing shared between instances or modules).
 */
export class Selection {
  private score = new Float64Array(64);
  private approx = new Float64Array(64);
  private taken = new Uint8Array(64);
  /** Whether victims get their reason (false after `omitReasons`). */
  reasons = true;

  /**
   * Victims from now on get an empty reason, and `reason` is not called: for a policy whose
   * caller never reads reasons (the simulator's `omitReasons` hint, sim/hints.ts).
   */
  omitReasons(): void {
    this.reasons = false;
  }

  /** This selection's buffer for at least `n` scores (valid until its next `scores` call). */
  scores(n: number): Float64Array {
    if (this.score.length < n) this.score = new Float64Array(Math.max(n, 2 * this.score.length));
    return this.score;
  }

  /** This selection's buffer for at least `n` approximate keys (`lowestNear`; valid until its next `keys` call). */
  keys(n: number): Float64Array {
    if (this.approx.length < n) this.approx = new Float64Array(Math.max(n, 2 * this.approx.length));
    return this.approx;
  }

  /**
   * Lowest score first; ties to the least recently used, then by key. `score` is called once per
   * candidate, in order; `reason` once per victim, in eviction order (as the sort-based form does).
   * Scores must not be NaN.
   */
  lowestFirst<T extends EntryFacts>(
    candidates: readonly T[],
    needBytes: number,
    score: (e: T) => number,
    reason: (e: T) => string,
  ): Victim[] {
    const n = candidates.length;
    const s = this.scores(n);
    for (let i = 0; i < n; i++) s[i] = score(candidates[i]!);
    return this.lowestScored(candidates, s, needBytes, reason);
  }

  /**
   * `lowestFirst` with the scores already computed: `scores[i]` is candidate i's. A speed device for
   * policies that score every candidate of every request: filling `scores(n)` in the policy's own
   * loop keeps that loop specialised to the policy, where one shared loop calling every policy's
   * score function runs about twice as slow per candidate once several policies have used it.
   *
   * Repeated minimum scans (most requests need one or two victims), and a heap of what is left
   * only when more than 8 are needed.
   */
  lowestScored<T extends EntryFacts>(
    candidates: readonly T[],
    scores: Float64Array,
    needBytes: number,
    reason: (e: T) => string,
    /** If given, each victim's index in `candidates` is pushed onto it, in eviction order. */
    picked?: number[],
  ): Victim[] {
    const victims: Victim[] = [];
    const n = candidates.length;
    if (!this.reasons) reason = noReason;
    if (this.taken.length < n) this.taken = new Uint8Array(Math.max(n, 2 * this.taken.length));
    const s = scores;
    const taken = this.taken;
    // The first minimum (the first scan below), found while clearing `taken`.
    let best = -1;
    let bestS = NaN;
    for (let i = 0; i < n; i++) {
      const si = s[i]!;
      taken[i] = 0;
      const d = si - bestS;
      // d < 0: lower score; d > 0: higher; equal or NaN (first, or tied infinities): the full order.
      if (best < 0 || d < 0 || (!(d > 0) && before(s, candidates, i, best))) {
        best = i;
        bestS = si;
      }
    }
    let freed = 0;
    let scans = 0;
    while (!(freed >= needBytes) && victims.length < n) {
      if (scans === 8) {
        popInOrder(candidates, s, taken, needBytes, freed, reason, victims, picked);
        break;
      }
      if (scans > 0) {
        best = -1;
        bestS = NaN;
        for (let i = 0; i < n; i++) {
          if (taken[i] !== 0) continue;
          const d = s[i]! - bestS;
          if (best < 0 || d < 0 || (!(d > 0) && before(s, candidates, i, best))) {
            best = i;
            bestS = s[i]!;
          }
        }
      }
      taken[best] = 1;
      scans++;
      picked?.push(best);
      const e = candidates[best]!;
      victims.push({ key: e.key, reason: reason(e) });
      freed += e.sizeBytes;
    }
    return victims;
  }

  /**
   * `lowestScored`'s victims (in its order, `idx` of each candidate given to its victim), with the
   * exact score computed only where the approximate keys cannot tell: `approx[i]` must be C ×
   * score(i) × (1 + δ_i) with one C > 0 for all candidates and |δ_i| ≤ 2^-30, 0 exactly when
   * score(i) is 0, and no score negative. Then a candidate whose key is above the lowest key by
   * more than the margin scores above the candidate of that key, so the lowest in the full order
   * (score, last use, key) is among the others: the one there, or the lowest of those by `exact`.
   * Null when it cannot tell (a key negative, not finite, or so small that its intermediates may
   * be subnormal; or more than 8 victims; or reasons are on): the caller then scores every
   * candidate (`lowestScored`). `approx` must not be this selection's `scores` buffer.
   */
  lowestNear<T extends EntryFacts & { readonly idx: number }>(
    candidates: readonly T[],
    approx: Float64Array,
    /** The lowest of approx[0..n); NaN if one is NaN, negative, or below `KEY_TINY` but not 0. */
    lowest: number,
    exact: (i: number) => number,
    needBytes: number,
  ): Victim[] | null {
    const n = candidates.length;
    if (this.reasons || Number.isNaN(lowest)) return null;
    if (this.taken.length < n) this.taken = new Uint8Array(Math.max(n, 2 * this.taken.length));
    const s = this.scores(n);
    const taken = this.taken;
    let low = lowest;
    const victims: Victim[] = [];
    let freed = 0;
    while (!(freed >= needBytes) && victims.length < n) {
      if (victims.length === 8) return null;
      if (victims.length > 0) {
        low = Infinity;
        for (let i = 0; i < n; i++) if (taken[i] === 0 && approx[i]! < low) low = approx[i]!;
      }
      const lim = low * (1 + NEAR);
      let best = -1;
      let near = 0;
      const first = victims.length === 0;
      for (let i = 0; i < n; i++) {
        if (!(approx[i]! <= lim) || (!first && taken[i] !== 0)) continue;
        if (near++ === 0) {
          best = i;
          continue;
        }
        if (near === 2) s[best] = exact(best);
        s[i] = exact(i);
        if (before(s, candidates, i, best)) best = i;
      }
      if (first) taken.fill(0, 0, n); // (only once a victim is taken: most requests need one)
      taken[best] = 1;
      const e = candidates[best]!;
      victims.push({ key: e.key, reason: '', idx: e.idx } as Victim);
      freed += e.sizeBytes;
    }
    return victims;
  }
}

/**
 * Popularity as rates, as the simulator keeps them (sim/popularity.ts), for `SimHints.selectByRates`
 * (sim/hints.ts): a share is `rates[f] / total`, and bringing every rate up to date (`syncTotal`)
 * costs a pass over all of them, so keys for `lowestNear` come from the approximations.
 */
export interface RateView {
  /** Brings every rate up to date and returns their sum as of the last refresh. */
  syncTotal(): number;
  /** Every function's rate as of the last refresh, once `syncTotal` has brought them up to date. */
  readonly rates: Float64Array;
  /** Function f's rate as of the last refresh within `approxError()` (relative), 0 exactly when it is 0, without a sync. */
  approxRate(f: number): number;
  /** The sum of the rates within `approxError()` (relative), without a sync. */
  approxTotal(): number;
  /** The bound on the approximations' relative error; NaN when none holds (then sync). */
  approxError(): number;
}

type NumberedEntry = EntryFacts & { readonly idx: number };

/**
 * A policy's `SimHints.selectByRates` (sim/hints.ts), with `numberModels` (its candidates carry
 * their `idx`) and `onEvictNumber`: the policy's keys to `Selection.lowestNear`, the exact score
 * of the candidates near the lowest, or else the shares written and `selectVictims` asked.
 */
export class ByRates {
  private cands: readonly NumberedEntry[] = [];
  private view: RateView | undefined;
  private rates: Float64Array = new Float64Array(0);
  private total = NaN;

  constructor(
    private readonly sel: Selection,
    private readonly policy: EvictionPolicy,
    /** `score(e, p)`: e's score with popularity p, by the very operations `selectVictims` uses. */
    private readonly score: (e: NumberedEntry, popularity: number) => number,
    /**
     * Fills `keys[i]` with candidate i's key from `pop`'s approximations (C × score × (1 + δ),
     * |δ| ≤ 2^-30, given `usable`; as `lowestNear` takes them) and returns the lowest, or NaN
     * where a key may be off by more (one below `KEY_TINY` but not 0, or negative, or NaN).
     */
    private readonly fillKeys: (c: readonly NumberedEntry[], keys: Float64Array, pop: RateView) => number,
  ) {}

  /** Candidate i's exact score (the rates brought up to date at the first call of a request). */
  private readonly exact = (i: number): number => {
    if (Number.isNaN(this.total)) {
      this.total = this.view!.syncTotal();
      this.rates = this.view!.rates;
    }
    const e = this.cands[i]!;
    return this.score(e, this.total > 0 ? this.rates[e.idx]! / this.total : 0);
  };

  /** The hints, for the policy to offer (`Object.assign`). */
  readonly hints = {
    numberModels: (): boolean => true,
    onEvictNumber: (): void => {},
    selectByRates: (req: EvictionRequest, pop: RateView): Victim[] => {
      const c = req.candidates as readonly NumberedEntry[];
      if (ByRates.usable(pop)) {
        const keys = this.sel.keys(c.length);
        const low = this.fillKeys(c, keys, pop);
        this.cands = c;
        this.view = pop;
        this.total = NaN;
        const v = this.sel.lowestNear(c, keys, low, this.exact, req.needBytes);
        this.cands = [];
        this.view = undefined;
        if (v !== null) return v;
      }
      const sum = pop.syncTotal();
      const rates = pop.rates;
      for (let i = 0; i < c.length; i++) (c[i] as { popularity: number }).popularity = sum > 0 ? rates[c[i]!.idx]! / sum : 0;
      return this.policy.selectVictims(req);
    },
  };

  /**
   * Whether keys from `pop`'s approximations can be good enough: within 2^-33 (a policy's few
   * roundings more keep them within `lowestNear`'s 2^-30), and a total far from the ends of the
   * range (its quotients normal).
   */
  static usable(pop: RateView): boolean {
    const t = pop.approxTotal();
    return pop.approxError() <= 2 ** -33 && t > 0 && t < 1e50;
  }
}

/**
 * `lowestNear`'s margin: keys within a relative 2^-30 of C × score are apart by more than this
 * only where the scores differ (2^-26 > 2 × 2^-30 + the comparison's rounding). Below `KEY_TINY` (but
 * not 0) a key may come from subnormal intermediates, whose relative error is unbounded:
 * `lowestNear` then gives up.
 */
const NEAR = 2 ** -26;
export const KEY_TINY = 1e-200;

const noReason = (): string => '';

/**
 * Candidate a before candidate b, exactly as byScore's comparator orders them (NaN differences
 * fall through, as `||` does). A module function, not a closure made per request: tsx (which runs
 * the simulator's CLI) compiles with esbuild's keepNames, which wraps every named closure in a
 * call that redefines its `name` each time it is made, and one made per eviction cost lru and
 * gdsf a third of their run.
 */
function before(s: Float64Array, candidates: readonly EntryFacts[], a: number, b: number): boolean {
  const d = s[a]! - s[b]!;
  if (d < 0) return true;
  if (d > 0) return false;
  const ea = candidates[a]!;
  const eb = candidates[b]!;
  const l = ea.lastUsedAt - eb.lastUsedAt;
  if (l < 0) return true;
  if (l > 0) return false;
  return ea.key < eb.key;
}

/**
 * Many victims: a heap of the candidates not yet taken (keys differ, so `before` orders them
 * totally), popped in order until `needBytes` are freed (`freedBefore` already are), instead of scanning again and again
 * or sorting all of them.
 */
function popInOrder<T extends EntryFacts>(
  candidates: readonly T[],
  s: Float64Array,
  taken: Uint8Array,
  needBytes: number,
  freedBefore: number,
  reason: (e: T) => string,
  victims: Victim[],
  picked: number[] | undefined,
): void {
  const heap: number[] = [];
  for (let i = 0; i < candidates.length; i++) if (taken[i] === 0) heap.push(i);
  const down = (at: number) => {
    const x = heap[at]!;
    const m = heap.length;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= m) break;
      const r = l + 1;
      const c = r < m && before(s, candidates, heap[r]!, heap[l]!) ? r : l;
      if (!before(s, candidates, heap[c]!, x)) break;
      heap[at] = heap[c]!;
      at = c;
    }
    heap[at] = x;
  };
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
  let freed = freedBefore;
  while (heap.length > 0) {
    if (freed >= needBytes) break;
    const top = heap[0]!;
    const e = candidates[top]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      down(0);
    }
    picked?.push(top);
    victims.push({ key: e.key, reason: reason(e) });
    freed += e.sizeBytes;
  }
}

/** `Selection.lowestFirst` with a selection of its own (for callers that keep none). */
export function lowestFirst<T extends EntryFacts>(
  candidates: readonly T[],
  needBytes: number,
  score: (e: T) => number,
  reason: (e: T) => string,
): Victim[] {
  return new Selection().lowestFirst(candidates, needBytes, score, reason);
}
