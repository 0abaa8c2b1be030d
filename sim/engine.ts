import type { EntryFacts, EvictionPolicy, EvictionRequest, FutureFacts } from '../runtime/policies/types';
import { PopularityTracker } from './popularity';
import type { SimModel, Trace } from './trace';

export interface SimOptions {
  /** Byte budget of the node; used bytes (resident plus loading) never exceed it. */
  budgetBytes: number;
  /** Invocations a node runs at a time. @default 1 (the paper's serial node) */
  slots?: number;
  /** Popularity refresh period, virtual ms. @default 10000 */
  popularityRefreshMs?: number;
  /** Time constant of the decayed popularity rate (as the runtime's `decayRates`), virtual ms. @default 600000 */
  popularityWindowMs?: number;
  /**
   * Period of keep-alive expiry and pre-warm checks (`expired`, `prewarm`), virtual ms; 0 checks
   * before every dispatch instead. @default 1000
   */
  sweepMs?: number;
  /** Count only invocations arriving in [reportFromMs, reportToMs) (all run; the rest warm up). */
  reportFromMs?: number;
  reportToMs?: number;
  /** Give the policy the future (`EvictionRequest.future`): for oracles only. @default false */
  future?: boolean;
  /** Each eviction, in order (tests compare these with the runtime's warm pool). */
  onEvict?: (key: string, now: number, cause: 'policy' | 'expired') => void;
  /** Called every 2^18 dispatched invocations. */
  onProgress?: (done: number, total: number) => void;
}

export interface SimResult {
  policy: string;
  budgetBytes: number;
  /** Invocations counted (those arriving in the report window). */
  invocations: number;
  /** Refused: the model is larger than the budget (or the policy freed too little). */
  refused: number;
  /** Invocations that waited for a load (their own or one in progress). */
  coldStarts: number;
  /** Served warm / served. */
  hitRatio: number;
  /** Model loads started (including pre-warm loads). */
  loads: number;
  prewarmLoads: number;
  evictions: number;
  expirations: number;
  /** Total time invocations spent waiting for loads, ms. */
  loadDelayMs: number;
  meanLoadDelayMs: number;
  /** Total execution time of served invocations, ms. */
  execMs: number;
  /** loadDelayMs as a percentage of execMs (the paper's "load delay penalty"). */
  loadDelayPctOfExec: number;
  /** Arrival to completion (queue + load + exec), ms. */
  meanLatencyMs: number;
  p99LatencyMs: number;
  meanQueueMs: number;
  /** Memory × time held (resident plus loading), byte-seconds, over the report window. */
  byteSeconds: number;
  meanUsedBytes: number;
  peakUsedBytes: number;
  /** Virtual time covered, ms. */
  simulatedMs: number;
  /** Wall time of the run, ms. */
  wallMs: number;
}

const ABSENT = 0;
const LOADING = 1;
const RESIDENT = 2;

/** The facts the simulator hands to policies: one mutable object per model, valid during a call. */
interface SimEntry extends EntryFacts {
  /** The model's index (function number). */
  readonly idx: number;
  popularity: number;
  loadedAt: number;
  lastUsedAt: number;
  hits: number;
}

const NO_ENTRIES: readonly SimEntry[] = Object.freeze([]);

/** Latency buffer, reused by the runs of a thread (one invocation's latency a slot; grown on demand). */
let latencyScratch = new Float64Array(0);

/**
 * The k-th smallest (0-based) of a[0..n), the value `a.subarray(0, n).sort()[k]` has, found by
 * quickselect (reorders a[0..n)). For finite numbers (latencies), where the two agree exactly.
 */
export function kthSmallest(a: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    // Median of three as the pivot, then a Hoare partition.
    const mid = (lo + hi) >>> 1;
    const x = a[lo]!, y = a[mid]!, z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i++] = a[j]!;
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

/** Per-function arrival times, for the oracles' view of the future (built once per trace). */
const perFnCache = new WeakMap<Trace, Float64Array[]>();
function perFunctionTimes(trace: Trace): Float64Array[] {
  let idx = perFnCache.get(trace);
  if (!idx) {
    const arrs = Array.from(trace.counts, (c) => new Float64Array(c));
    const fill = new Uint32Array(trace.functions.length);
    for (let i = 0; i < trace.times.length; i++) {
      const f = trace.fns[i]!;
      arrs[f]![fill[f]!++] = trace.times[i]!;
    }
    idx = arrs;
    perFnCache.set(trace, idx);
  }
  return idx;
}

/**
 * The oracles' view of the future (`FutureFacts`): per function, its arrival times, and how many
 * of them the node has served (a pointer that only moves forward).
 */
export class FutureIndex implements FutureFacts {
  private readonly servedCount: Uint32Array;
  // usesWithin's cursor per function: winEnd[f] is the first arrival (from the served pointer on)
  // after winLim[f], the last limit asked. Limits only grow as the clock moves, so a call resumes
  // from there instead of a binary search (which it falls back to when a limit is lower).
  private readonly winEnd: Uint32Array;
  private readonly winLim: Float64Array;
  // The last key looked up (oracles ask usesWithin, then nextUse, of the same key).
  private lastKey: string | undefined;
  private lastF = -1;
  // Keys looked up by position in the request (the n-th new key asked since `newRequest`):
  // oracles ask about the candidates in order, and callers pass much the same candidates in much
  // the same order, so the key at a position is usually the one there last time (a string
  // comparison instead of a `Map` lookup). A cache: a key found there has that index for good.
  private readonly posKeys: (string | undefined)[] = [];
  private readonly posF: number[] = [];
  private pos = 0;

  constructor(
    private readonly perFn: readonly Float64Array[],
    private readonly keyIndex: ReadonlyMap<string, number>,
  ) {
    this.servedCount = new Uint32Array(perFn.length);
    this.winEnd = new Uint32Array(perFn.length);
    this.winLim = new Float64Array(perFn.length).fill(-Infinity);
  }

  /** The next arrival of function f has been served (dispatched or refused). */
  served(f: number): void {
    this.servedCount[f]!++;
  }

  /** A new request (eviction): lookups start again at the first position. */
  newRequest(): void {
    this.pos = 0;
  }

  private indexOf(key: string): number {
    if (key === this.lastKey) return this.lastF;
    let f: number;
    const p = this.pos;
    if (p < this.perFn.length) {
      this.pos++;
      if (this.posKeys[p] === key) f = this.posF[p]!;
      else {
        f = this.keyIndex.get(key) ?? -1;
        this.posKeys[p] = key;
        this.posF[p] = f;
      }
    } else f = this.keyIndex.get(key) ?? -1;
    this.lastKey = key;
    this.lastF = f;
    return f;
  }

  nextUse(key: string): number {
    const f = this.indexOf(key);
    if (f < 0) return Infinity;
    const arr = this.perFn[f]!;
    const p = this.servedCount[f]!;
    return p < arr.length ? arr[p]! : Infinity;
  }

  usesWithin(key: string, now: number, horizonMs: number): number {
    const f = this.indexOf(key);
    if (f < 0) return 0;
    const arr = this.perFn[f]!;
    const start = this.servedCount[f]!;
    const lim = now + horizonMs;
    let lo: number;
    if (lim >= this.winLim[f]!) {
      lo = Math.max(this.winEnd[f]!, start);
      while (lo < arr.length && arr[lo]! <= lim) lo++;
    } else {
      lo = start;
      let hi = arr.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (arr[mid]! <= lim) lo = mid + 1;
        else hi = mid;
      }
    }
    this.winEnd[f] = lo;
    this.winLim[f] = lim;
    return lo - start;
  }
}

/**
 * Runs one policy over a trace on a virtual clock, with the runtime's cache rules: single-flight
 * loads, in-flight models never evicted, used bytes never above the budget, a model larger than
 * the budget refused. Invocations are served first come, first served by `slots` slots; a miss
 * occupies its slot for load plus exec; an invocation whose model is loading waits for that load
 * (a cold start). Policy hooks are called as `WarmPool` calls them.
 */
export function simulate(trace: Trace, models: readonly SimModel[], policy: EvictionPolicy, opts: SimOptions): SimResult {
  const wall0 = performance.now();
  const F = trace.functions.length;
  if (models.length !== F) throw new RangeError(`simulate: ${models.length} models for ${F} functions`);
  const budget = opts.budgetBytes;
  if (!(Number.isFinite(budget) && budget > 0)) throw new RangeError(`simulate: budgetBytes must be a positive number, got ${budget}`);
  const K = opts.slots ?? 1;
  if (!(Number.isInteger(K) && K >= 1)) throw new RangeError(`simulate: slots must be an integer >= 1, got ${K}`);
  const sweepMs = opts.sweepMs ?? 1000;
  if (!(sweepMs >= 0)) throw new RangeError(`simulate: sweepMs must be >= 0, got ${sweepMs}`);
  const from = opts.reportFromMs ?? -Infinity;
  const to = opts.reportToMs ?? Infinity;
  const { times, fns } = trace;
  const N = times.length;

  const pop = new PopularityTracker(F, opts.popularityRefreshMs, opts.popularityWindowMs);
  // A policy that never reads popularity does not need the popularity job at all.
  const usesPop = policy.usesPopularity !== false;
  const refreshMs = pop.refreshMs;
  /**
   * Resident entries' popularity is brought up to date (the share as of the last refresh, as the
   * runtime's popularity job leaves it) only when entries are handed to the policy.
   */
  const freshen = (c: readonly SimEntry[]) => {
    if (usesPop) for (let j = 0; j < c.length; j++) c[j]!.popularity = pop.share(c[j]!.idx);
  };
  const state = new Uint8Array(F);
  const inFlight = new Int32Array(F);
  const loadDoneAt = new Float64Array(F);
  const entries: SimEntry[] = models.map((m, idx) => ({
    idx, key: m.key, sizeBytes: m.sizeBytes, loadMs: m.loadMs, execMs: m.execMs,
    popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 0,
  }));
  const keyIndex = new Map<string, number>();
  models.forEach((m, f) => keyIndex.set(m.key, f));
  // Resident models (state RESIDENT), with positions for O(1) removal.
  const resident = new Int32Array(F);
  const residentPos = new Int32Array(F).fill(-1);
  let nResident = 0;
  const cands: SimEntry[] = [];
  /** The resident entries, in `resident` order (the candidates as they are when nothing is in flight). */
  const residentEntries: SimEntry[] = [];
  let totalInFlight = 0;

  // Slots: a slot's invocation may first load (loader) or wait for another's load (joiner).
  const slotFinish = new Float64Array(K).fill(Infinity);
  const slotLoadEnd = new Float64Array(K).fill(Infinity);
  const slotTouch = new Float64Array(K).fill(Infinity);
  const slotModel = new Int32Array(K).fill(-1);
  let busySlots = 0;
  // Pre-warm loads, outside the slots.
  const bgModel: number[] = [];
  const bgEnd: number[] = [];

  // Oracles see the invocations not yet served.
  const needFuture = opts.future === true;
  const future = needFuture ? new FutureIndex(perFunctionTimes(trace), keyIndex) : undefined;

  let now = 0;
  let used = 0;
  let peak = 0;
  let usedSince = 0;
  let byteMs = 0;
  let blocked = false;
  let nextSweep = sweepMs > 0 ? sweepMs : Infinity;
  const hasSweep = policy.expired !== undefined || policy.prewarm !== undefined;
  // Lazy checks (the policy's `nextCheckAt` / `quietUntil` hints): a check due before `quiet`, or
  // before `wake` while nothing has happened since the last check (`dirty` false), is skipped.
  let wake = -Infinity;
  let quiet = -Infinity;
  let dirty = true;
  // `nextCheckAt` is asked only when its answer is used (nothing has happened since the check, so
  // the policy's answer is the one it would have given right after): the time of that check.
  let wakeAskAt = NaN;

  let counted = 0, refused = 0, cold = 0, loads = 0, prewarmLoads = 0, evictions = 0, expirations = 0;
  let loadDelay = 0, execTotal = 0, latencySum = 0, queueSum = 0;
  if (latencyScratch.length < N) latencyScratch = new Float64Array(N);
  const latencies = latencyScratch;
  let nLat = 0;

  const account = (t: number) => {
    const a = Math.max(usedSince, from);
    const b = Math.min(t, to);
    if (b > a) byteMs += used * (b - a);
    usedSince = t;
  };
  const setUsed = (delta: number) => {
    account(now);
    used += delta;
    if (used > peak) peak = used;
  };
  // Bytes of the resident models, kept as they come and go: when nothing is in flight, the
  // evictable bytes. Exact (integer sums, any order) when every size is an integer.
  let residentBytes = 0;
  let sizeSum = 0;
  for (const m of models) sizeSum += m.sizeBytes;
  const exactSizes = Number.isSafeInteger(sizeSum) && models.every((m) => Number.isSafeInteger(m.sizeBytes));
  const addResident = (f: number) => {
    residentBytes += entries[f]!.sizeBytes;
    residentPos[f] = nResident;
    residentEntries[nResident] = entries[f]!;
    resident[nResident++] = f;
  };
  const removeResident = (f: number) => {
    residentBytes -= entries[f]!.sizeBytes;
    const p = residentPos[f]!;
    const last = resident[--nResident]!;
    resident[p] = last;
    residentEntries[p] = entries[last]!;
    residentEntries.pop();
    residentPos[last] = p;
    residentPos[f] = -1;
  };
  const evictable = (): SimEntry[] => {
    if (totalInFlight === 0) return residentEntries; // the same entries in the same order, no copy
    cands.length = 0;
    for (let r = 0; r < nResident; r++) {
      const f = resident[r]!;
      if (inFlight[f] === 0) cands.push(entries[f]!);
    }
    return cands;
  };
  const evict = (f: number, cause: 'policy' | 'expired') => {
    state[f] = ABSENT;
    removeResident(f);
    setUsed(-entries[f]!.sizeBytes);
    if (cause === 'policy') evictions++;
    else expirations++;
    policy.onEvict?.(entries[f]!.key, now);
    opts.onEvict?.(entries[f]!.key, now, cause);
  };
  const completeLoad = (f: number, prewarmed: boolean) => {
    state[f] = RESIDENT;
    addResident(f);
    const e = entries[f]!;
    e.popularity = usesPop ? pop.share(f) : 0;
    e.loadedAt = now;
    e.lastUsedAt = now;
    e.hits = prewarmed ? 0 : 1;
    policy.onLoad?.(e, now);
  };
  const touch = (f: number) => {
    const e = entries[f]!;
    e.hits++;
    e.lastUsedAt = now;
    e.popularity = usesPop ? pop.share(f) : 0;
    policy.onAccess?.(e, now);
  };
  /** Evicts the policy's victims until model f fits. False if in-flight models hold the room. */
  const makeRoom = (f: number): boolean => {
    const e = entries[f]!;
    const need = used + e.sizeBytes - budget;
    if (need <= 0) return true;
    const c = evictable();
    let free = 0;
    if (c === residentEntries && exactSizes) free = residentBytes;
    else for (const x of c) free += x.sizeBytes;
    if (free < need) return false;
    freshen(c);
    e.popularity = usesPop ? pop.share(f) : 0;
    future?.newRequest();
    req.now = now;
    req.needBytes = need;
    req.candidates = c;
    req.incoming = e;
    const victims = policy.selectVictims(req);
    for (const v of victims) {
      if (used + e.sizeBytes <= budget) break;
      const g = keyIndex.get(v.key);
      if (g !== undefined && state[g] === RESIDENT && inFlight[g] === 0) evict(g, 'policy');
    }
    return used + e.sizeBytes <= budget;
  };
  // One request object, filled in for each call (policies read it during the call only).
  const req: { -readonly [K in keyof EvictionRequest]: EvictionRequest[K] } = { now: 0, needBytes: 0, candidates: residentEntries, incoming: entries[0]! };
  if (future) req.future = future;
  const isResidentKey = (key: string): boolean => {
    const g = keyIndex.get(key);
    return g !== undefined && state[g] !== ABSENT;
  };
  const amongScratch: number[] = [];
  /** The evictable entries among `keys`, in the order `evictable()` lists them. */
  const evictableAmong = (keys: readonly string[]): readonly SimEntry[] => {
    if (keys.length === 0) return NO_ENTRIES;
    cands.length = 0;
    const fs = amongScratch;
    fs.length = 0;
    for (const key of keys) {
      const g = keyIndex.get(key);
      if (g !== undefined && state[g] === RESIDENT && inFlight[g] === 0 && !fs.includes(g)) fs.push(g);
    }
    if (fs.length > 1) fs.sort((a, b) => residentPos[a]! - residentPos[b]!);
    for (const g of fs) cands.push(entries[g]!);
    return cands;
  };
  const sweep = () => {
    if (policy.expired) {
      const c = policy.expiryCandidates ? evictableAmong(policy.expiryCandidates(now)) : evictable();
      if (c.length > 0) {
        freshen(c);
        for (const v of policy.expired(c, now)) {
          const g = keyIndex.get(v.key);
          if (g !== undefined && state[g] === RESIDENT && inFlight[g] === 0) evict(g, 'expired');
        }
      }
    }
    // No pre-warming while a call waits for memory (as the warm pool): it would evict it again.
    if (policy.prewarm && !blocked) {
      for (const w of policy.prewarm(now, isResidentKey, budget - used)) {
        const g = keyIndex.get(w.key);
        if (g === undefined || state[g] !== ABSENT) continue;
        const size = entries[g]!.sizeBytes;
        if (used + size > budget) continue;
        state[g] = LOADING;
        setUsed(size);
        loadDoneAt[g] = now + entries[g]!.loadMs;
        bgModel.push(g);
        bgEnd.push(loadDoneAt[g]!);
        loads++;
        prewarmLoads++;
      }
    }
  };

  let i = 0;
  const progressMask = (1 << 18) - 1;
  for (;;) {
    let tSlot = Infinity;
    for (let s = 0; s < K; s++) {
      const t = Math.min(slotFinish[s]!, slotLoadEnd[s]!, slotTouch[s]!);
      if (t < tSlot) tSlot = t;
    }
    for (let b = 0; b < bgEnd.length; b++) if (bgEnd[b]! < tSlot) tSlot = bgEnd[b]!;
    const idle = busySlots === 0 && bgEnd.length === 0;
    const tDisp = i < N && busySlots < K && !blocked ? Math.max(now, times[i]!) : Infinity;
    if (tSlot === Infinity && tDisp === Infinity) break;
    const tNext = Math.min(tSlot, tDisp);
    // Periodic events in time order: refreshes due before the next event and the next check.
    const tUntil = hasSweep && nextSweep < tNext ? nextSweep : tNext;
    if (pop.nextRefreshAt <= tUntil && pop.nextRefreshAt !== Infinity && !(idle && i >= N)) {
      if (usesPop) {
        now = Math.max(now, pop.nextRefreshAt);
        pop.refreshRates();
        dirty = true; // entries' popularity changes
        continue;
      }
      // Nothing to compute, but the clock moves as it does with refreshes.
      let r = pop.nextRefreshAt;
      while (r + refreshMs <= tUntil) r += refreshMs;
      now = Math.max(now, r);
      pop.nextRefreshAt = r + refreshMs;
      continue;
    }
    if (nextSweep <= tNext && hasSweep) {
      if (!dirty && !Number.isNaN(wakeAskAt)) {
        wake = policy.nextCheckAt!(wakeAskAt);
        wakeAskAt = NaN;
      }
      const lim = dirty ? quiet : Math.max(quiet, wake);
      // A check runs at max(now, nextSweep) (later than due when a refresh moved the clock on).
      if (now < lim && nextSweep < lim) {
        // Skip every check due before min(lim, tNext): nothing happens until tNext.
        while (nextSweep <= tNext && nextSweep < lim) nextSweep += sweepMs;
        continue;
      }
      now = Math.max(now, nextSweep);
      nextSweep += sweepMs;
      sweep();
      dirty = false;
      if (policy.nextCheckAt) wakeAskAt = now;
      if (policy.quietUntil) quiet = policy.quietUntil(now);
      continue;
    }
    if (!hasSweep && nextSweep <= tNext) nextSweep = Infinity;
    now = tNext;
    dirty = true;
    if (tSlot <= tNext) {
      // Loads finish first, then joiners touch the loaded model, then invocations complete.
      for (let b = 0; b < bgEnd.length; b++) {
        if (bgEnd[b]! <= now) {
          completeLoad(bgModel[b]!, true);
          bgEnd.splice(b, 1);
          bgModel.splice(b, 1);
          b--;
        }
      }
      for (let s = 0; s < K; s++) {
        if (slotLoadEnd[s]! <= now) {
          slotLoadEnd[s] = Infinity;
          completeLoad(slotModel[s]!, false);
        }
      }
      for (let s = 0; s < K; s++) {
        if (slotTouch[s]! <= now) {
          slotTouch[s] = Infinity;
          touch(slotModel[s]!);
        }
      }
      for (let s = 0; s < K; s++) {
        if (slotFinish[s]! <= now && slotLoadEnd[s] === Infinity && slotTouch[s] === Infinity) {
          slotFinish[s] = Infinity;
          inFlight[slotModel[s]!]!--;
          totalInFlight--;
          slotModel[s] = -1;
          busySlots--;
          blocked = false;
        }
      }
      blocked = false;
      continue;
    }

    // Dispatch invocation i.
    const f = fns[i]!;
    const arrival = times[i]!;
    const e = entries[f]!;
    const inWindow = arrival >= from && arrival < to;
    if (sweepMs === 0 && hasSweep) sweep();
    let finish: number;
    let wait = 0;
    if (e.sizeBytes > budget) {
      if (inWindow) { counted++; refused++; }
      pop.record(f);
      future?.served(f);
      i++;
      continue;
    }
    let s = 0;
    while (slotModel[s] !== -1) s++;
    if (state[f] === RESIDENT) {
      inFlight[f]!++;
      totalInFlight++;
      touch(f);
      finish = now + e.execMs;
    } else if (state[f] === LOADING) {
      inFlight[f]!++;
      totalInFlight++;
      wait = loadDoneAt[f]! - now;
      slotTouch[s] = loadDoneAt[f]!;
      finish = loadDoneAt[f]! + e.execMs;
    } else {
      if (!makeRoom(f)) {
        if (busySlots > 0 || bgEnd.length > 0) {
          blocked = true; // wait for an in-flight model to finish
          continue;
        }
        if (inWindow) { counted++; refused++; }
        pop.record(f);
        future?.served(f);
        i++;
        continue;
      }
      state[f] = LOADING;
      setUsed(e.sizeBytes);
      inFlight[f]!++;
      totalInFlight++;
      loads++;
      wait = e.loadMs;
      loadDoneAt[f] = now + e.loadMs;
      slotLoadEnd[s] = loadDoneAt[f]!;
      finish = loadDoneAt[f]! + e.execMs;
    }
    slotModel[s] = f;
    slotFinish[s] = finish;
    busySlots++;
    pop.record(f);
    future?.served(f);
    if (inWindow) {
      counted++;
      if (wait > 0 || state[f] !== RESIDENT) cold++;
      loadDelay += wait;
      execTotal += e.execMs;
      const lat = finish - arrival;
      latencySum += lat;
      queueSum += now - arrival;
      latencies[nLat++] = lat;
    }
    i++;
    if ((i & progressMask) === 0) opts.onProgress?.(i, N);
  }
  account(now);

  const served = counted - refused;
  const windowStart = Math.max(0, from);
  const windowEnd = Math.min(now, to);
  const windowMs = Math.max(0, windowEnd - windowStart);
  return {
    policy: policy.name,
    budgetBytes: budget,
    invocations: counted,
    refused,
    coldStarts: cold,
    hitRatio: served > 0 ? (served - cold) / served : 0,
    loads,
    prewarmLoads,
    evictions,
    expirations,
    loadDelayMs: loadDelay,
    meanLoadDelayMs: served > 0 ? loadDelay / served : 0,
    execMs: execTotal,
    loadDelayPctOfExec: execTotal > 0 ? (100 * loadDelay) / execTotal : 0,
    meanLatencyMs: served > 0 ? latencySum / served : 0,
    p99LatencyMs: nLat > 0 ? kthSmallest(latencies, nLat, Math.min(nLat - 1, Math.ceil(0.99 * nLat) - 1)) : 0,
    meanQueueMs: served > 0 ? queueSum / served : 0,
    byteSeconds: byteMs / 1000,
    meanUsedBytes: windowMs > 0 ? byteMs / windowMs : 0,
    peakUsedBytes: peak,
    simulatedMs: now,
    wallMs: performance.now() - wall0,
  };
}
