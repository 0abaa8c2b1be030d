import type { EntryFacts, EvictionPolicy, EvictionRequest, FutureFacts, Victim } from '../runtime/policies/types';
import { simHints, type NumberedVictim, type SimHints } from './hints';
import { PopularityTracker } from './popularity';
import type { SimModel, Trace } from './trace';

export interface SimOptions {
  /** Byte budget of the node; used bytes (resident plus loading) never exceed it. */
  budgetBytes: number;
  /** Invocations a node runs at a time. @default 1 (the paper's serial node) */
  slots?: number;
  /** Popularity refresh period, virtual ms. @default 10000 */
  popularityRefreshMs?: number;
  /**
   * Time of the first popularity refresh, virtual ms (then every `popularityRefreshMs`). @default popularityRefreshMs
   * (To line the refreshes up with a live node's cron, which fires on the wall clock's multiples of 10 s.)
   */
  popularityFirstRefreshMs?: number;
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
  /** Each counted invocation served, at dispatch: its model, its wait for a load (ms), cold or not (per-function figures). */
  onServe?: (key: string, waitMs: number, cold: boolean) => void;
  /** Each load started (on demand or pre-warm), at its start. */
  onLoadStart?: (key: string, prewarm: boolean) => void;
  /** Called every 2^18 dispatched invocations. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Called once, the first time the budget decides anything: a load that needs room (the used
   * bytes plus its size above the budget), a model larger than the budget, or from the start when
   * the policy is told the free memory (`prewarm`, `idleCheckPeriod`, `checkAfterHooks`,
   * `checkSignals`). Nothing else here reads the budget, so a run in which it is never called
   * makes the same decisions, and gives the same result but for `budgetBytes`, at any budget at or
   * above its `peakUsedBytes` (every room check there is of a sum it reached). sim/sweep.ts reuses it.
   */
  onBudgetBound?: () => void;
  /**
   * Take every event through the general turn, without the serial node's whole-call steps
   * (`serveSerial`): for tests, which require the same results either way. @default false
   */
  plainTurns?: boolean;
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

/** From this length on, `kthSmallest` first narrows the search to the values about k's rank. */
const NARROW_FROM = 1 << 16;
/** `kthSmallest`'s sample of a long array (values, by stride), and the sample ranks on either side of k's. */
const SAMPLE = 1024;
const SAMPLE_MARGIN = 16;

/**
 * The k-th smallest (0-based) of a[0..n), the value `a.subarray(0, n).sort()[k]` has, found by
 * quickselect (reorders a[0..n)). For finite numbers (latencies), where the two agree exactly.
 * A long array (a run's latencies: millions, k at the 99th percentile) is first narrowed: two
 * bounds are read off a sample about k's rank, and when fewer than k + 1 values lie below the
 * lower and k is among the values between them, the k-th is the (k - below)-th of those, which
 * alone are searched (a count, so any bounds give the same value; the sample decides only how
 * few are searched). Otherwise the whole array is.
 */
export function kthSmallest(a: Float64Array, n: number, k: number): number {
  if (n >= NARROW_FROM) {
    const step = Math.floor(n / SAMPLE);
    const sample = new Float64Array(SAMPLE);
    for (let j = 0; j < SAMPLE; j++) sample[j] = a[j * step]!;
    sample.sort();
    const at = Math.floor((k / n) * SAMPLE);
    const low = sample[Math.max(0, at - SAMPLE_MARGIN)]!;
    const high = sample[Math.min(SAMPLE - 1, at + SAMPLE_MARGIN)]!;
    // One pass: the values below are counted, the values between swapped to the front (the
    // array keeps every value, for the search of the whole when k is not among them).
    let below = 0;
    let between = 0;
    for (let j = 0; j < n; j++) {
      const v = a[j]!;
      if (v < low) below++;
      else if (v <= high) {
        a[j] = a[between]!;
        a[between++] = v;
      }
    }
    if (below <= k && k < below + between) return quickselect(a, between, k - below);
  }
  return quickselect(a, n, k);
}

/** `kthSmallest` by quickselect alone. */
function quickselect(a: Float64Array, n: number, k: number): number {
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
  // usesWithin's counts: upTo[f] is how many arrivals of function f come at or before `lim`, the
  // highest limit asked so far, kept by one cursor over every arrival in time order (allTimes,
  // allFns). Limits only grow as the clock moves, so a call reads a count (and the cursor moves
  // over each arrival once in a run) instead of walking f's arrivals; a lower limit falls back to
  // a binary search from the served pointer.
  private readonly allTimes: Float64Array;
  private readonly allFns: ArrayLike<number>;
  private readonly upTo: Uint32Array;
  private cursor = 0;
  private lim = -Infinity;
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

  /** `all`: every arrival in time order (the trace's `times` and `fns`); made from `perFn` when not given. */
  constructor(
    private readonly perFn: readonly Float64Array[],
    private readonly keyIndex: ReadonlyMap<string, number>,
    all?: { times: Float64Array; fns: ArrayLike<number> },
  ) {
    this.servedCount = new Uint32Array(perFn.length);
    this.upTo = new Uint32Array(perFn.length);
    if (all) {
      this.allTimes = all.times;
      this.allFns = all.fns;
    } else {
      const pairs = perFn.flatMap((arr, f) => Array.from(arr, (t) => [t, f] as const)).sort((a, b) => a[0] - b[0]);
      this.allTimes = Float64Array.from(pairs, (p) => p[0]);
      this.allFns = Uint32Array.from(pairs, (p) => p[1]);
    }
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

  /** `nextUse` of function number f (the oracles' `numberModels` path: no key looked up). */
  nextUseOf(f: number): number {
    const arr = this.perFn[f]!;
    const p = this.servedCount[f]!;
    return p < arr.length ? arr[p]! : Infinity;
  }

  /**
   * The time of function number f's last arrival (-Infinity if none): from a limit at or past it
   * on, `usesWithinOf(f, ...)` counts every arrival not yet served.
   */
  lastUseOf(f: number): number {
    const arr = this.perFn[f]!;
    return arr.length > 0 ? arr[arr.length - 1]! : -Infinity;
  }

  usesWithin(key: string, now: number, horizonMs: number): number {
    const f = this.indexOf(key);
    return f < 0 ? 0 : this.usesWithinOf(f, now, horizonMs);
  }

  /** `usesWithin` of function number f (the oracles' `numberModels` path: no key looked up). */
  usesWithinOf(f: number, now: number, horizonMs: number): number {
    const start = this.servedCount[f]!;
    const lim = now + horizonMs;
    if (lim >= this.lim) {
      if (lim > this.lim) this.advance(lim);
      // Arrivals at or before lim from the served pointer on (none when it is past them).
      const n = this.upTo[f]! - start;
      return n > 0 ? n : 0;
    }
    const arr = this.perFn[f]!;
    let lo = start;
    let hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (arr[mid]! <= lim) lo = mid + 1;
      else hi = mid;
    }
    return lo - start;
  }

  /** Counts the arrivals up to `lim` (higher than any limit before). */
  private advance(lim: number): void {
    const { allTimes, allFns, upTo } = this;
    const n = allTimes.length;
    let c = this.cursor;
    while (c < n && allTimes[c]! <= lim) upTo[allFns[c++]!]!++;
    this.cursor = c;
    this.lim = lim;
  }
}

/** The policy instances that have run (`NodeRun` refuses one a second time). */
const ran = new WeakSet<EvictionPolicy>();

/**
 * Runs one policy over a trace on a virtual clock, with the runtime's cache rules: single-flight
 * loads, in-flight models never evicted, used bytes never above the budget, a model larger than
 * the budget refused. Invocations are served first come, first served by `slots` slots; a miss
 * occupies its slot for load plus exec; an invocation whose model is loading waits for that load
 * (a cold start). Policy hooks are called as `WarmPool` calls them.
 */
export function simulate(trace: Trace, models: readonly SimModel[], policy: EvictionPolicy, opts: SimOptions): SimResult {
  return new NodeRun(trace, models, policy, opts).run();
}

/**
 * One run of `simulate`. `run` is the event loop; each turn takes the earliest of these, in this
 * order of precedence, and hands it to the method named for its phase:
 *
 * 0. `serveSerial`: on a serial node, while no check and no pre-warm load can come between, whole
 *    calls in one step each (the phases below, in their order, without a turn's search);
 * 1. `refreshPopularity`: the popularity refreshes due (every 10 s of virtual time), each at its
 *    time; they change only the clock and the rates, so the turn goes on to the next phase;
 * 2. `periodicCheck`: a keep-alive / pre-warm check due (every `sweepMs`), unless the policy's
 *    hints say it would do nothing (skipped checks do not end the turn either);
 * 3. `finishDue`: loads that complete (pre-warm and demand), joiners that touch a loaded model,
 *    invocations that complete;
 * 4. `dispatch`: the next invocation takes a free slot (hit, join a load, or make room and load).
 *
 * A call's path: `dispatch` (→ `makeRoom` → the policy's `selectVictims` → `evict`), then
 * `finishDue` at its load's end (`completeLoad` → `onLoad`) and at its completion (slot freed); on
 * the serial path, `serveMiss` takes the same steps in one call.
 */
class NodeRun {
  // Inputs.
  private readonly trace: Trace;
  private readonly policy: EvictionPolicy;
  private readonly hints: SimHints;
  private readonly opts: SimOptions;
  private readonly budget: number;
  private readonly K: number;
  private readonly sweepMs: number;
  private readonly from: number;
  private readonly to: number;
  private readonly N: number;
  private readonly plainTurns: boolean;
  /**
   * The policy took the models' numbers (`SimHints.numberModels`): evictions are reported by
   * number, and victims that carry one are read by it (`modelOf`).
   */
  private readonly numbered: boolean;
  private readonly onEvictNumber: ((i: number, now: number) => void) | undefined;
  /** `SimHints.expiryCandidateNumbers`, when the policy took the numbers. */
  private readonly expiryIds: ((now: number) => readonly number[]) | undefined;
  /** `SimHints.expiredNumbers` and `prewarmNumbers` (with `modelStates`), when the policy took the numbers. */
  private readonly expiredNums: ((now: number, out: Int32Array) => number) | undefined;
  private readonly prewarmNums: ((now: number, freeBytes: number, out: Int32Array) => number) | undefined;
  /** Their answers (room for twice the models). */
  private readonly numsOut: Int32Array;
  /** `SimHints.selectAmongLoadedByShare`, when the models are numbered and popularity kept (else undefined). */
  private readonly byShare: SimHints['selectAmongLoadedByShare'];
  /** Every invocation arrives in the report window (no `reportFromMs` / `reportToMs` bound). */
  private readonly allInWindow: boolean;
  // The policy's hooks and the options' callbacks, read once: a sweep thread runs every policy
  // through this code, so reading a hook off the policy at each call is a lookup among all their shapes.
  private readonly onLoad: EvictionPolicy['onLoad'];
  private readonly onAccess: EvictionPolicy['onAccess'];
  private readonly onEvict: EvictionPolicy['onEvict'];
  private readonly onServe: SimOptions['onServe'];
  private readonly onLoadStart: SimOptions['onLoadStart'];
  private readonly onEvicted: SimOptions['onEvict'];
  /** `SimOptions.onBudgetBound` until it is called. */
  private onBound: SimOptions['onBudgetBound'];

  // Popularity (the runtime's decayed share), skipped for policies that never read it.
  private readonly pop: PopularityTracker;
  private readonly usesPop: boolean;
  /** Whether `onLoad` / `onAccess` get fresh popularity (the policy has the hook and reads popularity). */
  private readonly popOnLoad: boolean;
  private readonly popOnAccess: boolean;

  // Models: state, in-flight count, load completion time, the facts handed to the policy.
  private readonly state: Uint8Array;
  private readonly inFlight: Int32Array;
  private readonly loadDoneAt: Float64Array;
  /** How long each model's load takes (its entry's `loadMs` is what the policy is told: `SimModel.policyLoadMs`). */
  private readonly loadTime: Float64Array;
  /** Each model's size and execution time (its entry's `sizeBytes` and `execMs`), read by number on the path of a call. */
  private readonly sizeOf: Float64Array;
  private readonly execOf: Float64Array;
  private readonly entries: SimEntry[];
  private readonly keyIndex = new Map<string, number>();
  // Resident models (state RESIDENT), with positions for O(1) removal.
  private readonly resident: Int32Array;
  private readonly residentPos: Int32Array;
  private nResident = 0;
  /** The resident entries, in `resident` order (the candidates as they are when nothing is in flight). */
  private readonly residentEntries: SimEntry[] = [];
  private readonly cands: SimEntry[] = [];
  // `freshen`'s bookkeeping: the popularity epoch (`PopularityTracker.epoch`) of its last pass over
  // every resident entry (-1: none yet), and the models made resident since (nJoined of them;
  // listed while they fit in `joined`).
  private residentFreshAt = -1;
  private readonly joined: Int32Array;
  private nJoined = 0;
  /** `evictableAmong`'s answer when it is one entry (filled in place: no array resized per check). */
  private readonly oneEntry: SimEntry[] = [];
  /** `evictableAmong`'s models, in resident order (a model's place in it is its resident position). */
  private readonly amongScratch: Int32Array;
  /** Which models `evictableAmong` has taken in this call (`amongStampNow`), to take each once. */
  private readonly amongStamp: Int32Array;
  private amongStampNow = 0;
  /** `evictableAmong`'s keys' models (reused). */
  private readonly keyIds: number[] = [];
  /** `evictableAmong`'s answers by length (each filled in place: no array resized per check). */
  private readonly amongOut: SimEntry[][] = [];
  // `isResidentKey`'s cache by position: the n-th key a `prewarm` call asks about is usually the
  // one the n-th was last time (policies go through their wanted models in a stable order), so a
  // string comparison instead of a `Map` lookup. A cache: a key found there has that index for good.
  private resAsked = 0;
  private readonly resKeys: (string | undefined)[] = [];
  private readonly resIdx: number[] = [];
  private totalInFlight = 0;
  // Bytes of the resident models, kept as they come and go: when nothing is in flight, the
  // evictable bytes. Exact (integer sums, any order) when every size is an integer.
  private residentBytes = 0;
  private readonly exactSizes: boolean;

  // Slots: a slot's invocation may first load (loader) or wait for another's load (joiner).
  private readonly slotFinish: Float64Array;
  private readonly slotLoadEnd: Float64Array;
  private readonly slotTouch: Float64Array;
  private readonly slotModel: Int32Array;
  private busySlots = 0;
  // Pre-warm loads, outside the slots.
  // Pre-warm loads, outside the slots, in the order they started: nBg of them (at most one per model).
  private readonly bgModel: Int32Array;
  private readonly bgEnd: Float64Array;
  private nBg = 0;
  /** The earliest of `bgEnd` (Infinity: none). */
  private bgNext = Infinity;

  // Oracles see the invocations not yet served.
  private readonly future: FutureIndex | undefined;
  /** One request object, filled in for each call (policies read it during the call only). */
  private readonly req: { -readonly [K in keyof EvictionRequest]: EvictionRequest[K] };

  // Clock and memory accounting.
  private now = 0;
  private used = 0;
  private peak = 0;
  private usedSince = 0;
  private byteMs = 0;
  /** A call waits for memory that in-flight models hold. */
  private blocked = false;
  /** The next invocation to dispatch. */
  private i = 0;

  // Periodic checks.
  private nextSweep: number;
  private readonly hasSweep: boolean;
  // Lazy checks (the policy's `nextCheckAt` / `checkAfterHooks` / `quietUntil` hints): a check due
  // before `quiet`, or before `checkAfterHooks`' answer, or before `wake` while nothing has happened
  // since the last check (`dirty` false), is skipped.
  private wake = -Infinity;
  private quiet = -Infinity;
  private dirty = true;
  // `nextCheckAt` is asked only when its answer is used (nothing has happened since the check, so
  // the policy's answer is the one it would have given right after): the time of that check.
  private wakeAskAt = NaN;
  // `checkAfterHooks` read from its signals (`SimHints.checkSignals`) where they suffice: its
  // bounds (undefined: no signals), the models it watches, and whether a call of a watched model
  // has ended since it was last asked.
  private readonly sigBounds: Float64Array | undefined;
  private readonly sigWatch: Uint8Array;
  private watchedEnded = true;

  // Counters (invocations arriving in the report window).
  private counted = 0;
  private refused = 0;
  private cold = 0;
  private loads = 0;
  private prewarmLoads = 0;
  private evictions = 0;
  private expirations = 0;
  private loadDelay = 0;
  private execTotal = 0;
  private latencySum = 0;
  private queueSum = 0;
  private readonly latencies: Float64Array;
  private nLat = 0;
  private readonly wall0 = performance.now();

  constructor(trace: Trace, models: readonly SimModel[], policy: EvictionPolicy, opts: SimOptions) {
    const F = trace.functions.length;
    if (models.length !== F) throw new RangeError(`simulate: ${models.length} models for ${F} functions`);
    const budget = opts.budgetBytes;
    if (!(Number.isFinite(budget) && budget > 0)) throw new RangeError(`simulate: budgetBytes must be a positive number, got ${budget}`);
    const K = opts.slots ?? 1;
    if (!(Number.isInteger(K) && K >= 1)) throw new RangeError(`simulate: slots must be an integer >= 1, got ${K}`);
    const sweepMs = opts.sweepMs ?? 1000;
    if (!(sweepMs >= 0)) throw new RangeError(`simulate: sweepMs must be >= 0, got ${sweepMs}`);
    // A run's hints (numbers, reused answers, lists kept at its hooks) set up a policy for that run
    // alone: a second run of the same instance would start from the first one's state.
    if (ran.has(policy)) throw new RangeError(`simulate: this ${policy.name} instance has run before; each run needs a new one (its state is its run's)`);
    ran.add(policy);
    this.trace = trace;
    this.policy = policy;
    this.hints = simHints(policy);
    this.hints.omitReasons?.(); // nothing here reads a victim's reason
    this.hints.prewarmInOrder?.(); // checks load what prewarm names in order, each that still fits
    this.hints.reuseAnswers?.(); // each answer is read before the policy is asked the same again
    this.opts = opts;
    this.budget = budget;
    this.K = K;
    this.sweepMs = sweepMs;
    this.from = opts.reportFromMs ?? -Infinity;
    this.to = opts.reportToMs ?? Infinity;
    this.N = trace.times.length;
    this.plainTurns = opts.plainTurns === true;

    this.pop = new PopularityTracker(F, opts.popularityRefreshMs, opts.popularityWindowMs);
    this.usesPop = this.hints.usesPopularity !== false;
    this.popOnLoad = this.usesPop && policy.onLoad !== undefined;
    this.popOnAccess = this.usesPop && policy.onAccess !== undefined;
    if (opts.popularityFirstRefreshMs !== undefined) {
      if (!(opts.popularityFirstRefreshMs >= 0)) throw new RangeError(`simulate: popularityFirstRefreshMs must be >= 0, got ${opts.popularityFirstRefreshMs}`);
      this.pop.nextRefreshAt = opts.popularityFirstRefreshMs;
    }
    // A refresh changes only the rates and the clock, and a move of the clock by refreshes is seen
    // by nothing (`refreshesUntil`), so a policy that never reads popularity has none.
    if (!this.usesPop) this.pop.nextRefreshAt = Infinity;

    this.state = new Uint8Array(F);
    this.inFlight = new Int32Array(F);
    this.loadDoneAt = new Float64Array(F);
    this.loadTime = Float64Array.from(models, (m) => m.loadMs);
    this.sizeOf = Float64Array.from(models, (m) => m.sizeBytes);
    this.execOf = Float64Array.from(models, (m) => m.execMs);
    this.entries = models.map((m, idx) => ({
      idx, key: m.key, sizeBytes: m.sizeBytes, loadMs: m.policyLoadMs ?? m.loadMs, execMs: m.execMs,
      popularity: 0, loadedAt: 0, lastUsedAt: 0, hits: 0,
    }));
    models.forEach((m, f) => this.keyIndex.set(m.key, f));
    this.numbered = this.hints.onEvictNumber !== undefined && this.hints.numberModels?.(models.map((m) => m.key)) === true;
    this.onEvictNumber = this.numbered ? this.hints.onEvictNumber : undefined;
    this.expiryIds = this.numbered ? this.hints.expiryCandidateNumbers : undefined;
    if (this.numbered) this.hints.modelStates?.(this.state);
    this.expiredNums = this.numbered ? this.hints.expiredNumbers : undefined;
    this.prewarmNums = this.numbered && this.hints.modelStates !== undefined ? this.hints.prewarmNumbers : undefined;
    this.numsOut = new Int32Array(this.expiredNums !== undefined || this.prewarmNums !== undefined ? 2 * F : 0);
    const sig = this.numbered && this.hints.checkAfterHooks !== undefined ? this.hints.checkSignals?.() : undefined;
    this.sigBounds = sig?.bounds;
    this.sigWatch = sig?.watch ?? new Uint8Array(F);
    this.byShare = this.numbered && this.usesPop ? this.hints.selectAmongLoadedByShare : undefined;
    this.allInWindow = this.from === -Infinity && this.to === Infinity;
    this.onLoad = policy.onLoad;
    this.onAccess = policy.onAccess;
    this.onEvict = policy.onEvict;
    this.onServe = opts.onServe;
    this.onLoadStart = opts.onLoadStart;
    this.onEvicted = opts.onEvict;
    this.onBound = opts.onBudgetBound;
    const h = this.hints;
    if (policy.prewarm !== undefined || h.idleCheckPeriod !== undefined || h.checkAfterHooks !== undefined || h.checkSignals !== undefined) this.budgetBound();
    this.resident = new Int32Array(F);
    this.amongScratch = new Int32Array(F);
    this.joined = new Int32Array(F);
    this.amongStamp = new Int32Array(F);
    this.bgModel = new Int32Array(F);
    this.bgEnd = new Float64Array(F);
    this.residentPos = new Int32Array(F).fill(-1);
    let sizeSum = 0;
    for (const m of models) sizeSum += m.sizeBytes;
    this.exactSizes = Number.isSafeInteger(sizeSum) && models.every((m) => Number.isSafeInteger(m.sizeBytes));

    this.slotFinish = new Float64Array(K).fill(Infinity);
    this.slotLoadEnd = new Float64Array(K).fill(Infinity);
    this.slotTouch = new Float64Array(K).fill(Infinity);
    this.slotModel = new Int32Array(K).fill(-1);

    this.future = opts.future === true ? new FutureIndex(perFunctionTimes(trace), this.keyIndex, trace) : undefined;
    this.req = { now: 0, needBytes: 0, candidates: this.residentEntries, incoming: this.entries[0]! };
    if (this.future) this.req.future = this.future;

    this.nextSweep = sweepMs > 0 ? sweepMs : Infinity;
    this.hasSweep = policy.expired !== undefined || policy.prewarm !== undefined;
    if (latencyScratch.length < this.N) latencyScratch = new Float64Array(this.N);
    this.latencies = latencyScratch;
  }

  /** The event loop: one event a turn, earliest first (see the class comment for the phases). */
  run(): SimResult {
    const K = this.K;
    const { slotFinish, slotLoadEnd, slotTouch } = this;
    const times = this.trace.times;
    const N = this.N;
    const serial = K === 1 && !this.plainTurns && !(this.sweepMs === 0 && this.hasSweep);
    for (;;) {
      if (serial) this.serveSerial();
      let tSlot = Infinity;
      for (let s = 0; s < K; s++) {
        const t = Math.min(slotFinish[s]!, slotLoadEnd[s]!, slotTouch[s]!);
        if (t < tSlot) tSlot = t;
      }
      if (this.bgNext < tSlot) tSlot = this.bgNext;
      const tDisp = this.i < N && this.busySlots < K && !this.blocked ? Math.max(this.now, times[this.i]!) : Infinity;
      if (tSlot === Infinity && tDisp === Infinity) break;
      const tNext = Math.min(tSlot, tDisp);
      this.refreshPopularity(tNext);
      if (this.nextSweep <= tNext) {
        if (this.hasSweep) {
          // A check that ran may change what happens next; so may one still due before tNext.
          if (this.periodicCheck(tNext) || this.nextSweep <= tNext) continue;
          // Checks skipped past tNext: the refreshes up to tNext (not only up to the check) are due.
          this.refreshPopularity(tNext);
        } else this.nextSweep = Infinity;
      }
      this.now = tNext;
      this.dirty = true;
      if (tSlot <= tNext) this.finishDue();
      else this.dispatch();
    }
    this.account(this.now);
    return this.result();
  }

  /**
   * Phase 0, on a serial node (one slot) with no call waiting for memory: whole calls, one after
   * another. The call's next event is then known without looking (its dispatch while the slot is
   * free; its load's end or the end of the pre-warm load it joins, then its completion, while it
   * runs), and only popularity refreshes, checks and pre-warm loads' ends can come before it:
   * those are taken in place, each at its time (`interrupts`), then the call's event, in the
   * order `run`'s turns would take them (the refreshes and checks due up to each event,
   * `dispatch`, `completeLoad`, the slot freed), without a turn's search for the earliest event.
   * A call (a hit, `serveMiss`) does not even occupy the slot unless something comes before
   * its load's end or its completion (nothing else can look at it before it is freed), and a
   * completion with nothing before it runs no refresh (it reads no popularity: the refreshes
   * before it are the next event's, with the same calls counted). Hands the rest to `run`'s turns
   * when a call must wait for memory that pre-warm loads hold, or when no call is left.
   */
  private serveSerial(): void {
    if (this.busySlots !== 0 || this.blocked === true) return;
    const { times, fns } = this.trace;
    const N = this.N;
    const state = this.state;
    const pop = this.pop;
    // A hit's path (`dispatch` without the slot: `touch`, then `served`) is written out below, with
    // what it reads that a run does not change in locals: read off `this` at each call (through
    // those methods), every typed array was checked again after the policy's hook, and each flag
    // was tested as any value.
    const entries = this.entries;
    const execOf = this.execOf;
    const latencies = this.latencies;
    const sigWatch = this.sigWatch;
    const policy = this.policy;
    const onAccess = this.onAccess;
    const onServe = this.onServe;
    const future = this.future;
    const usesPop = this.usesPop === true;
    const popOnAccess = this.popOnAccess === true;
    const allInWindow = this.allInWindow === true;
    while (this.i < N) {
      const arrival = times[this.i]!;
      const t = Math.max(this.now, arrival);
      if (this.dueBy(t)) {
        if (!this.skipQuiet(t)) this.interrupts(t);
      } else if (pop.nextRefreshAt <= t) this.refreshesUntil(t);
      this.now = t;
      this.dirty = true;
      const f = fns[this.i]!;
      if (state[f] === RESIDENT) {
        // A hit: dispatch, then its completion (nothing else can happen on the node meanwhile).
        // `touch(f)`, then `served(f, 0, false, fin)` (a wait of 0 adds nothing to `loadDelay`, never -0).
        const e = entries[f]!;
        e.hits++;
        e.lastUsedAt = t;
        if (popOnAccess) e.popularity = pop.share(f);
        if (onAccess !== undefined) onAccess.call(policy, e, t);
        const fin = t + execOf[f]!;
        if (usesPop) pop.record(f);
        if (future !== undefined) future.served(f);
        if (allInWindow || this.inWindow()) {
          this.counted++;
          if (onServe !== undefined) onServe(e.key, 0, false);
          this.execTotal += execOf[f]!;
          const lat = fin - arrival;
          this.latencySum += lat;
          this.queueSum += t - arrival;
          latencies[this.nLat++] = lat;
        }
        if ((++this.i & PROGRESS_MASK) === 0) this.opts.onProgress?.(this.i, this.N);
        if (this.dueBy(fin) && !this.skipQuiet(fin)) {
          this.occupy(f, fin); // something comes first, with the call in flight
          this.interrupts(fin);
          this.now = fin;
          this.dirty = true;
          this.freeSlot(0);
          continue;
        }
        if (sigWatch[f] !== 0) this.watchedEnded = true; // (the call ends)
        this.now = fin;
        continue;
      }
      if (state[f] === ABSENT && this.sizeOf[f]! <= this.budget) {
        if (this.serveMiss(f)) continue;
        return; // waits for memory that pre-warm loads hold: the turns take it
      }
      this.dispatch(); // a join of a pre-warm load, or refused (then the slot stays free)
      if (this.slotModel[0] === -1) continue;
      const g = this.slotModel[0]!;
      const loadEnd = this.slotTouch[0]!;
      if (this.dueBy(loadEnd)) {
        if (!this.skipQuiet(loadEnd)) this.interrupts(loadEnd);
      } else if (pop.nextRefreshAt <= loadEnd) this.refreshesUntil(loadEnd);
      this.now = loadEnd;
      this.dirty = true;
      // Joined a pre-warm load, which `interrupts` has just completed (it ends at loadEnd).
      this.slotTouch[0] = Infinity;
      this.touch(g);
      const fin = this.slotFinish[0]!;
      if (this.dueBy(fin) && !this.skipQuiet(fin)) this.interrupts(fin);
      this.now = fin;
      this.dirty = true;
      this.freeSlot(0);
    }
  }

  /** On a serial node, something comes by time t: a check due (for a policy with checks) or a pre-warm load's end. */
  private dueBy(t: number): boolean {
    return (this.hasSweep === true && this.nextSweep <= t) || this.bgNext <= t;
  }

  /**
   * On a serial node, `interrupts(tNext)` when the policy's signals (`SimHints.checkSignals`) say
   * that no check due up to tNext would act and no pre-warm load ends by then: the checks are
   * skipped (as `periodicCheck` skips them with the bound as its limit) and the refreshes due up
   * to tNext taken. No check in between, the refreshes come in the same order; the call's slot
   * need not be held meanwhile (nothing looks at it). False (nothing done) otherwise.
   */
  private skipQuiet(tNext: number): boolean {
    const b = this.sigBounds;
    if (b === undefined || this.watchedEnded || !(b[0]! > tNext) || !(this.budget - this.used < b[1]!) || this.bgNext <= tNext) return false;
    if (this.nextSweep <= tNext) this.nextSweep = skipChecks(this.nextSweep, this.sweepMs, tNext, Infinity);
    if (this.pop.nextRefreshAt <= tNext) this.refreshesUntil(tNext);
    return true;
  }

  /**
   * On a serial node, what `run`'s turns take before the call's event at tNext (the slot's state
   * already as the turns would have it): each turn up to it, in its order (the refreshes, then
   * each check due; a check that ran starts the turn again, as it may have started a pre-warm
   * load), a pre-warm load's end before tNext its own turn (`finishDue`'s loads), and one at
   * tNext in tNext's turn, before the call's event (as `finishDue` takes loads before the
   * slot). Then the call's event comes next (neither a check nor a load's end changes when it is).
   */
  private interrupts(tNext: number): void {
    const checks = this.hasSweep === true;
    for (;;) {
      const b = this.bgNext;
      const tn = b < tNext ? b : tNext;
      this.refreshPopularity(tn);
      if (checks && this.nextSweep <= tn) {
        if (this.periodicCheck(tn) || this.nextSweep <= tn) continue;
        this.refreshPopularity(tn);
      }
      if (b > tNext) return;
      this.now = b;
      this.dirty = true;
      this.finishBg();
      if (b === tNext) return;
    }
  }

  /**
   * Phase 1: the popularity refreshes due before the next event and the next check, each at its
   * own time (periodic events run in time order). They change nothing the turn's next event
   * depends on (only the clock, and the rates), so the turn goes on.
   */
  private refreshPopularity(tNext: number): void {
    const pop = this.pop;
    if (!(pop.nextRefreshAt <= tNext)) return; // (tUntil is at most tNext: most calls, and every call without popularity)
    const tUntil = this.hasSweep === true && this.nextSweep < tNext ? this.nextSweep : tNext;
    const idle = this.busySlots === 0 && this.nBg === 0;
    if (!(pop.nextRefreshAt <= tUntil && pop.nextRefreshAt !== Infinity && !(idle && this.i >= this.N))) return;
    this.refreshesUntil(tUntil);
  }

  /**
   * The refreshes due at or before tUntil (the first of them is due). Each moves the clock to its
   * time, at most tUntil: the next event's time, or that of a check due before it. What reads the
   * clock next (the event, which sets it, or the check, which compares it with its own time or
   * sets it to that) finds it as it would without them.
   */
  private refreshesUntil(tUntil: number): void {
    const pop = this.pop;
    do {
      this.now = Math.max(this.now, pop.nextRefreshAt);
      pop.refreshRates();
    } while (pop.nextRefreshAt <= tUntil);
    this.dirty = true; // entries' popularity changes
  }

  /**
   * Phase 2: the check due (at or before the next event), or skip the checks the hints say are
   * idle. True if a check ran.
   */
  private periodicCheck(tNext: number): boolean {
    let lim: number;
    const after = this.numbered ? this.hints.checkAfterHooks : undefined;
    if (after !== undefined) {
      // Events since the last check or not. The signals' bound when it skips the check due (no
      // watched model's call has ended since the last answer, and too little memory is free).
      const b = this.sigBounds;
      const free = this.budget - this.used;
      if (b !== undefined && !this.watchedEnded && b[0]! > this.nextSweep && b[0]! > this.now && free < b[1]!) lim = Math.max(this.quiet, b[0]!);
      else {
        this.watchedEnded = false;
        lim = Math.max(this.quiet, after(free, this.inFlightAt));
      }
    }
    else {
      if (!this.dirty && !Number.isNaN(this.wakeAskAt)) {
        this.wake = this.hints.nextCheckAt!(this.wakeAskAt);
        this.wakeAskAt = NaN;
      }
      lim = this.dirty ? this.quiet : Math.max(this.quiet, this.wake);
    }
    // A check runs at max(now, nextSweep) (later than due when a refresh moved the clock on).
    if (this.now < lim && this.nextSweep < lim) {
      // Skip every check due before min(lim, tNext): nothing happens until tNext. Before `quiet`
      // no check runs whatever happens (`quietUntil`'s contract), so when the limit is `quiet`
      // every check due before it is skipped now, not again at each event until then: the same
      // checks are skipped (each before `quiet`, and `quiet` changes only when a check runs),
      // and the first one at or after it runs, as stepping event by event would run it. (A
      // `quiet` of Infinity: no check is due ever again, and stepping to it would not end.)
      this.nextSweep = skipChecks(this.nextSweep, this.sweepMs, lim === this.quiet && lim !== Infinity ? Infinity : tNext, lim);
      return false;
    }
    const idle = this.hints.idleCheckPeriod;
    if (idle !== undefined && !this.blocked && this.now <= this.nextSweep && this.skipIdleChecks(tNext, idle(this.budget - this.used))) return false;
    this.now = Math.max(this.now, this.nextSweep);
    this.nextSweep += this.sweepMs;
    this.sweep();
    this.dirty = false;
    if (this.hints.nextCheckAt) this.wakeAskAt = this.now;
    if (this.hints.quietUntil) this.quiet = this.hints.quietUntil(this.now);
    return true;
  }

  /**
   * The policy says the check due would do nothing but move its `quietUntil` on by `period`, and
   * so would each one after it until its next hook (`SimHints.idleCheckPeriod`): the checks that
   * would run up to tNext (each at the first check time at or after the last one's quiet: every
   * ceil(period / sweepMs) checks) are skipped, and `quiet` and `nextSweep` set as the last of them
   * would leave them. Nothing happens before tNext meanwhile (no hook: the same free memory,
   * nothing loads or ends). False (nothing skipped) when the times are not whole numbers.
   */
  private skipIdleChecks(tNext: number, period: number): boolean {
    const x = this.nextSweep;
    const S = this.sweepMs;
    if (!(period >= 0 && Number.isInteger(period) && Number.isInteger(x) && Number.isInteger(S) && S > 0)) return false;
    const d = Math.max(1, Math.ceil(period / S)) * S;
    const last = x + Math.floor((tNext - x) / d) * d;
    if (!(last + d + period <= Number.MAX_SAFE_INTEGER)) return false;
    this.quiet = last + period;
    this.nextSweep = last + d;
    return true;
  }

  /** Phase 3, at `now`: loads finish first, then joiners touch the loaded model, then invocations complete. */
  private finishDue(): void {
    const { now, slotLoadEnd, slotTouch, slotFinish, slotModel } = this;
    const K = this.K;
    if (this.bgNext <= now) this.finishBg();
    for (let s = 0; s < K; s++) {
      if (slotLoadEnd[s]! <= now) {
        slotLoadEnd[s] = Infinity;
        this.completeLoad(slotModel[s]!, false);
      }
    }
    for (let s = 0; s < K; s++) {
      if (slotTouch[s]! <= now) {
        slotTouch[s] = Infinity;
        this.touch(slotModel[s]!);
      }
    }
    for (let s = 0; s < K; s++) {
      if (slotFinish[s]! <= now && slotLoadEnd[s] === Infinity && slotTouch[s] === Infinity) this.freeSlot(s);
    }
    this.blocked = false;
  }

  /** The pre-warm loads that end at or before `now` complete, in the order they started. */
  private finishBg(): void {
    const { bgEnd, bgModel, now } = this;
    let w = 0;
    let next = Infinity;
    const n = this.nBg;
    for (let b = 0; b < n; b++) {
      const end = bgEnd[b]!;
      if (end <= now) this.completeLoad(bgModel[b]!, true);
      else {
        bgEnd[w] = end;
        bgModel[w++] = bgModel[b]!;
        if (end < next) next = end;
      }
    }
    this.nBg = w;
    this.bgNext = next;
  }

  /** Phase 4, at `now`: invocation i takes a free slot (or is refused, or waits for memory). */
  private dispatch(): void {
    const now = this.now;
    const f = this.trace.fns[this.i]!;
    const e = this.entries[f]!;
    if (this.sweepMs === 0 && this.hasSweep) this.sweep();
    if (e.sizeBytes > this.budget) {
      if (this.onBound !== undefined) this.budgetBound();
      this.refuse(f);
      return;
    }
    let s = 0;
    while (this.slotModel[s] !== -1) s++;
    let finish: number;
    let wait = 0;
    const st = this.state[f];
    if (st === RESIDENT) {
      this.inFlight[f]!++;
      this.totalInFlight++;
      this.touch(f);
      finish = now + e.execMs;
    } else if (st === LOADING) {
      this.inFlight[f]!++;
      this.totalInFlight++;
      wait = this.loadDoneAt[f]! - now;
      this.slotTouch[s] = this.loadDoneAt[f]!;
      finish = this.loadDoneAt[f]! + e.execMs;
    } else {
      if (!this.makeRoom(f)) {
        if (this.busySlots > 0 || this.nBg > 0) {
          this.blocked = true; // wait for an in-flight model to finish
          return;
        }
        this.refuse(f);
        return;
      }
      wait = this.startLoad(f, false);
      this.inFlight[f]!++;
      this.totalInFlight++;
      this.slotLoadEnd[s] = this.loadDoneAt[f]!;
      finish = this.loadDoneAt[f]! + e.execMs;
    }
    this.slotModel[s] = f;
    this.slotFinish[s] = finish;
    this.busySlots++;
    this.served(f, wait, wait > 0 || this.state[f] !== RESIDENT, finish);
  }

  /**
   * A miss of invocation i (model f absent, no larger than the budget) at `now` on a serial node,
   * taken whole by `serveSerial`: `dispatch`, then what comes before its load's end, the load's
   * end, what comes before its completion, and its completion. Like a hit, it occupies the slot
   * only while something comes between. False (nothing done but the room made) when the call
   * must wait for memory that pre-warm loads hold.
   */
  private serveMiss(f: number): boolean {
    if (!this.makeRoom(f)) {
      if (this.nBg > 0) {
        this.blocked = true;
        return false;
      }
      this.refuse(f);
      return true;
    }
    const wait = this.startLoad(f, false);
    const loadEnd = this.loadDoneAt[f]!;
    const fin = loadEnd + this.execOf[f]!;
    this.served(f, wait, true, fin);
    let held = false;
    if (this.dueBy(loadEnd)) {
      if (!this.skipQuiet(loadEnd)) {
        held = true;
        this.occupy(f, fin);
        this.slotLoadEnd[0] = loadEnd;
        this.interrupts(loadEnd);
        this.slotLoadEnd[0] = Infinity;
        this.dirty = true;
      }
    } else if (this.pop.nextRefreshAt <= loadEnd) this.refreshesUntil(loadEnd);
    this.now = loadEnd;
    this.completeLoad(f, false);
    if (this.dueBy(fin) && !this.skipQuiet(fin)) {
      if (!held) this.occupy(f, fin);
      held = true;
      this.interrupts(fin);
      this.dirty = true;
    }
    this.now = fin;
    if (held) this.freeSlot(0);
    else if (this.sigWatch[f] !== 0) this.watchedEnded = true; // (the call ends)
    return true;
  }

  /** Model f's load starts at `now` (on demand, the room made; or a pre-warm, in free memory): returns how long it takes. */
  private startLoad(f: number, prewarm: boolean): number {
    this.state[f] = LOADING;
    this.setUsed(this.sizeOf[f]!);
    this.loads++;
    if (prewarm) this.prewarmLoads++;
    if (this.onLoadStart !== undefined) this.onLoadStart(this.entries[f]!.key, prewarm);
    const wait = this.loadTime[f]!;
    this.loadDoneAt[f] = this.now + wait;
    return wait;
  }

  /** Invocation i has been dispatched at `now` (model f, waiting `wait` for a load, cold or not, done at `finish`). */
  private served(f: number, wait: number, cold: boolean, finish: number): void {
    if (this.usesPop === true) this.pop.record(f);
    if (this.future !== undefined) this.future.served(f);
    if (this.allInWindow === true || this.inWindow()) {
      const arrival = this.trace.times[this.i]!;
      this.counted++;
      if (cold) this.cold++;
      if (this.onServe !== undefined) this.onServe(this.entries[f]!.key, wait, cold);
      this.loadDelay += wait;
      this.execTotal += this.execOf[f]!;
      const lat = finish - arrival;
      this.latencySum += lat;
      this.queueSum += this.now - arrival;
      this.latencies[this.nLat++] = lat;
    }
    this.i++;
    if ((this.i & PROGRESS_MASK) === 0) this.opts.onProgress?.(this.i, this.N);
  }

  /** Slot 0 holds invocation i - 1's call of model f until `finish` (a call `serveSerial` takes whole, handed to `interrupts`). */
  private occupy(f: number, finish: number): void {
    this.inFlight[f]!++;
    this.totalInFlight++;
    this.slotModel[0] = f;
    this.slotFinish[0] = finish;
    this.busySlots++;
  }

  /** Slot s's invocation completes. */
  private freeSlot(s: number): void {
    const f = this.slotModel[s]!;
    if (this.sigWatch[f] !== 0) this.watchedEnded = true;
    this.slotFinish[s] = Infinity;
    this.inFlight[f]!--;
    this.totalInFlight--;
    this.slotModel[s] = -1;
    this.busySlots--;
  }

  /** Invocation i is not served (its model does not fit). */
  private refuse(f: number): void {
    if (this.inWindow()) {
      this.counted++;
      this.refused++;
    }
    if (this.usesPop === true) this.pop.record(f);
    if (this.future !== undefined) this.future.served(f);
    this.i++;
  }

  /** Invocation i arrived in the report window: the counters count it. */
  private inWindow(): boolean {
    const arrival = this.trace.times[this.i]!;
    return arrival >= this.from && arrival < this.to;
  }

  /** The budget decided something (`SimOptions.onBudgetBound`). */
  private budgetBound(): void {
    const f = this.onBound;
    this.onBound = undefined;
    f?.();
  }

  /** Evicts the policy's victims until model f fits. False if in-flight models hold the room. */
  private makeRoom(f: number): boolean {
    const budget = this.budget;
    const need = this.used + this.sizeOf[f]! - budget;
    if (need <= 0) return true;
    const e = this.entries[f]!;
    if (this.onBound !== undefined) this.budgetBound();
    const c = this.evictable();
    let free = 0;
    if (c === this.residentEntries && this.exactSizes === true) free = this.residentBytes;
    else for (const x of c) free += x.sizeBytes;
    if (free < need) return false;
    // The resident list itself (nothing in flight) is every model loaded and not evicted, with the
    // facts of their last hook: what `selectAmongLoaded` asks for; `selectAmongLoadedByShare` reads
    // the shares from the tracker instead of the entries (left as they are).
    const byShare = c === this.residentEntries ? this.byShare : undefined;
    if (byShare !== undefined) this.pop.sync();
    else {
      this.freshen(c);
      e.popularity = this.usesPop === true ? this.pop.share(f) : 0;
    }
    this.future?.newRequest();
    const req = this.req;
    req.now = this.now;
    req.needBytes = need;
    req.candidates = c;
    req.incoming = e;
    const among = this.hints.selectAmongLoaded;
    const victims =
      byShare !== undefined ? byShare(req, this.pop) : among !== undefined && c === this.residentEntries ? among(req) : this.policy.selectVictims(req);
    const size = this.sizeOf[f]!;
    for (let j = 0; j < victims.length; j++) {
      if (this.used + size <= budget) break;
      const g = this.modelOf(victims[j]!);
      if (g !== undefined && this.state[g] === RESIDENT && this.inFlight[g] === 0) this.evict(g, 'policy');
    }
    return this.used + size <= budget;
  }

  /** A keep-alive / pre-warm check at `now`: the policy's `expired`, then its `prewarm`. */
  private sweep(): void {
    const policy = this.policy;
    const now = this.now;
    const nums = this.numsOut;
    if (this.expiredNums !== undefined) {
      const n = this.expiredNums(now, nums);
      if (n > 0) this.expireAmong(nums, n);
    } else if (policy.expired) {
      const ec = this.hints.expiryCandidates;
      const ecIds = this.expiryIds;
      const c = ecIds !== undefined ? this.evictableAmongIds(ecIds(now)) : ec ? this.evictableAmong(ec(now)) : this.evictable();
      if (c.length > 0) {
        this.freshen(c);
        const vs = policy.expired(c, now);
        for (let j = 0; j < vs.length; j++) {
          const g = this.modelOf(vs[j]!);
          if (g !== undefined && this.state[g] === RESIDENT && this.inFlight[g] === 0) this.evict(g, 'expired');
        }
      }
    }
    // No pre-warming while a call waits for memory (as the warm pool): it would evict it again.
    if (this.prewarmNums !== undefined) {
      if (this.blocked) return;
      const n = this.prewarmNums(now, this.budget - this.used, nums);
      for (let j = 0; j < n; j++) this.prewarmLoad(nums[j]!);
    } else if (policy.prewarm && !this.blocked) {
      this.resAsked = 0;
      const ws = policy.prewarm(now, this.isResidentKey, this.budget - this.used);
      for (let j = 0; j < ws.length; j++) {
        const g = this.modelOf(ws[j]!);
        if (g !== undefined) this.prewarmLoad(g);
      }
    }
  }

  /** A check's pre-warm of model g: its load starts if it is absent and fits. */
  private prewarmLoad(g: number): void {
    if (this.state[g] !== ABSENT) return;
    const size = this.sizeOf[g]!;
    if (this.used + size > this.budget) return;
    const end = this.now + this.startLoad(g, true);
    this.bgModel[this.nBg] = g;
    this.bgEnd[this.nBg++] = end;
    if (end < this.bgNext) this.bgNext = end;
  }

  /**
   * A check's expirations by number (`SimHints.expiredNumbers`): the evictable among models
   * ids[0..n) (each once) are evicted in resident order, as `expired` names them from the
   * entries `evictableAmongIds` hands it.
   */
  private expireAmong(ids: Int32Array, n: number): void {
    if (n === 1) {
      const g = ids[0]!;
      if (this.state[g] === RESIDENT && this.inFlight[g] === 0) this.evict(g, 'expired');
      return;
    }
    // Their resident positions, then the models at them, then the evictions (which move resident
    // positions).
    const ps = this.amongScratch;
    const m = this.evictablePositions(ids, n);
    for (let j = 0; j < m; j++) ps[j] = this.resident[ps[j]!]!;
    for (let j = 0; j < m; j++) this.evict(ps[j]!, 'expired');
  }

  /** Whether model g is in flight (a call runs on it or waits for its load), for `checkAfterHooks`. */
  private readonly inFlightAt = (g: number): boolean => this.inFlight[g]! > 0;

  /** The model a victim names: its number when the policy gave one (`numberModels`), else its key's. */
  private modelOf(v: Victim): number | undefined {
    const i = (v as Partial<NumberedVictim>).idx;
    return i !== undefined && this.numbered === true ? i : this.keyIndex.get(v.key);
  }

  private readonly isResidentKey = (key: string): boolean => {
    let g: number | undefined;
    const p = this.resAsked++;
    if (this.resKeys[p] === key) g = this.resIdx[p]!;
    else {
      g = this.keyIndex.get(key);
      if (g === undefined) return false;
      if (p < 64) {
        this.resKeys[p] = key;
        this.resIdx[p] = g;
      }
    }
    return this.state[g] !== ABSENT;
  };

  /**
   * Resident entries' popularity is brought up to date (the share as of the last refresh, as the
   * runtime's popularity job leaves it) only when entries are handed to the policy.
   */
  private freshen(c: readonly SimEntry[]): void {
    if (this.usesPop !== true) return;
    const pop = this.pop;
    const epoch = pop.sync();
    if (c === this.residentEntries) {
      const joined = this.joined;
      if (epoch === this.residentFreshAt && this.nJoined <= joined.length) {
        // Every resident entry that was resident at the last full pass has its share as of this
        // epoch (no refresh applied since, and every write since was of this epoch's shares):
        // only those loaded since may not.
        for (let j = 0; j < this.nJoined; j++) {
          const f = joined[j]!;
          if (this.state[f] === RESIDENT) this.entries[f]!.popularity = pop.share(f);
        }
      } else pop.fillShares(c);
      this.residentFreshAt = epoch;
      this.nJoined = 0;
      return;
    }
    pop.fillShares(c);
  }

  private completeLoad(f: number, prewarmed: boolean): void {
    this.state[f] = RESIDENT;
    this.addResident(f);
    const e = this.entries[f]!;
    // (An entry's popularity is read in a hook only: set before the hooks that get the entry.)
    if (this.popOnLoad === true) e.popularity = this.pop.share(f);
    e.loadedAt = this.now;
    e.lastUsedAt = this.now;
    e.hits = prewarmed ? 0 : 1;
    if (this.onLoad !== undefined) this.onLoad.call(this.policy, e, this.now);
  }

  private touch(f: number): void {
    const e = this.entries[f]!;
    e.hits++;
    e.lastUsedAt = this.now;
    if (this.popOnAccess === true) e.popularity = this.pop.share(f);
    if (this.onAccess !== undefined) this.onAccess.call(this.policy, e, this.now);
  }

  private evict(f: number, cause: 'policy' | 'expired'): void {
    this.state[f] = ABSENT;
    this.removeResident(f);
    this.setUsed(-this.sizeOf[f]!);
    if (cause === 'policy') this.evictions++;
    else this.expirations++;
    if (this.onEvictNumber !== undefined) this.onEvictNumber(f, this.now);
    else if (this.onEvict !== undefined) this.onEvict.call(this.policy, this.entries[f]!.key, this.now);
    if (this.onEvicted !== undefined) this.onEvicted(this.entries[f]!.key, this.now, cause);
  }

  private account(t: number): void {
    const a = Math.max(this.usedSince, this.from);
    const b = Math.min(t, this.to);
    if (b > a) this.byteMs += this.used * (b - a);
    this.usedSince = t;
  }

  private setUsed(delta: number): void {
    // (At the time of the last change account adds nothing: min(now, to) <= max(usedSince, from).)
    if (this.now !== this.usedSince) this.account(this.now);
    this.used += delta;
    if (this.used > this.peak) this.peak = this.used;
  }

  private addResident(f: number): void {
    if (this.nJoined < this.joined.length) this.joined[this.nJoined] = f;
    this.nJoined++; // (past joined.length: too many to list, the next pass takes every entry)
    this.residentBytes += this.sizeOf[f]!;
    this.residentPos[f] = this.nResident;
    this.residentEntries[this.nResident] = this.entries[f]!;
    this.resident[this.nResident++] = f;
  }

  private removeResident(f: number): void {
    this.residentBytes -= this.sizeOf[f]!;
    const p = this.residentPos[f]!;
    const last = this.resident[--this.nResident]!;
    this.resident[p] = last;
    this.residentEntries[p] = this.entries[last]!;
    this.residentEntries.pop();
    this.residentPos[last] = p;
    this.residentPos[f] = -1;
  }

  /** The evictable entries: resident and not in flight. */
  private evictable(): SimEntry[] {
    if (this.totalInFlight === 0) return this.residentEntries; // the same entries in the same order, no copy
    const cands = this.cands;
    cands.length = 0;
    for (let r = 0; r < this.nResident; r++) {
      const f = this.resident[r]!;
      if (this.inFlight[f] === 0) cands.push(this.entries[f]!);
    }
    return cands;
  }

  /** The evictable entries among `keys`, in the order `evictable()` lists them. */
  private evictableAmong(keys: readonly string[]): readonly SimEntry[] {
    const ids = this.keyIds;
    ids.length = 0;
    for (let k = 0; k < keys.length; k++) {
      const g = this.keyIndex.get(keys[k]!);
      if (g !== undefined) ids.push(g);
    }
    return this.evictableAmongIds(ids);
  }

  /** The evictable entries among models `ids`, in the order `evictable()` lists them. */
  private evictableAmongIds(ids: readonly number[]): readonly SimEntry[] {
    if (ids.length === 0) return NO_ENTRIES;
    if (ids.length === 1) {
      const g = ids[0]!;
      if (this.state[g] !== RESIDENT || this.inFlight[g] !== 0) return NO_ENTRIES;
      this.oneEntry[0] = this.entries[g]!;
      return this.oneEntry;
    }
    const ps = this.amongScratch;
    const n = this.evictablePositions(ids, ids.length);
    if (n === 0) return NO_ENTRIES;
    const out = (this.amongOut[n] ??= this.residentEntries.slice(0, n)); // (packed, n <= nResident)
    for (let j = 0; j < n; j++) out[j] = this.residentEntries[ps[j]!]!;
    return out;
  }

  /**
   * The resident positions of the evictable models among ids[0..n), each once (a stamp per model),
   * in order (an insertion sort of the few; positions differ, so any sort gives this order), into
   * `amongScratch`: returns how many.
   */
  private evictablePositions(ids: ArrayLike<number>, n: number): number {
    const ps = this.amongScratch;
    if (this.amongStampNow === 0x7fffffff) {
      this.amongStamp.fill(0);
      this.amongStampNow = 0;
    }
    const stamp = ++this.amongStampNow;
    let m = 0;
    for (let k = 0; k < n; k++) {
      const g = ids[k]!;
      if (this.state[g] !== RESIDENT || this.inFlight[g] !== 0 || this.amongStamp[g] === stamp) continue;
      this.amongStamp[g] = stamp;
      const p = this.residentPos[g]!;
      let j = m++;
      while (j > 0 && ps[j - 1]! > p) {
        ps[j] = ps[j - 1]!;
        j--;
      }
      ps[j] = p;
    }
    return m;
  }

  private result(): SimResult {
    const served = this.counted - this.refused;
    const windowStart = Math.max(0, this.from);
    const windowEnd = Math.min(this.now, this.to);
    const windowMs = Math.max(0, windowEnd - windowStart);
    const { nLat, loadDelay, execTotal } = this;
    return {
      policy: this.policy.name,
      budgetBytes: this.budget,
      invocations: this.counted,
      refused: this.refused,
      coldStarts: this.cold,
      hitRatio: served > 0 ? (served - this.cold) / served : 0,
      loads: this.loads,
      prewarmLoads: this.prewarmLoads,
      evictions: this.evictions,
      expirations: this.expirations,
      loadDelayMs: loadDelay,
      meanLoadDelayMs: served > 0 ? loadDelay / served : 0,
      execMs: execTotal,
      loadDelayPctOfExec: execTotal > 0 ? (100 * loadDelay) / execTotal : 0,
      meanLatencyMs: served > 0 ? this.latencySum / served : 0,
      p99LatencyMs: nLat > 0 ? kthSmallest(this.latencies, nLat, Math.min(nLat - 1, Math.ceil(0.99 * nLat) - 1)) : 0,
      meanQueueMs: served > 0 ? this.queueSum / served : 0,
      byteSeconds: this.byteMs / 1000,
      meanUsedBytes: windowMs > 0 ? this.byteMs / windowMs : 0,
      peakUsedBytes: this.peak,
      simulatedMs: this.now,
      wallMs: performance.now() - this.wall0,
    };
  }
}

const PROGRESS_MASK = (1 << 18) - 1;

/**
 * `while (x <= tNext && x < lim) x += step; return x`, with the same result in one jump for all
 * but the last steps when x and step are integers (whole steps below 2^53 are exact, so the sum
 * is what the steps one by one give): a node whose queue stretches virtual time skips millions
 * of idle checks.
 */
export function skipChecks(x: number, step: number, tNext: number, lim: number): number {
  const d = Math.min(tNext, lim) - x;
  // (Under two steps, k below is at most 0: most calls, which the division is left to.)
  if (d >= 2 * step && Number.isInteger(x) && Number.isInteger(step) && step > 0) {
    // At least one whole step short of min(tNext, lim): every check jumped over is one the loop skips.
    const k = Math.floor(d / step) - 1;
    if (k > 0 && x + k * step <= Number.MAX_SAFE_INTEGER) x += k * step;
  }
  while (x <= tNext && x < lim) x += step;
  return x;
}
