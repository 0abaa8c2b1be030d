/**
 * The eviction-policy interface shared by the runtime's warm pool and the simulator.
 *
 * A policy is pure code: it gets facts (sizes, costs, popularity, last use, the caller's `now`)
 * and returns victims. It never reads a clock, Redis or a timer, so the simulator (virtual clock)
 * and the runtime (wall clock) run the very same module. A policy may keep bookkeeping of its own
 * (GDSF's inflation clock, a seeded random generator), fed only through the hooks below.
 */

/** What is known about a model before it is loaded. */
export interface ModelFacts {
  /** Cache key: one entry per model version (function name + content hash in the runtime). */
  readonly key: string;
  /** Measured resident bytes (not the file size). */
  readonly sizeBytes: number;
  /** Measured load time, ms: what a miss costs. */
  readonly loadMs: number;
  /** Measured execution time, ms. */
  readonly execMs: number;
  /** Share of recent invocations, 0..1, refreshed by the popularity job (decayed rate). */
  readonly popularity: number;
}

/** A resident model, as the cache sees it. */
export interface EntryFacts extends ModelFacts {
  /** When the model finished loading (caller's clock, ms). */
  readonly loadedAt: number;
  /** When an invocation last used it (caller's clock, ms). */
  readonly lastUsedAt: number;
  /** Invocations served since it was loaded (the load's own invocation included). */
  readonly hits: number;
}

/**
 * Future knowledge, for the simulator's oracles only. "Future" means the invocations the node has
 * not served yet, in the order it will serve them; when invocations queue up, the next one's
 * arrival time can be earlier than `now`.
 */
export interface FutureFacts {
  /** Arrival time of the next invocation of `key` not yet served, or Infinity. */
  nextUse(key: string, now: number): number;
  /** Invocations of `key` not yet served that arrive by `now + horizonMs`. */
  usesWithin?(key: string, now: number, horizonMs: number): number;
}

export interface EvictionRequest {
  readonly now: number;
  /** Bytes that must be freed so the incoming model fits. */
  readonly needBytes: number;
  /** Evictable entries only: the caller has already left out pinned and in-flight models. */
  readonly candidates: readonly EntryFacts[];
  /** The model that needs the room. */
  readonly incoming: ModelFacts;
  /** Present only in the simulator, for oracle policies. */
  readonly future?: FutureFacts;
}

export interface Victim {
  readonly key: string;
  /** Why this one, in words an operator can read in /stats (for example "utility 0.0012 lowest"). */
  readonly reason: string;
}

export interface EvictionPolicy {
  readonly name: string;
  /**
   * Victims in eviction order. The caller evicts them in this order until `needBytes` is free;
   * a policy frees only what is needed. Returning too little means the model cannot be admitted now.
   */
  selectVictims(req: EvictionRequest): Victim[];
  /** A model was loaded (admitted). */
  onLoad?(entry: EntryFacts, now: number): void;
  /** A resident model served an invocation. */
  onAccess?(entry: EntryFacts, now: number): void;
  /** A model left the cache (evicted, retired or unloaded). */
  onEvict?(key: string, now: number): void;
  /**
   * A model is gone for good: its function was deleted, unloaded on request, or replaced by a new
   * version. Called after its `onEvict` (if it was loaded). A policy that names models in `prewarm`
   * must not name it again (until it is loaded anew); others may drop what they keep of it.
   */
  forget?(key: string): void;
  /**
   * Entries to drop with no memory pressure (keep-alive expiry). Called periodically by the
   * runtime and at each event by the simulator; `entries` are evictable entries only.
   */
  expired?(entries: readonly EntryFacts[], now: number): Victim[];
  /**
   * Models the policy wants loaded ahead of demand (pre-warming, prefetching), most wanted first.
   * The caller loads them only into free memory, never evicting for them, and reports each load
   * through `onLoad` with `hits` 0. Called where `expired` is; `isResident` says what is loaded
   * (or loading). `freeBytes`, when given, is the free memory: the caller will not load anything
   * larger, so a policy may leave such models out; a caller that gives it also reports every load
   * and eviction through `onLoad` / `onEvict`, so a policy may trust its own view of what is loaded.
   */
  prewarm?(now: number, isResident: (key: string) => boolean, freeBytes?: number): Victim[];
  /**
   * Optional speed hint for callers that check `expired` often: the keys that `expired` might name
   * at `now` (a superset; loaded models only). A caller may then pass `expired` only the evictable
   * entries among them (in its usual order), or skip the call when there are none, so a policy
   * that gives this hint must decide each entry on its own. Must not change what any hook decides.
   */
  expiryCandidates?(now: number): readonly string[];
  /**
   * Optional speed hint: false when no hook of the policy ever reads `popularity` (of entries or of
   * `incoming`), so a caller may leave it unset (the simulator then skips its popularity job).
   */
  readonly usesPopularity?: boolean;
  /**
   * Optional speed hint for callers that check `expired` / `prewarm` periodically, asked right
   * after a check at `now`: a time before which a check would name nothing and change nothing a
   * later check decides, provided no hook is called and the caller's state (what is loaded, in
   * flight, free memory, the entries' facts) stays as it is. A caller may skip checks before it
   * while that holds, and may ask later (or not at all) instead of right after the check, as long
   * as no hook has been called since (the simulator asks only when it would use the answer). Must
   * not change what any hook decides.
   */
  nextCheckAt?(now: number): number;
  /**
   * Optional speed hint, like `nextCheckAt` but unconditional: a check before this time names
   * nothing and changes nothing, whatever happens meanwhile.
   */
  quietUntil?(now: number): number;
}

export interface PolicyOptions {
  /** Seed for `random`. @default 1 */
  seed?: number;
  /** Keep-alive for `ttl`, ms. @default 600000 (10 minutes) */
  ttlMs?: number;
}

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

// Scratch space for `lowestFirst` / `lowestScored` (grown on demand, reused: no allocation per call).
let scratchScore = new Float64Array(64);
let scratchTaken = new Uint8Array(64);

/**
 * A reused buffer for at least `n` scores, for `lowestScored` (valid until the next call).
 */
export function scoreScratch(n: number): Float64Array {
  if (scratchScore.length < n) scratchScore = new Float64Array(Math.max(n, 2 * scratchScore.length));
  return scratchScore;
}

/**
 * The same victims as `takeUntilFreed(byScore(candidates, score), needBytes, reason)` — lowest
 * score first; ties to the least recently used, then by key — without sorting every candidate:
 * repeated minimum scans (most requests need one or two victims), and a heap of what is left only
 * when many are needed. `score` is called once per candidate, in order; `reason` once per victim,
 * in eviction order (as the sort-based form does). Scores must not be NaN.
 */
export function lowestFirst<T extends EntryFacts>(
  candidates: readonly T[],
  needBytes: number,
  score: (e: T) => number,
  reason: (e: T) => string,
): Victim[] {
  const n = candidates.length;
  const s = scoreScratch(n);
  for (let i = 0; i < n; i++) s[i] = score(candidates[i]!);
  return lowestScored(candidates, s, needBytes, reason);
}

/**
 * `lowestFirst` with the scores already computed: `scores[i]` is candidate i's. A speed device for
 * policies that score every candidate of every request: filling `scoreScratch(n)` in the policy's
 * own loop keeps that loop specialised to the policy, where one shared loop calling every policy's
 * score function runs about twice as slow per candidate once several policies have used it.
 */
export function lowestScored<T extends EntryFacts>(
  candidates: readonly T[],
  scores: Float64Array,
  needBytes: number,
  reason: (e: T) => string,
  /** If given, each victim's index in `candidates` is pushed onto it, in eviction order. */
  picked?: number[],
): Victim[] {
  const victims: Victim[] = [];
  const n = candidates.length;
  if (scratchTaken.length < n) scratchTaken = new Uint8Array(Math.max(n, 2 * scratchTaken.length));
  const s = scores;
  const taken = scratchTaken;
  // a before b, exactly as byScore's comparator orders them (NaN differences fall through, as `||` does).
  const before = (a: number, b: number): boolean => {
    const d = s[a]! - s[b]!;
    if (d < 0) return true;
    if (d > 0) return false;
    const ea = candidates[a]!;
    const eb = candidates[b]!;
    const l = ea.lastUsedAt - eb.lastUsedAt;
    if (l < 0) return true;
    if (l > 0) return false;
    return ea.key < eb.key;
  };
  // The first minimum (the first scan below), found while clearing `taken`.
  let best = -1;
  let bestS = NaN;
  for (let i = 0; i < n; i++) {
    const si = s[i]!;
    taken[i] = 0;
    const d = si - bestS;
    // d < 0: lower score; d > 0: higher; equal or NaN (first, or tied infinities): the full order.
    if (best < 0 || d < 0 || (!(d > 0) && before(i, best))) {
      best = i;
      bestS = si;
    }
  }
  let freed = 0;
  let scans = 0;
  while (!(freed >= needBytes) && victims.length < n) {
    if (scans === 8) {
      // Many victims: a heap of the rest (keys differ, so `before` orders them totally), popped in
      // order, instead of scanning again and again or sorting all of them.
      const heap: number[] = [];
      for (let i = 0; i < n; i++) if (taken[i] === 0) heap.push(i);
      const down = (at: number) => {
        const x = heap[at]!;
        const m = heap.length;
        for (;;) {
          const l = 2 * at + 1;
          if (l >= m) break;
          const r = l + 1;
          const c = r < m && before(heap[r]!, heap[l]!) ? r : l;
          if (!before(heap[c]!, x)) break;
          heap[at] = heap[c]!;
          at = c;
        }
        heap[at] = x;
      };
      for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
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
      break;
    }
    if (scans > 0) {
      best = -1;
      bestS = NaN;
      for (let i = 0; i < n; i++) {
        if (taken[i] !== 0) continue;
        const d = s[i]! - bestS;
        if (best < 0 || d < 0 || (!(d > 0) && before(i, best))) {
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
