import type { SimResult } from './engine';
import type { SimModel, Trace } from './trace';

/**
 * An offline lower bound on load delay (and on cold starts) for the simulator's serial node, in the
 * spirit of PFOO-L (Berger, Beckmann, Harchol-Balter, "Practical Bounds on Optimal Caching with
 * Variable Object Sizes", SIGMETRICS 2018).
 *
 * With one slot, invocations are dispatched in arrival order whatever the policy, and a miss waits
 * exactly its model's load time. Call the dispatches steps 0..N−1. For invocation k of a model
 * whose previous invocation is j, k is a hit only if the model stays resident from step j to step
 * k (loads happen only on a miss), i.e. at each step m with j < m ≤ k. At every step the resident
 * bytes are at most the budget B. Weighting step m by any w_m ≥ 0 and summing those constraints:
 *
 *     Σ over hits (j, k) of size × W(j, k) ≤ B × Σ_m w_m,     W(j, k) = Σ_{j<m≤k} w_m.
 *
 * Minimising the load delay (the load time of every non-hit) under this one knapsack constraint,
 * with hits allowed to be fractional, gives a bound no policy beats: take the reuse intervals in
 * decreasing order of load time saved per unit of weighted space-time until the budget is spent.
 * First uses are always misses (compulsory). Two weightings are tried and the larger bound kept
 * (both are valid): w_m = 1 (logical time, as PFOO-L) and w_m = d*_m − d*_{m−1}, where d* is the
 * dispatch time when no call ever waits for a load (real time as far as it is policy-free).
 * The cold-start bound is the same knapsack with a saving of 1 per hit.
 *
 * Where it does not hold: with `--slots` above 1 (dispatch order then depends on the loads), and for
 * policies that pre-warm (`cremebrulee-plus`, `hybrid-histogram`): a background load can make k a
 * hit without the model having stayed resident since j, so they may go below it. Invocations
 * refused (model larger than the budget) are left out, as the simulator leaves them out.
 */
export interface BoundOptions {
  budgetBytes: number;
  /** Count only invocations arriving in [reportFromMs, reportToMs) (the others still use memory). */
  reportFromMs?: number;
  reportToMs?: number;
}

export interface Bound {
  /** Lower bound on the total load delay of counted invocations, ms. */
  loadDelayMs: number;
  /** Lower bound on cold starts of counted invocations. */
  coldStarts: number;
  /** Of which compulsory: first uses of a model that fits. */
  compulsoryLoadDelayMs: number;
  /** Which weighting gave the load-delay bound. */
  weighting: 'logical' | 'ideal-time';
  invocations: number;
  refused: number;
  execMs: number;
}

/** Ideal dispatch times: the serial node with no load ever waited for. */
function idealDispatchTimes({ times, fns }: Trace, models: readonly SimModel[]): Float64Array {
  const ideal = new Float64Array(times.length);
  let t = -Infinity;
  for (let m = 0; m < times.length; m++) {
    t = Math.max(times[m]!, m > 0 ? t + models[fns[m - 1]!]!.execMs : -Infinity);
    ideal[m] = t;
  }
  return ideal;
}

export function lowerBound(trace: Trace, models: readonly SimModel[], opts: BoundOptions): Bound {
  const B = opts.budgetBytes;
  if (!(Number.isFinite(B) && B > 0)) throw new RangeError(`bound: budgetBytes must be a positive number, got ${B}`);
  const from = opts.reportFromMs ?? -Infinity;
  const to = opts.reportToMs ?? Infinity;
  const { times, fns } = trace;
  const N = times.length;
  const F = models.length;
  const ideal = idealDispatchTimes(trace, models);
  // Reuse intervals of counted invocations: previous step j, this step k.
  const prev = new Int32Array(F).fill(-1);
  const iv: number[] = []; // pairs (j, k)
  let invocations = 0, refused = 0, execMs = 0, compulsory = 0, compulsoryCold = 0, restDelay = 0, restCold = 0;
  for (let k = 0; k < N; k++) {
    const f = fns[k]!;
    const m = models[f]!;
    const counted = times[k]! >= from && times[k]! < to;
    const j = prev[f]!;
    prev[f] = k;
    if (!counted) continue;
    invocations++;
    if (m.sizeBytes > B) {
      refused++;
      continue;
    }
    execMs += m.execMs;
    if (j < 0) {
      compulsory += m.loadMs;
      compulsoryCold++;
    } else {
      iv.push(j, k);
      restDelay += m.loadMs;
      restCold++;
    }
  }
  const n = iv.length / 2;
  const cost = new Float64Array(n);
  const knapsack = (capacity: number, gain: (i: number) => number): number => {
    // Fractional knapsack: highest gain per cost first. Returns the gain taken.
    const order = new Uint32Array(n);
    const ratio = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      order[i] = i;
      ratio[i] = cost[i]! > 0 ? gain(i) / cost[i]! : Infinity;
    }
    order.sort((a, b) => ratio[b]! - ratio[a]! || a - b);
    let left = capacity;
    let got = 0;
    for (const i of order) {
      const c = cost[i]!;
      if (c <= left) {
        left -= c;
        got += gain(i);
      } else {
        got += (gain(i) * left) / c;
        break;
      }
    }
    return got;
  };
  const loadOf = (i: number) => models[fns[iv[2 * i + 1]!]!]!.loadMs;
  const one = () => 1;
  let best: { delay: number; cold: number; weighting: Bound['weighting'] } | undefined;
  for (const weighting of ['logical', 'ideal-time'] as const) {
    for (let i = 0; i < n; i++) {
      const j = iv[2 * i]!;
      const k = iv[2 * i + 1]!;
      const w = weighting === 'logical' ? k - j : ideal[k]! - ideal[j]!;
      cost[i] = models[fns[k]!]!.sizeBytes * w;
    }
    const capacity = B * (weighting === 'logical' ? Math.max(0, N - 1) : N > 0 ? ideal[N - 1]! - ideal[0]! : 0);
    const delay = compulsory + Math.max(0, restDelay - knapsack(capacity, loadOf));
    const cold = compulsoryCold + Math.max(0, restCold - knapsack(capacity, one));
    if (!best || delay > best.delay) best = { delay, cold: Math.max(best?.cold ?? 0, cold), weighting };
    else best.cold = Math.max(best.cold, cold);
  }
  return {
    loadDelayMs: best!.delay,
    coldStarts: Math.ceil(best!.cold - 1e-9),
    compulsoryLoadDelayMs: compulsory,
    weighting: best!.weighting,
    invocations,
    refused,
    execMs,
  };
}

/** The bound as a result row (`policy: "bound"`): only the load-delay and cold-start figures mean anything. */
export function boundResult(trace: Trace, models: readonly SimModel[], opts: BoundOptions): SimResult {
  const wall0 = performance.now();
  const b = lowerBound(trace, models, opts);
  return { ...rowOf('bound', opts.budgetBytes, b), wallMs: performance.now() - wall0 };
}

/** A result row with only the load-delay and cold-start figures (the rest NaN or 0). */
function rowOf(policy: string, budgetBytes: number, b: Pick<Bound, 'loadDelayMs' | 'coldStarts' | 'invocations' | 'refused' | 'execMs'>): SimResult {
  const served = b.invocations - b.refused;
  return {
    policy,
    budgetBytes,
    invocations: b.invocations,
    refused: b.refused,
    coldStarts: b.coldStarts,
    hitRatio: served > 0 ? (served - b.coldStarts) / served : 0,
    loads: b.coldStarts,
    prewarmLoads: 0,
    evictions: 0,
    expirations: 0,
    loadDelayMs: b.loadDelayMs,
    meanLoadDelayMs: served > 0 ? b.loadDelayMs / served : 0,
    execMs: b.execMs,
    loadDelayPctOfExec: b.execMs > 0 ? (100 * b.loadDelayMs) / b.execMs : 0,
    meanLatencyMs: NaN,
    p99LatencyMs: NaN,
    meanQueueMs: NaN,
    byteSeconds: NaN,
    meanUsedBytes: NaN,
    peakUsedBytes: NaN,
    simulatedMs: NaN,
    wallMs: 0,
  };
}

/**
 * A feasible offline schedule, so the optimum is bracketed: `lowerBound` ≤ optimum ≤ this one's
 * load delay. It takes the bound's reuse intervals in the bound's order (most load time saved per
 * unit of space-time first, for each of its two weightings) and keeps a model resident over an
 * interval only if, at every dispatch strictly inside it, the model being used plus every model
 * kept across that dispatch still fit the budget (a segment tree of the slack per step); the
 * other reuses are misses. A kept model stays resident from one use to the next, any other is
 * evicted right after its use, so used bytes never exceed the budget at any dispatch. The
 * better of the two orders is returned. In the spirit of PFOO-U (Berger et al., SIGMETRICS
 * 2018), much simpler: a greedy on the same intervals, not a min-cost flow.
 */
export interface Schedule {
  /** Load delay of counted invocations under the schedule, ms (an upper bound of the optimum). */
  loadDelayMs: number;
  coldStarts: number;
  /** kept[j] = 1: the model used at step j stays resident until its next use (a hit). */
  kept: Uint8Array;
  weighting: 'logical' | 'ideal-time';
  invocations: number;
  refused: number;
  execMs: number;
}

/** Range add, range minimum over steps 0..n−1 (lazy segment tree). */
class MinTree {
  private readonly size: number;
  private readonly min: Float64Array;
  private readonly add: Float64Array;
  constructor(values: Float64Array) {
    let s = 1;
    while (s < Math.max(1, values.length)) s *= 2;
    this.size = s;
    this.min = new Float64Array(2 * s).fill(Infinity);
    this.add = new Float64Array(2 * s);
    this.min.set(values, s);
    for (let i = s - 1; i >= 1; i--) this.min[i] = Math.min(this.min[2 * i]!, this.min[2 * i + 1]!);
  }
  /** Minimum over [lo, hi). */
  query(lo: number, hi: number, node = 1, nl = 0, nr = this.size): number {
    if (hi <= nl || nr <= lo) return Infinity;
    if (lo <= nl && nr <= hi) return this.min[node]!;
    const mid = (nl + nr) >>> 1;
    return this.add[node]! + Math.min(this.query(lo, hi, 2 * node, nl, mid), this.query(lo, hi, 2 * node + 1, mid, nr));
  }
  /** Adds v over [lo, hi). */
  update(lo: number, hi: number, v: number, node = 1, nl = 0, nr = this.size): void {
    if (hi <= nl || nr <= lo) return;
    if (lo <= nl && nr <= hi) {
      this.min[node]! += v;
      this.add[node]! += v;
      return;
    }
    const mid = (nl + nr) >>> 1;
    this.update(lo, hi, v, 2 * node, nl, mid);
    this.update(lo, hi, v, 2 * node + 1, mid, nr);
    this.min[node] = this.add[node]! + Math.min(this.min[2 * node]!, this.min[2 * node + 1]!);
  }
}

export function feasibleSchedule(trace: Trace, models: readonly SimModel[], opts: BoundOptions): Schedule {
  const B = opts.budgetBytes;
  if (!(Number.isFinite(B) && B > 0)) throw new RangeError(`schedule: budgetBytes must be a positive number, got ${B}`);
  const from = opts.reportFromMs ?? -Infinity;
  const to = opts.reportToMs ?? Infinity;
  const { times, fns } = trace;
  const N = times.length;
  const F = models.length;
  const ideal = idealDispatchTimes(trace, models);
  // Slack at each step: the budget less the model in use (a model larger than the budget is refused, holds nothing).
  const slack0 = new Float64Array(N);
  for (let m = 0; m < N; m++) {
    const s = models[fns[m]!]!.sizeBytes;
    slack0[m] = B - (s > B ? 0 : s);
  }
  const prev = new Int32Array(F).fill(-1);
  const iv: number[] = [];
  let invocations = 0, refused = 0, execMs = 0;
  for (let k = 0; k < N; k++) {
    const f = fns[k]!;
    const m = models[f]!;
    const j = prev[f]!;
    prev[f] = k;
    if (!(times[k]! >= from && times[k]! < to)) continue;
    invocations++;
    if (m.sizeBytes > B) {
      refused++;
      continue;
    }
    execMs += m.execMs;
    if (j >= 0) iv.push(j, k);
  }
  const n = iv.length / 2;
  let best: Schedule | undefined;
  for (const weighting of ['logical', 'ideal-time'] as const) {
    const ratio = new Float64Array(n);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const j = iv[2 * i]!;
      const k = iv[2 * i + 1]!;
      const m = models[fns[k]!]!;
      const w = weighting === 'logical' ? k - j : ideal[k]! - ideal[j]!;
      const cost = m.sizeBytes * w;
      ratio[i] = cost > 0 ? m.loadMs / cost : Infinity;
      order[i] = i;
    }
    order.sort((a, b) => ratio[b]! - ratio[a]! || a - b);
    const tree = new MinTree(slack0);
    const kept = new Uint8Array(N);
    for (const i of order) {
      const j = iv[2 * i]!;
      const k = iv[2 * i + 1]!;
      const size = models[fns[k]!]!.sizeBytes;
      // Resident over the dispatches strictly between j and k (at j and k it is the model in use).
      if (k - j > 1) {
        if (tree.query(j + 1, k) < size) continue;
        tree.update(j + 1, k, -size);
      }
      kept[j] = 1;
    }
    // Its load delay and cold starts, counted as the simulator counts them.
    let delay = 0;
    let cold = 0;
    const last = new Int32Array(F).fill(-1);
    for (let k = 0; k < N; k++) {
      const f = fns[k]!;
      const j = last[f]!;
      last[f] = k;
      const m = models[f]!;
      if (!(times[k]! >= from && times[k]! < to) || m.sizeBytes > B) continue;
      if (j < 0 || kept[j] === 0) {
        delay += m.loadMs;
        cold++;
      }
    }
    if (!best || delay < best.loadDelayMs) best = { loadDelayMs: delay, coldStarts: cold, kept, weighting, invocations, refused, execMs };
  }
  return best!;
}

/** The schedule as a result row (`policy: "offline"`): only the load-delay and cold-start figures mean anything. */
export function scheduleResult(trace: Trace, models: readonly SimModel[], opts: BoundOptions): SimResult {
  const wall0 = performance.now();
  const s = feasibleSchedule(trace, models, opts);
  return { ...rowOf('offline', opts.budgetBytes, { loadDelayMs: s.loadDelayMs, coldStarts: s.coldStarts, invocations: s.invocations, refused: s.refused, execMs: s.execMs }), wallMs: performance.now() - wall0 };
}
