/**
 * Victim selection helpers shared by the policies: "lowest score first until enough is freed",
 * in a plain form (`byScore` + `takeUntilFreed`, the reference) and a fast one (`Selection`).
 */
import type { EntryFacts, Victim } from './types';

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
}

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
  return tieBefore(candidates[a]!, candidates[b]!);
}

/** Of two candidates with equal scores, a before b: the least recently used first, then by key (`byScore`'s ties). */
export function tieBefore(a: EntryFacts, b: EntryFacts): boolean {
  const l = a.lastUsedAt - b.lastUsedAt;
  if (l < 0) return true;
  if (l > 0) return false;
  return a.key < b.key;
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
