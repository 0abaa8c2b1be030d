import { grown, IdCalendar, IdSet, NONE } from './heap';
import { Selection } from './select';
import type { EntryFacts, EvictionPolicy, EvictionRequest, NumberedEntry, Victim } from './types';

/** Which deadline queue `earliest` looks at: what makes a reminder in it live. */
const KEPT = 0; // loaded or pending (keep-alive ends)
const WINDOW = 1; // pending and not yet ripe (pre-warm window starts)
/** An answer that names nothing (frozen: callers only read answers). */
const NO_VICTIMS = Object.freeze([]) as unknown as Victim[];
/**
 * From this many victims on, `selectAmongLoaded` takes the rest from a heap (built in ~2 comparisons
 * a loaded model, then ~2 log2(n) a victim) instead of a scan of every loaded model for each.
 */
const MANY_VICTIMS = 3;
/** Places in `bounds` (`SimHints.checkSignals`). */
const WAKE = 0;
const WANTED_MIN = 1;

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
  /** The two percentiles as fractions, divided once (the same doubles as `pct / 100` at each call). */
  const headFrac = o.headPct / 100;
  const tailFrac = o.tailPct / 100;

  // Per-function state, by an id of the policy's own (ids in order of first sighting, reused only
  // once `drop`ped): `known` once invoked (its histogram exists), then its last invocation, histogram
  // (`bins[id × nBins + b]`), sample counts, sum of squared bin counts (for the CV test without a
  // pass over the bins), its percentiles (below) and its windows from the last
  // invocation (unloaded until `prewarmAt`, loaded until `keepUntil`). Typed arrays, grown by
  // doubling: the hooks run for every call the simulator replays.
  const idOf = new Map<string, number>();
  const keys: string[] = [];
  let cap = 0;
  let known = new Uint8Array(0);
  let last = new Float64Array(0);
  let bins = new Uint32Array(0);
  /** Which bins have a count (`nonEmpty[id × words + (b >> 5)]` bit b & 31): percentiles skip the empty ones. */
  const words = (nBins + 31) >>> 5;
  let nonEmpty = new Int32Array(0);
  let samples = new Float64Array(0);
  let outOfRange = new Float64Array(0);
  let sumSq = new Float64Array(0);
  // The two percentiles (head, tail) of each function, kept as samples come (at [2 × id + k], k
  // 0 for the head, 1 for the tail): the lowest bin whose count up to it reaches the percentile's
  // target when last asked (nBins: none does), and the counts below it and up to it. A new sample
  // moves the target and the counts by at most one each, so the answer moves by a bin or so: no
  // pass over the histogram per invocation.
  let pctBin = new Int32Array(0);
  let pctBelow = new Float64Array(0);
  let pctUpTo = new Float64Array(0);
  let prewarmAt = new Float64Array(0);
  let keepUntilOf = new Float64Array(0);
  /** Model sizes as the hooks report them (0 until reported). */
  let sizes = new Float64Array(0);
  /** Every size reported so far is a whole number of bytes (below 2^53): `prewarm` sums them exactly. */
  let wholeSizes = true;
  /** Entries' `lastUsedAt` at their last `onLoad` / `onAccess` (`selectAmongLoaded`'s tie-break). */
  let lastUsed = new Float64Array(0);
  // The time of each function's reminder in `keepEnds`, `windowStarts` (NaN: none). A reminder is
  // at or before the deadline it stands for, so a call that moves a deadline later pushes nothing:
  // the reminder, when it comes up, is pushed again at the deadline of the moment.
  let ksAt = new Float64Array(0);
  let wsAt = new Float64Array(0);
  /** Order in which `prewarm` reports pending functions (first insertion into `pending`). */
  let seq = new Float64Array(0);
  /** Flags: `pending` (inside or before a pre-warm window), `ripe` (its window has started), `loaded` (onLoad, not yet onEvict). */
  let pending = new Uint8Array(0);
  let ripeFlag = new Uint8Array(0);
  let loaded = new Uint8Array(0);
  /** Members of `idle` (`SimHints.checkSignals`' `watch`: set only at `onLoad` / `onAccess`, with a call of it in flight). */
  let inIdle = new Uint8Array(0);
  /**
   * The caller numbers its models and passes each entry's number (the simulator's `numberModels`
   * hint, sim/hints.ts): ids are those numbers, read from the entries (`idx`), not found by key.
   */
  let numbered = false;
  /** Ids of keys forgotten for good (`drop`), for the next new keys. */
  const freeIds: number[] = [];
  const idFor = (key: string): number => {
    let id = idOf.get(key);
    if (id === undefined) {
      const free = freeIds.pop();
      if (free !== undefined) {
        keys[free] = key;
        idOf.set(key, free);
        return free;
      }
      id = keys.length;
      if (id === cap) {
        cap = Math.max(64, 2 * cap);
        known = grown(known, cap);
        last = grown(last, cap);
        bins = grown(bins, cap * nBins);
        nonEmpty = grown(nonEmpty, cap * words);
        samples = grown(samples, cap);
        outOfRange = grown(outOfRange, cap);
        sumSq = grown(sumSq, cap);
        pctBin = grown(pctBin, 2 * cap);
        pctBelow = grown(pctBelow, 2 * cap);
        pctUpTo = grown(pctUpTo, 2 * cap);
        prewarmAt = grown(prewarmAt, cap);
        keepUntilOf = grown(keepUntilOf, cap);
        sizes = grown(sizes, cap);
        lastUsed = grown(lastUsed, cap);
        ksAt = grown(ksAt, cap).fill(NaN, id);
        wsAt = grown(wsAt, cap).fill(NaN, id);
        seq = grown(seq, cap);
        pending = grown(pending, cap);
        ripeFlag = grown(ripeFlag, cap);
        loaded = grown(loaded, cap);
        inIdle = grown(inIdle, cap);
      }
      keys.push(key);
      idOf.set(key, id);
    }
    return id;
  };
  /** `key` (id `id`) is gone for good: its state is put back as a new id's, and the id serves the next new key. */
  const drop = (id: number, key: string): void => {
    idOf.delete(key);
    freeIds.push(id);
    for (const a of [known, last, samples, outOfRange, sumSq, prewarmAt, keepUntilOf, sizes, lastUsed, seq, pending, ripeFlag, loaded, inIdle]) a[id] = 0;
    ksAt[id] = wsAt[id] = NaN; // (reminders left in the queues for it stand for nothing: `earliest`)
    bins.fill(0, id * nBins, (id + 1) * nBins);
    nonEmpty.fill(0, id * words, (id + 1) * words);
    for (const set of [ripe, wanted, idle, loadedIds]) set.delete(id);
    delete prewarmVictims[id];
    delete plainVictims[id];
    delete endedVictims[id];
    posKeys.length = 0;
    // Reminders only the simulator's checks take out (`nextCheckAt`): one per id at most stands for something.
    if (keepEnds.size > 2 * idOf.size + 64) keepEnds.keepOnly((t, i) => ksAt[i] === t);
  };

  // Bookkeeping that makes the periodic checks event-driven (O(what is due), not O(functions));
  // none of it changes a decision.
  let nextSeq = 0;
  /**
   * The deadline queues' bucket width: their rings (16384 buckets) span twice the histogram's
   * range, so the reminders (a window start or keep-alive end at most ~rangeMs × (1 + margin)
   * ahead) go into the ring, not its overflow heap. The queues give reminders of equal times in
   * an order of their own (not `IdDeadlineHeap`'s), which changes no decision: each drain takes
   * every one due and only fills sets whose readers take minima or sort (`prewarm` by `seq`, the
   * caller's expirations in its own order), and `earliest` answers the earliest live deadline,
   * whatever stale reminders it drops on the way.
   */
  const calendarWidth = o.rangeMs / 8192;
  /**
   * Keep-alive ends of loaded models (`expiryCandidates`) and of pending functions (to drop them
   * from `pending` when it passes: `prewarm`), one reminder for both: each of the two drains
   * puts back, at or before now, the ones due that the other still has to see (a loaded model
   * the check could not evict, a pending function whose end has passed).
   */
  const keepEnds = new IdCalendar(calendarWidth);
  /** Ids due that a drain puts back for the other (scratch). */
  let held = new Int32Array(64);
  /** Pre-warm window starts of pending functions not yet reached. */
  const windowStarts = new IdCalendar(calendarWidth);
  /** Pending functions whose pre-warm window has started. */
  const ripe = new IdSet();
  /** Ripe functions not loaded: what `prewarm` may name. */
  const wanted = new IdSet();
  /**
   * Two bounds kept as they change, which the simulator reads between calls (`SimHints.checkSignals`):
   * [WAKE] at most the earliest reminder in the two deadline queues (`checkAfterHooks`): their
   * earliest live one when last computed, lowered by every reminder pushed since, recomputed
   * after a check (`wakeStale`), which takes reminders out; [WANTED_MIN] at most the smallest
   * size among `wanted` (removals only raise the smallest, so it stays a bound; `prewarm` and
   * `checkAfterHooks` make it exact whenever they go through `wanted`).
   */
  const bounds = Float64Array.of(-Infinity, Infinity);
  let wakeStale = true;
  const want = (id: number) => {
    wanted.add(id);
    if (sizes[id]! < bounds[WANTED_MIN]!) bounds[WANTED_MIN] = sizes[id]!;
  };
  /** Keeps a reminder for `id` in `queue` at or before `t` (`at`: its reminders' times). */
  const remind = (queue: IdCalendar, at: Float64Array, id: number, t: number): void => {
    if (!(at[id]! <= t)) {
      queue.push(t, id);
      at[id] = t;
      if (t < bounds[WAKE]!) bounds[WAKE] = t;
    }
  };
  /**
   * The earliest deadline in `queue` (Infinity: none): reminders that stand for nothing are
   * dropped, and one early for its deadline (`deadline[id]`, while live: `kind`'s test) is pushed
   * again at it. (One function for the two queues, told which by a number rather than a
   * closure: a call it can inline.)
   */
  /** A victim naming `id` (with its number when the caller gave numbers). */
  const victimOf = (id: number, reason: string): Victim => (numbered ? { key: keys[id]!, reason, idx: id } as Victim : { key: keys[id]!, reason });
  const earliest = (queue: IdCalendar, at: Float64Array, deadline: Float64Array, kind: 0 | 1 | 2): number => {
    while (queue.size > 0) {
      const t = queue.peekTime();
      const id = queue.peekId();
      const live = kind === KEPT ? loaded[id] !== 0 || pending[id] !== 0 : pending[id] !== 0 && ripeFlag[id] === 0;
      if (at[id] === t && deadline[id] === t && live) break;
      queue.pop();
      if (at[id] !== t) continue; // superseded by an earlier one
      at[id] = NaN;
      if (live) remind(queue, at, id, deadline[id]!);
    }
    return queue.peekTime();
  };
  /** Loaded, used models that may be inside their idle (pre-pre-warm) window (flagged in `inIdle`). */
  const idle = new IdSet();
  const toIdle = (id: number): void => {
    idle.add(id);
    inIdle[id] = 1;
  };
  const outOfIdle = (id: number): void => {
    idle.delete(id);
    inIdle[id] = 0;
  };
  /**
   * The loaded models (onLoad, not yet onEvict), for `selectAmongLoaded`: kept from its first ask
   * on (a caller that never asks, or a budget that never evicts, pays nothing at the hooks).
   */
  const loadedIds = new IdSet();
  let trackLoaded = false;
  /** The caller loads what `prewarm` names in order, each that still fits (`SimHints.prewarmInOrder`). */
  let inOrder = false;
  // Victims made once per function, reused by every answer that names it (their fields never
  // change): pre-warms, keep-alive ends, and evictions and idle windows once reasons are omitted.
  const prewarmVictims: Victim[] = [];
  const plainVictims: Victim[] = [];
  const endedVictims: Victim[] = [];
  const PREWARM_REASON = 'pre-warm window reached';
  const ENDED_REASON = 'keep-alive window ended';
  /**
   * The victims of the answer being made, `gathered[0..n)`, handed out by `answer` in an array of
   * their own: a new one, or, once the caller reads each answer before it calls the same method
   * again (`SimHints.reuseAnswers`), the one kept for that method and length, refilled.
   */
  const gathered: Victim[] = [];
  let reuse = false;
  const expiredAnswers: Victim[][] = [];
  const prewarmAnswers: Victim[][] = [];
  const amongAnswers: Victim[][] = [];
  const answer = (byLength: Victim[][], n: number): Victim[] => {
    if (n === 0) return NO_VICTIMS;
    if (!reuse) return gathered.slice(0, n);
    const a = (byLength[n] ??= gathered.slice(0, n));
    for (let j = 0; j < n; j++) a[j] = gathered[j]!;
    return a;
  };
  /** Scratch: ids `prewarm` names, and positions `selectAmongLoaded` has taken. */
  let picked = new Int32Array(64);
  /** `prewarm`'s ids, before they are made victims. */
  let pwIds = new Int32Array(64);
  let takenAt = new Int32Array(64);
  /** This request's mark in `takenAt` (no clearing per request). */
  let takenMark = 0;

  /** The caller's model states by number (`SimHints.modelStates`: nonzero, loaded or loading), or null. */
  let states: Uint8Array | null = null;
  const residentId = (id: number, isResident: (key: string) => boolean): boolean => (states !== null ? states[id] !== 0 : isResident(keys[id]!));
  const noIds: readonly number[] = Object.freeze([]);
  /** `prewarmNumbers`' `isResident`: never asked (it reads the caller's `states`). */
  const noResident = (): boolean => {
    throw new Error('hybrid-histogram: prewarmNumbers needs modelStates');
  };
  /** The next reminder in `keepEnds` due by `now` that stands for something, taken out (-1: none left). */
  const nextKeepDue = (now: number): number => {
    while (keepEnds.peekTime() <= now) {
      const t = keepEnds.peekTime();
      const id = keepEnds.peekId();
      keepEnds.pop();
      if (ksAt[id] !== t) continue; // superseded by an earlier one
      ksAt[id] = NaN;
      return id;
    }
    return -1;
  };
  /** Due ids `a[from..to)` taken out of `keepEnds`, put back at their keep-alive ends (at or before now). */
  const remindAgain = (a: Int32Array, from: number, to: number): void => {
    for (let j = from; j < to; j++) remind(keepEnds, ksAt, a[j]!, keepUntilOf[a[j]!]!);
  };
  /** `expiryCandidates`' ids as found, and its answers by length (each filled in place: none resized per check). */
  let expIds = new Int32Array(64);
  const expOut: number[][] = [];
  /** `expiryCandidateNumbers`' ids, written to `ids[0..n)` (room for `idle.size` + `keepEnds.size`): returns n. */
  const expiryInto = (now: number, ids: Int32Array): number => {
    // Reminders are taken out only when some are due: a check that just evicts models of `idle`
    // (at 100%, ~1.2 M of a run's ~2.1 M checks) leaves bounds[WAKE] a bound, not to be
    // recomputed at the next `checkAfterHooks`.
    if (keepEnds.peekTime() <= now) wakeStale = true;
    if (held.length < keepEnds.size) held = new Int32Array(2 * keepEnds.size);
    let n = 0;
    // Used models inside their idle window (only a new invocation reopens one, so drop the rest;
    // backwards, so a deletion moves only members already looked at).
    for (let j = idle.size - 1; j >= 0; j--) {
      const id = idle.items[j]!;
      if (now < prewarmAt[id]!) ids[n++] = id;
      else outOfIdle(id);
    }
    // Loaded models whose keep-alive window has ended (stale reminders are dropped).
    if (keepEnds.peekTime() <= now) {
      const first = n;
      let h = 0;
      for (let id = nextKeepDue(now); id >= 0; id = nextKeepDue(now)) {
        const ku = keepUntilOf[id]!;
        if (ku <= now) {
          if (loaded[id] !== 0) ids[n++] = id;
          else if (pending[id] !== 0) held[h++] = id; // (`prewarm` drops it from pending)
        } else if (loaded[id] !== 0 || pending[id] !== 0) remind(keepEnds, ksAt, id, ku);
      }
      // Still loaded after this check (in flight, say): look again next time.
      remindAgain(ids, first, n);
      remindAgain(held, 0, h);
    }
    return n;
  };
  const expiryIds = (now: number): readonly number[] => {
    if (expIds.length < idle.size + keepEnds.size) expIds = new Int32Array(2 * (idle.size + keepEnds.size));
    const ids = expIds;
    const n = expiryInto(now, ids);
    if (n === 0) return noIds;
    const out = (expOut[n] ??= new Array<number>(n).fill(0));
    for (let j = 0; j < n; j++) out[j] = ids[j]!;
    return out;
  };

  /** The highest bin below b with a count (-1: none), by the bits of `nonEmpty`. */
  const binBelow = (id: number, b: number): number => {
    if (b <= 0) return -1;
    const w0 = id * words;
    let w = (b - 1) >> 5;
    // The bits of word w below b (all of them when b is past its end).
    let m = nonEmpty[w0 + w]! & (((b - 1) & 31) === 31 ? -1 : (1 << (((b - 1) & 31) + 1)) - 1);
    for (;;) {
      if (m !== 0) return (w << 5) + 31 - Math.clz32(m);
      if (--w < 0) return -1;
      m = nonEmpty[w0 + w]!;
    }
  };
  /** The lowest bin above b with a count (nBins: none). */
  const binAbove = (id: number, b: number): number => {
    const w0 = id * words;
    const first = b + 1;
    if (first >= nBins) return nBins;
    let w = first >> 5;
    let m = nonEmpty[w0 + w]! & (-1 << (first & 31));
    for (;;) {
      if (m !== 0) return (w << 5) + 31 - Math.clz32(m & -m);
      if (++w >= words) return nBins;
      m = nonEmpty[w0 + w]!;
    }
  };
  /**
   * The first bin whose cumulative count reaches the fraction `frac` of the samples (the last bin
   * if none does), from the tracker at j = 2 × id + k, moved to the target of the moment.
   */
  const percentileBin = (id: number, j: number, frac: number): number => {
    const target = Math.max(1, Math.ceil(frac * samples[id]!));
    let b = pctBin[j]!;
    let below = pctBelow[j]!;
    let upTo = pctUpTo[j]!;
    const at = id * nBins;
    if (below >= target) {
      // Down: the bins with a count below b, while what is below them still reaches the target.
      do {
        b = binBelow(id, b);
        upTo = below;
        below -= bins[at + b]!;
      } while (below >= target);
    } else {
      // Up: while the count up to b falls short (past the highest bin with a count: none reaches it).
      while (upTo < target) {
        const next = binAbove(id, b);
        below = upTo;
        if (next === nBins) {
          b = nBins;
          break;
        }
        b = next;
        upTo += bins[at + b]!;
      }
    }
    pctBin[j] = b;
    pctBelow[j] = below;
    pctUpTo[j] = upTo;
    return b < nBins ? b : nBins - 1;
  };
  const cvByBins = (id: number): number => {
    const inRange = samples[id]! - outOfRange[id]!;
    const mean = inRange / nBins;
    const at = id * nBins;
    let v = 0;
    for (let b = 0; b < nBins; b++) v += (bins[at + b]! - mean) ** 2;
    return Math.sqrt(v / nBins) / mean;
  };
  const representative = (id: number): boolean => {
    const n = samples[id]!;
    if (n < o.minSamples || outOfRange[id]! > n / 2) return false;
    // CV >= minCv  <=>  nBins x sumSq >= (1 + minCv^2) x inRange^2 (variance = sumSq/nBins - mean^2).
    // Decided from the running sum of squares, except near the boundary, where the pass over the
    // bins decides as it always did (so rounding cannot flip a decision).
    const inRange = n - outOfRange[id]!;
    const lhs = nBins * sumSq[id]!;
    const rhs = (1 + o.minCv * o.minCv) * inRange * inRange;
    if (lhs > rhs * (1 + 1e-9)) return true;
    if (lhs < rhs * (1 - 1e-9)) return false;
    return cvByBins(id) >= o.minCv;
  };
  const unpend = (id: number) => {
    pending[id] = 0;
    ripeFlag[id] = 0;
    ripe.delete(id);
    wanted.delete(id);
  };
  const invoked = (id: number, t: number): void => {
    if (known[id] === 0) {
      known[id] = 1;
      last[id] = t;
      for (let j = 2 * id; j < 2 * id + 2; j++) {
        pctBin[j] = nBins;
        pctBelow[j] = pctUpTo[j] = 0;
      }
      prewarmAt[id] = t;
      keepUntilOf[id] = t + o.fixedKeepAliveMs;
    } else {
      const idleMs = t - last[id]!;
      last[id] = t;
      samples[id]!++;
      if (idleMs >= o.rangeMs) outOfRange[id]!++;
      else {
        const b = Math.floor(idleMs / o.binMs);
        const at = id * nBins + b;
        sumSq[id] = sumSq[id]! + 2 * bins[at]! + 1;
        bins[at]!++;
        nonEmpty[id * words + (b >> 5)]! |= 1 << (b & 31);
        // The percentiles' counts below and up to their bins.
        for (let j = 2 * id; j < 2 * id + 2; j++) {
          const pb = pctBin[j]!;
          if (b < pb) {
            pctBelow[j]!++;
            pctUpTo[j]!++;
          } else if (b === pb) pctUpTo[j]!++;
        }
      }
      if (representative(id)) {
        const head = percentileBin(id, 2 * id, headFrac) * o.binMs;
        const tail = (percentileBin(id, 2 * id + 1, tailFrac) + 1) * o.binMs;
        const pw = t + head * (1 - o.margin);
        const ku = t + tail * (1 + o.margin);
        prewarmAt[id] = pw;
        keepUntilOf[id] = ku;
        if (pw > t) {
          if (pending[id] === 0) {
            pending[id] = 1;
            seq[id] = nextSeq++;
          }
          ripeFlag[id] = 0;
          ripe.delete(id);
          wanted.delete(id);
          remind(keepEnds, ksAt, id, ku);
          remind(windowStarts, wsAt, id, pw);
        } else unpend(id);
      } else {
        prewarmAt[id] = t;
        keepUntilOf[id] = t + o.fixedKeepAliveMs;
        unpend(id);
      }
    }
    if (loaded[id] !== 0) remind(keepEnds, ksAt, id, keepUntilOf[id]!);
  };
  const keepUntil = (e: EntryFacts) => {
    const id = idOf.get(e.key);
    return id !== undefined && known[id] !== 0 ? keepUntilOf[id]! : e.lastUsedAt;
  };
  // Candidates' ids by position: callers pass much the same candidates in much the same order, so
  // the id found for the key at position i last time is used while that position holds the same
  // key (`drop` clears it).
  const posKeys: (string | undefined)[] = [];
  const posIds: number[] = [];

  const sel = new Selection();
  /** Loaded model at position a before the one at b (`Selection`'s order: score, last use, key). */
  const before = (s: Float64Array, items: Int32Array, a: number, b: number): boolean => {
    const sa = s[a]!;
    const sb = s[b]!;
    if (sa < sb) return true;
    if (sa > sb) return false;
    const ia = items[a]!;
    const ib = items[b]!;
    if (lastUsed[ia]! < lastUsed[ib]!) return true;
    if (lastUsed[ia]! > lastUsed[ib]!) return false;
    return keys[ia]! < keys[ib]!;
  };
  const evictionVictim = (id: number, now: number): Victim =>
    sel.reasons
      ? { key: keys[id]!, reason: `keep-alive window ends soonest (in ${Math.round((known[id] !== 0 ? keepUntilOf[id]! : lastUsed[id]!) - now)} ms)` }
      : (plainVictims[id] ??= victimOf(id, ''));
  /** `takeInOrder`'s heap: positions of loaded models not yet taken, `before` first (scratch). */
  let rest = new Int32Array(64);
  /** Sifts `rest[at]` down the heap `rest[0..m)`. */
  const siftDown = (s: Float64Array, items: Int32Array, m: number, at: number): void => {
    const x = rest[at]!;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= m) break;
      const c = l + 1 < m && before(s, items, rest[l + 1]!, rest[l]!) ? l + 1 : l;
      if (!before(s, items, rest[c]!, x)) break;
      rest[at] = rest[c]!;
      at = c;
    }
    rest[at] = x;
  };
  /**
   * Many victims (`gathered[0..nv)` taken): the loaded models not yet taken, in order, until `need`
   * is freed, popped from a heap (`before` is a total order: keys differ) rather than found by a
   * scan each or a sort of all. Returns how many victims are gathered.
   */
  const takeInOrder = (n: number, s: Float64Array, freed: number, need: number, now: number, nv: number): number => {
    const items = loadedIds.items;
    if (rest.length < n) rest = new Int32Array(2 * n);
    let m = 0;
    for (let j = 0; j < n; j++) if (takenAt[j] !== takenMark) rest[m++] = j;
    for (let j = (m >> 1) - 1; j >= 0; j--) siftDown(s, items, m, j);
    while (m > 0 && !(freed >= need)) {
      const id = items[rest[0]!]!;
      rest[0] = rest[--m]!;
      siftDown(s, items, m, 0);
      gathered[nv++] = evictionVictim(id, now);
      freed += sizes[id]!;
    }
    return nv;
  };
  const nextCheck = (): number =>
    // After a check, what is left in `idle` is what the caller could not evict (in flight) and
    // what is left in `wanted` does not fit; only the deadlines below (or hooks, or the caller's
    // state) change what a check decides.
    // Stale reminders (superseded deadlines) would only wake a check that drops them: drop them here.
    Math.min(
      earliest(keepEnds, ksAt, keepUntilOf, KEPT),
      earliest(windowStarts, wsAt, prewarmAt, WINDOW),
    );
  const evicted = (id: number): void => {
    loaded[id] = 0;
    if (trackLoaded) loadedIds.delete(id);
    outOfIdle(id);
    if (ripeFlag[id] !== 0) want(id);
  };
  const policy: EvictionPolicy = {
    name: 'hybrid-histogram',
    onLoad(e, now) {
      const id = numbered ? (e as NumberedEntry).idx : idFor(e.key);
      sizes[id] = e.sizeBytes;
      if (!Number.isSafeInteger(e.sizeBytes)) wholeSizes = false;
      lastUsed[id] = e.lastUsedAt;
      loaded[id] = 1;
      if (trackLoaded) loadedIds.add(id);
      wanted.delete(id);
      // A load for an invocation started loadMs ago; a pre-warm load (hits 0) is no invocation.
      if (e.hits > 0) {
        invoked(id, now - e.loadMs);
        // (`idle` holds only models inside their idle window: `expiryCandidates` would drop the others unnamed.)
        if (prewarmAt[id]! > now) toIdle(id);
      } else if (known[id] !== 0) remind(keepEnds, ksAt, id, keepUntilOf[id]!);
    },
    onAccess(e, now) {
      const id = numbered ? (e as NumberedEntry).idx : idFor(e.key);
      sizes[id] = e.sizeBytes;
      if (!Number.isSafeInteger(e.sizeBytes)) wholeSizes = false;
      lastUsed[id] = e.lastUsedAt;
      if (loaded[id] === 0) {
        loaded[id] = 1;
        if (trackLoaded) loadedIds.add(id);
      }
      invoked(id, now);
      if (prewarmAt[id]! > now) toIdle(id);
    },
    forget(key, cause) {
      // No pre-warm window for it any more. Deleted or replaced, nothing of it is kept; unloaded,
      // its histogram stays for its next calls.
      const id = idOf.get(key);
      if (id === undefined) return;
      unpend(id);
      outOfIdle(id);
      if (cause === 'retired' || cause === 'deleted') drop(id, key);
    },
    onEvict(key) {
      const id = idOf.get(key);
      if (id !== undefined) evicted(id);
    },
    selectVictims(req) {
      const c = req.candidates;
      const s = sel.scores(c.length);
      for (let i = 0; i < c.length; i++) {
        const e = c[i]!;
        let id: number | undefined;
        if (numbered) id = (e as NumberedEntry).idx;
        else if (posKeys[i] === e.key) id = posIds[i]!;
        else {
          id = idOf.get(e.key);
          if (id !== undefined) {
            posKeys[i] = e.key;
            posIds[i] = id;
          }
        }
        s[i] = id !== undefined && known[id] !== 0 ? keepUntilOf[id]! : e.lastUsedAt;
      }
      return sel.lowestScored(c, s, req.needBytes, (e) =>
        `keep-alive window ends soonest (in ${Math.round(keepUntil(e) - req.now)} ms)`,
      );
    },
    expired(entries, now) {
      let n = 0;
      for (const e of entries) {
        const id = numbered ? (e as NumberedEntry).idx : idOf.get(e.key);
        if (id === undefined || known[id] === 0) continue;
        if (now >= keepUntilOf[id]!) gathered[n++] = endedVictims[id] ??= victimOf(id, ENDED_REASON);
        else if (now < prewarmAt[id]! && e.hits > 0) {
          gathered[n++] = sel.reasons ? victimOf(id, `idle until the pre-warm window at ${Math.round(prewarmAt[id]!)} ms`) : (plainVictims[id] ??= victimOf(id, ''));
        }
      }
      return answer(expiredAnswers, n);
    },
    prewarm(now, isResident, freeBytes) {
      if (pwIds.length < keys.length) pwIds = new Int32Array(Math.max(64, 2 * keys.length));
      const n = prewarmInto(now, isResident, freeBytes, pwIds);
      for (let j = 0; j < n; j++) gathered[j] = prewarmVictims[pwIds[j]!] ??= victimOf(pwIds[j]!, PREWARM_REASON);
      return answer(prewarmAnswers, n);
    },
  };
  /**
   * What `prewarm` names (see there), by id, written to `out[0..n)` (room for every id): returns n.
   */
  const prewarmInto = (now: number, isResident: (key: string) => boolean, freeBytes: number | undefined, out: Int32Array): number => {
    // Functions whose keep-alive window has ended leave `pending`.
    if (keepEnds.peekTime() <= now || windowStarts.peekTime() <= now) wakeStale = true; // reminders taken out below
    if (keepEnds.peekTime() <= now) {
      if (held.length < keepEnds.size) held = new Int32Array(2 * keepEnds.size);
      let h = 0;
      for (let id = nextKeepDue(now); id >= 0; id = nextKeepDue(now)) {
        const ku = keepUntilOf[id]!;
        if (pending[id] !== 0 && now >= ku) unpend(id);
        if (ku <= now) {
          if (loaded[id] !== 0) held[h++] = id; // (`expiryCandidates` names it)
        } else if (loaded[id] !== 0 || pending[id] !== 0) remind(keepEnds, ksAt, id, ku);
      }
      remindAgain(held, 0, h);
    }
    // Functions whose pre-warm window has started.
    while (windowStarts.peekTime() <= now) {
      const t = windowStarts.peekTime();
      const id = windowStarts.peekId();
      windowStarts.pop();
      if (wsAt[id] !== t) continue;
      wsAt[id] = NaN;
      if (pending[id] === 0 || ripeFlag[id] !== 0) continue;
      if (prewarmAt[id]! <= now) {
        ripeFlag[id] = 1;
        ripe.add(id);
        if (loaded[id] === 0) want(id);
      } else remind(windowStarts, wsAt, id, prewarmAt[id]!);
    }
    let m = 0;
    /** Where in `picked` the one with the lowest `seq` is (-1: none picked), for the `cut` below. */
    let first = -1;
    if (freeBytes === undefined) {
      if (picked.length < ripe.size) picked = new Int32Array(2 * ripe.size);
      for (let j = 0; j < ripe.size; j++) {
        const id = ripe.items[j]!;
        if (!residentId(id, isResident)) picked[m++] = id;
      }
    } else {
      // The caller reports every load and eviction through the hooks: what is not loaded is
      // `wanted`, and nothing larger than the free memory would be loaded.
      if (wanted.size === 0 || bounds[WANTED_MIN]! > freeBytes) return 0;
      if (picked.length < wanted.size) picked = new Int32Array(2 * wanted.size);
      let min = Infinity;
      let firstSeq = Infinity;
      for (let j = 0; j < wanted.size; j++) {
        const id = wanted.items[j]!;
        const size = sizes[id]!;
        if (size < min) min = size;
        if (!(size > freeBytes) && !residentId(id, isResident)) {
          if (seq[id]! < firstSeq) {
            firstSeq = seq[id]!;
            first = m;
          }
          picked[m++] = id;
        }
      }
      bounds[WANTED_MIN] = min;
    }
    // The caller loads what is named in this order, each one that fits the memory still free
    // (`SimHints.prewarmInOrder`: the simulator), so a model that no longer fits once the ones
    // named before it are loaded would be skipped: it is left out. Whole byte counts, so this
    // sum is exact and agrees with the caller's own test.
    const cut = inOrder && freeBytes !== undefined && wholeSizes && Number.isSafeInteger(freeBytes);
    let n = 0;
    let free = freeBytes ?? Infinity;
    if (cut) {
      // The first few in `seq` order (seqs differ) among those that still fit by minimum scans,
      // until none fits: what walking all of them in `seq` order and skipping those that no
      // longer fit names (free memory only shrinks, so one skipped never fits later), without
      // sorting the many picked for the one or two that fit. Past 4, sorted as below.
      for (let taken = 0; ; taken++) {
        // (The first scan's answer was found with `picked`: every one picked fits freeBytes.)
        let b = first;
        if (taken > 0) {
          b = -1;
          for (let j = 0; j < m; j++) {
            const id = picked[j]!;
            if (!(sizes[id]! > free) && (b < 0 || seq[id]! < seq[picked[b]!]!)) b = j;
          }
        }
        if (b < 0) return n;
        if (taken === 4) break;
        const id = picked[b]!;
        picked[b] = picked[--m]!;
        free -= sizes[id]!;
        // The caller loads it (`prewarmInOrder`): no longer wanted (`onEvict` makes it so again).
        wanted.delete(id);
        out[n++] = id;
        // No wanted model is smaller than bounds[WANTED_MIN] (set above): when the memory left is
        // less, none of the rest fits, and the next scan would find none.
        if (free < bounds[WANTED_MIN]!) return n;
      }
    }
    // In `seq` order (seqs differ): an insertion sort of the few picked.
    for (let j = 1; j < m; j++) {
      const id = picked[j]!;
      const q = seq[id]!;
      let k = j - 1;
      while (k >= 0 && seq[picked[k]!]! > q) {
        picked[k + 1] = picked[k]!;
        k--;
      }
      picked[k + 1] = id;
    }
    for (let j = 0; j < m; j++) {
      const id = picked[j]!;
      if (cut) {
        if (sizes[id]! > free) continue;
        free -= sizes[id]!;
        wanted.delete(id);
      }
      out[n++] = id;
    }
    return n;
  };
  return Object.assign(policy, {
    // Simulator speed hints (contracts: `SimHints`, sim/hints.ts); the runtime does not use them.
    usesPopularity: false,
    omitReasons: () => sel.omitReasons(),
    prewarmInOrder: () => {
      inOrder = true;
    },
    reuseAnswers: () => {
      reuse = true;
    },
    numberModels(all: readonly string[]): boolean {
      if (keys.length > 0) return false; // ids already given by key
      for (const key of all) idFor(key); // id i for all[i]
      numbered = true;
      return true;
    },
    onEvictNumber(id: number): void {
      evicted(id);
    },
    checkAfterHooks(freeBytes: number, inFlight: (id: number) => boolean): number {
      // A model used inside its idle window that the caller could evict (not in flight), or a
      // wanted one that may fit: a check may act now. Otherwise only a deadline in the queues can
      // change what a check decides (hooks push the reminders of the deadlines they move).
      if (!numbered) return -Infinity; // (asked only after numberModels: `inFlight` takes numbers)
      if (wanted.size === 0) bounds[WANTED_MIN] = Infinity;
      else if (!(bounds[WANTED_MIN]! > freeBytes)) return -Infinity;
      for (let j = 0; j < idle.size; j++) if (!inFlight(idle.items[j]!)) return -Infinity;
      if (wakeStale) {
        wakeStale = false;
        bounds[WAKE] = Infinity;
        bounds[WAKE] = nextCheck();
      }
      return bounds[WAKE]!;
    },
    checkSignals(): { bounds: Float64Array; watch: Uint8Array } | undefined {
      // `checkAfterHooks` answers -Infinity for a wanted model that fits (none is smaller than
      // bounds[WANTED_MIN]) or a model of `idle` not in flight (flagged in `inIdle`, only while a
      // call of it runs), else its wake time, of which bounds[WAKE] is at most (see `bounds`).
      return numbered ? { bounds, watch: inIdle } : undefined; // (no id is added after numberModels)
    },
    nextCheckAt(): number {
      return nextCheck();
    },
    selectAmongLoaded(req: EvictionRequest): Victim[] {
      // The candidates are the loaded models (the hint's contract): `selectVictims`' answer from
      // the policy's own arrays, by id, with no key looked up. Its order (score, then last use,
      // then key) is total, so the order the ids are visited in does not matter.
      if (!trackLoaded) {
        trackLoaded = true;
        for (let id = 0; id < keys.length; id++) if (loaded[id] !== 0) loadedIds.add(id);
      }
      const n = loadedIds.size;
      const items = loadedIds.items;
      const s = sel.scores(n);
      // The scores, and the first victim found in the same pass (most requests take one or two).
      let first = -1;
      let low = Infinity;
      for (let j = 0; j < n; j++) {
        const id = items[j]!;
        const sc = known[id] !== 0 ? keepUntilOf[id]! : lastUsed[id]!;
        s[j] = sc;
        if (sc < low || first < 0 || (sc === low && before(s, items, j, first))) {
          first = j;
          low = sc;
        }
      }
      if (takenAt.length < n) takenAt = new Int32Array(2 * n);
      if (++takenMark === 0x7fffffff) {
        takenAt.fill(0);
        takenMark = 1;
      }
      const need = req.needBytes;
      let freed = 0;
      let nv = 0;
      while (!(freed >= need) && nv < n) {
        if (nv === MANY_VICTIMS) {
          nv = takeInOrder(n, s, freed, need, req.now, nv);
          break;
        }
        let best = first;
        if (nv > 0) {
          best = -1;
          for (let j = 0; j < n; j++) if (takenAt[j] !== takenMark && (best < 0 || before(s, items, j, best))) best = j;
        }
        takenAt[best] = takenMark;
        const id = items[best]!;
        gathered[nv++] = evictionVictim(id, req.now);
        freed += sizes[id]!;
      }
      return answer(amongAnswers, nv);
    },
    expiryCandidates(now: number): readonly string[] {
      if (idle.size === 0 && keepEnds.peekTime() > now) return NONE;
      const ids = expiryIds(now);
      return ids.map((id) => keys[id]!);
    },
    expiryCandidateNumbers(now: number): readonly number[] {
      if (idle.size === 0 && keepEnds.peekTime() > now) return noIds;
      return expiryIds(now);
    },
    expiredNumbers(now: number, out: Int32Array): number {
      // The evictable among `expiryIds` are what `expired` names, handed every evictable entry:
      // each model of `idle` left in it is inside its idle window (`now < prewarmAt`) with a
      // call since its load (set only at `onLoad` with hits > 0 and at `onAccess`, cleared at
      // its eviction), and each other one is loaded with its keep-alive window ended.
      if (idle.size === 0 && keepEnds.peekTime() > now) return 0;
      return expiryInto(now, out);
    },
    prewarmNumbers(now: number, freeBytes: number, out: Int32Array): number {
      return prewarmInto(now, noResident, freeBytes, out);
    },
    modelStates(s: Uint8Array): void {
      if (numbered) states = s;
    },
  });
}
