import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { boundResult, scheduleResult } from './bound';
import { simulate, type SimOptions, type SimResult } from './engine';
import { createSimPolicy, isOracle, type SimPolicyName, type SimPolicyOptions, type SweepPolicyName } from './policies';
import { totalBytes, type SimModel, type Trace } from './trace';
import type { BudgetSpec } from './units';

export interface SweepOptions extends Omit<SimOptions, 'budgetBytes' | 'future'> {
  /** Policies, and `bound` (the offline lower bound, `bound.ts`). */
  policies: readonly SweepPolicyName[];
  budgets: readonly BudgetSpec[];
  policyOptions?: SimPolicyOptions;
  /** Called after each run. */
  onRun?: (r: SweepResult, index: number, total: number) => void;
}

export interface SweepResult extends SimResult {
  /** The budget as a percentage of all models' size. */
  budgetPct: number;
  /**
   * Present on a result that was not run: the run it is taken from, whose budget never decided
   * anything (`SimOptions.onBudgetBound`) and which never used more than this result's budget:
   * the same policy at a higher budget, or a policy that decides nothing unasked (`SweepQueue`).
   * The same decisions; its `wallMs` is 0.
   */
  sameAs?: { policy: string; budgetBytes: number };
}

/** One run of a sweep: a policy at a budget, and its place in the results. */
export interface SweepJob {
  index: number;
  policy: SweepPolicyName;
  budgetBytes: number;
}

/** The runs of a sweep, in result order: budgets outer, policies inner. */
export function sweepJobs(models: readonly SimModel[], opts: Pick<SweepOptions, 'policies' | 'budgets'>): SweepJob[] {
  const all = totalBytes(models);
  const jobs: SweepJob[] = [];
  for (const b of opts.budgets) {
    const budgetBytes = 'bytes' in b ? b.bytes : Math.max(1, Math.round((b.percent / 100) * all));
    for (const policy of opts.policies) jobs.push({ index: jobs.length, policy, budgetBytes });
  }
  return jobs;
}

/** The budget of `bytes` as a percentage of all models' size. */
function percentOf(models: readonly SimModel[], bytes: number): number {
  const all = totalBytes(models);
  return all > 0 ? (100 * bytes) / all : 0;
}

/**
 * Runs one job with a fresh policy instance. `onBound` is called when its budget first decides
 * something (`SimOptions.onBudgetBound`; at once for `bound` and `offline`, which are not runs).
 */
export function runOne(trace: Trace, models: readonly SimModel[], opts: SweepOptions, job: SweepJob, onBound?: () => void): SweepResult {
  const budgetPct = percentOf(models, job.budgetBytes);
  if (job.policy === 'bound' || job.policy === 'offline') {
    if ((opts.slots ?? 1) !== 1) throw new RangeError(`the ${job.policy === 'bound' ? 'bound' : 'offline schedule'} holds for one slot only (--slots 1)`);
    onBound?.();
    const o = { budgetBytes: job.budgetBytes, reportFromMs: opts.reportFromMs, reportToMs: opts.reportToMs };
    return { ...(job.policy === 'bound' ? boundResult(trace, models, o) : scheduleResult(trace, models, o)), budgetPct };
  }
  const policy = createSimPolicy(job.policy, opts.policyOptions);
  const { policies: _p, budgets: _b, policyOptions: _o, onRun: _r, ...simOpts } = opts;
  const r = simulate(trace, models, policy, { ...simOpts, budgetBytes: job.budgetBytes, future: isOracle(job.policy), ...(onBound ? { onBudgetBound: onBound } : {}) });
  return { ...r, budgetPct };
}

/** `from`'s result (a run whose budget never bound, `SweepQueue`) as the result of `job` (its policy named `name`), which it covers. */
function sameAs(from: SweepResult, job: SweepJob, name: string, models: readonly SimModel[]): SweepResult {
  const budgetPct = percentOf(models, job.budgetBytes);
  return { ...from, policy: name, budgetBytes: job.budgetBytes, budgetPct, wallMs: 0, sameAs: { policy: from.policy, budgetBytes: from.budgetBytes } };
}

/**
 * The policy decides nothing unless asked for victims (it has no `expired` and no `prewarm`): in a
 * run whose budget never decides anything it is never asked, and the run is the engine's alone.
 */
function unasked(policy: SweepPolicyName, opts: SweepOptions): boolean {
  if (policy === 'bound' || policy === 'offline') return false;
  const p = createSimPolicy(policy, opts.policyOptions);
  return p.expired === undefined && p.prewarm === undefined;
}

// A run's state in a `SweepQueue`.
const FREE = 0;
/** Taken, and its budget has not decided anything yet. */
const UNBOUND = 1;
/** Taken, and its budget decided something (or the run is over). */
const TAKEN = 2;

/**
 * The runs of a sweep in the order to take them, shared by every thread that takes them (its
 * states in an `Int32Array`, shared between threads by `sweepParallel`). A run whose budget never
 * decided anything (`SimOptions.onBudgetBound` never called) makes the same decisions at any
 * budget at or above its peak used bytes, and if its policy decides nothing unasked (`unasked`),
 * so does any such policy's: when one ends, the runs of the same policy at such budgets below its
 * own, and of other such policies at such budgets, that no thread has taken are taken as done,
 * their results its own (`sameAs`). So that they are not started meanwhile, a thread passes over
 * a run while one that may cover it is under way with its budget unbound (the engine says so as
 * soon as the budget decides anything: a load that needs room, a model larger than the budget, or,
 * from the start, a policy told the free memory), unless every run left is such a run (it then
 * takes the first: no thread waits). Each policy's budgets are in the order from the highest down.
 */
export class SweepQueue {
  /** By place in `order`: its policy is `unasked`. */
  private readonly unasked: boolean[];

  constructor(
    readonly order: readonly SweepJob[],
    private readonly state: Int32Array,
    /** Whether a result may be reused (false when the caller watches each run's events). */
    private readonly reuse: boolean,
    opts: SweepOptions,
  ) {
    const byPolicy = new Map<SweepPolicyName, boolean>();
    this.unasked = order.map((o) => byPolicy.get(o.policy) ?? byPolicy.set(o.policy, unasked(o.policy, opts)).get(o.policy)!);
  }

  /** The next run to take (its place in `order`), marked taken; -1 when none is left. */
  take(): number {
    const { order, state } = this;
    for (;;) {
      let left = false;
      let held = -1;
      for (let k = 0; k < order.length; k++) {
        if (Atomics.load(state, k) !== FREE) continue;
        left = true;
        if (this.reuse && this.heldBack(k)) {
          if (held < 0) held = k;
        } else if (Atomics.compareExchange(state, k, FREE, UNBOUND) === FREE) return k;
      }
      if (!left) return -1;
      if (held >= 0 && Atomics.compareExchange(state, held, FREE, UNBOUND) === FREE) return held;
    }
  }

  /** Run k's budget decided something. */
  bound(k: number): void {
    Atomics.store(this.state, k, TAKEN);
  }

  /**
   * Run k ended (its budget unbound if `unbound`, with `peakBytes` used at most): the runs it
   * covers, taken now as done (their places in `order`).
   */
  done(k: number, unbound: boolean, peakBytes: number): number[] {
    const covered: number[] = [];
    const { order, state } = this;
    // The runs it covers are taken before it is marked done: until then another thread holds them back.
    if (this.reuse && unbound) {
      for (let q = 0; q < order.length; q++) {
        if (this.mayCover(k, q) && order[q]!.budgetBytes >= peakBytes && Atomics.compareExchange(state, q, FREE, TAKEN) === FREE) covered.push(q);
      }
    }
    Atomics.store(state, k, TAKEN);
    return covered;
  }

  /** Run q is one that run k, unbound, covers if its budget is at or above k's peak. */
  private mayCover(k: number, q: number): boolean {
    const a = this.order[k]!;
    const b = this.order[q]!;
    return a.policy === b.policy ? b.budgetBytes < a.budgetBytes : this.unasked[k]! && this.unasked[q]!;
  }

  /** A run that may cover run k is under way, its budget unbound so far. */
  private heldBack(k: number): boolean {
    const state = this.state;
    for (let q = 0; q < state.length; q++) if (Atomics.load(state, q) === UNBOUND && this.mayCover(q, k)) return true;
    return false;
  }
}

/** What a thread reports for a run: its result, and the runs (indices in result order) it covers. */
export interface SweepDone {
  index: number;
  result: SweepResult;
  covered: number[];
}

/** Takes runs from `queue` until none is left, reporting each as it ends. */
export function takeRuns(trace: Trace, models: readonly SimModel[], opts: SweepOptions, queue: SweepQueue, report: (d: SweepDone) => void): void {
  for (let k = queue.take(); k >= 0; k = queue.take()) {
    const job = queue.order[k]!;
    let unbound = true;
    const result = runOne(trace, models, opts, job, () => {
      unbound = false;
      queue.bound(k);
    });
    const covered = queue.done(k, unbound, result.peakUsedBytes).map((q) => queue.order[q]!.index);
    report({ index: job.index, result, covered });
  }
}

// Relative single-run CPU times of the policies (the synthetic 3M-call, 500-function trace at 25%,
// measured 2026-11-28; sim/README.md "Speed" has the current ones).
const COST: Partial<Record<SweepPolicyName, number>> = {
  'hybrid-histogram': 9.7, 'cremebrulee-plus': 6.5, cremebrulee: 6.2, lfu: 6.1, random: 5.9, 'cremebrulee-oracle': 5.3, ttl: 4.8,
  belady: 4.6, gdsf: 3.4, lru: 2, bound: 1,
};
const cost = (p: SweepPolicyName) => COST[p] ?? 5;

/**
 * The runs in the order to take them: costliest policy first (so no thread is left with a long
 * run at the end), each policy's budgets from the highest down; but first, cheapest policy first,
 * the runs at budgets that hold every model (no room is ever needed there: of the policies that
 * decide nothing unasked the first run covers the others, `SweepQueue`, so it had best be the cheapest).
 */
function runOrder(jobs: readonly SweepJob[], models: readonly SimModel[]): SweepJob[] {
  const all = totalBytes(models);
  const key = (j: SweepJob) => (j.budgetBytes >= all ? -1e9 + cost(j.policy) : -cost(j.policy));
  return [...jobs].sort((a, b) => key(a) - key(b) || b.budgetBytes - a.budgetBytes || a.index - b.index);
}

/** Whether a sweep may reuse a run's result for another budget: not when the caller watches each run's events. */
function mayReuse(opts: SweepOptions): boolean {
  return opts.onEvict === undefined && opts.onServe === undefined && opts.onLoadStart === undefined;
}

/**
 * Runs every policy at every budget, one after another (each run with a fresh policy instance),
 * a policy's budgets from the highest down; a run that would make the same decisions as one at a
 * higher budget is not run (`SweepQueue`).
 */
export function sweep(trace: Trace, models: readonly SimModel[], opts: SweepOptions): SweepResult[] {
  const jobs = sweepJobs(models, opts);
  const out = new Collector(jobs, models, opts);
  const queue = new SweepQueue(runOrder(jobs, models), new Int32Array(jobs.length), mayReuse(opts), opts);
  takeRuns(trace, models, opts, queue, (d) => out.add(d));
  return out.results;
}

/** Results by index as runs end, with those they cover; `onRun` for each. */
class Collector {
  readonly results: SweepResult[];
  private done = 0;

  constructor(
    private readonly jobs: readonly SweepJob[],
    private readonly models: readonly SimModel[],
    private readonly opts: SweepOptions,
  ) {
    this.results = new Array<SweepResult>(jobs.length);
  }

  add({ index, result, covered }: SweepDone): void {
    this.put(index, result);
    for (const i of covered) {
      const job = this.jobs[i]!;
      const name = job.policy === result.policy ? result.policy : createSimPolicy(job.policy as SimPolicyName, this.opts.policyOptions).name;
      this.put(i, sameAs(result, job, name, this.models));
    }
  }

  private put(index: number, r: SweepResult): void {
    this.results[index] = r;
    this.opts.onRun?.(r, ++this.done, this.jobs.length);
  }
}

/**
 * Starts `n` sweep workers now, so they load their modules (a second or so with tsx) while the
 * caller reads the trace; hand them to `sweepParallel` as `workers`. They do not keep the process
 * alive until `sweepParallel` uses them, and it stops those it does not use.
 */
export function startSweepWorkers(n: number): Worker[] {
  return Array.from({ length: n }, () => {
    const w = startWorker();
    w.unref();
    return w;
  });
}

/** What a sweep worker is sent: the trace, the runs in the order to take them, and their shared states. */
export interface SweepWork {
  trace: Trace;
  models: readonly SimModel[];
  opts: SweepOptions;
  order: readonly SweepJob[];
  /** `SweepQueue`'s states, shared by every thread. */
  state: Int32Array;
}

/**
 * The same runs as `sweep`, with the same results in the same order, spread over `jobs` threads:
 * this one and `jobs - 1` worker threads (runs are independent: each has its own policy instance
 * and state). Every thread takes the next run from one shared queue (`SweepQueue`, in `runOrder`'s
 * order: costliest policy first after the runs at budgets that hold every model), so no thread
 * waits for another. With one job, or one run, it runs inline. `onRun` is called as runs finish
 * (this thread's at once, the workers' when this thread is free); `onProgress`, `onEvict`,
 * `onServe` and `onLoadStart` are ignored.
 */
export async function sweepParallel(
  trace: Trace,
  models: readonly SimModel[],
  opts: SweepOptions & { jobs?: number; workers?: Worker[] },
): Promise<SweepResult[]> {
  const jobs = sweepJobs(models, opts);
  const nThreads = Math.min(opts.jobs ?? availableParallelism(), jobs.length);
  const spare = opts.workers ?? [];
  if (nThreads <= 1) {
    for (const w of spare) void w.terminate();
    return sweep(trace, models, opts);
  }
  const { policies, budgets, policyOptions, slots, popularityRefreshMs, popularityWindowMs, sweepMs, reportFromMs, reportToMs } = opts;
  const plain: SweepOptions = { policies, budgets, policyOptions, slots, popularityRefreshMs, popularityWindowMs, sweepMs, reportFromMs, reportToMs };
  for (const k of Object.keys(plain) as (keyof SweepOptions)[]) if (plain[k] === undefined) delete plain[k];
  const order = runOrder(jobs, models);
  const state = new Int32Array(new SharedArrayBuffer(4 * order.length));
  const work: SweepWork = { trace: sharedTrace(trace), models, opts: plain, order, state };
  const workers = spare.slice(0, nThreads - 1);
  for (const w of spare.slice(nThreads - 1)) void w.terminate();
  while (workers.length < nThreads - 1) workers.push(startWorker());
  const out = new Collector(jobs, models, opts);
  const exits = workers.map(
    (w) =>
      new Promise<void>((resolve, reject) => {
        w.ref();
        w.on('message', (d: SweepDone) => out.add(d));
        w.on('error', reject);
        w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sweep worker exited with code ${code}`))));
        w.postMessage(work);
      }),
  );
  try {
    // This thread takes runs from the same queue.
    // (Results are reused: onEvict, onServe and onLoadStart are passed to no thread, so nothing watches a run.)
    takeRuns(trace, models, plain, new SweepQueue(order, state, true, plain), (d) => out.add(d));
    await Promise.all(exits);
  } catch (e) {
    for (const w of workers) void w.terminate();
    throw e;
  }
  return out.results;
}

/**
 * The trace with its per-call arrays in shared memory: a worker is handed views of them, not a
 * copy (36 MB for 3 M calls, copied on this thread and again in each worker).
 */
function sharedTrace(trace: Trace): Trace {
  const share = <T extends Float64Array | Uint32Array>(a: T, make: (b: SharedArrayBuffer) => T): T => {
    if (a.buffer instanceof SharedArrayBuffer) return a;
    const s = make(new SharedArrayBuffer(a.byteLength));
    s.set(a);
    return s;
  };
  return {
    ...trace,
    times: share(trace.times, (b) => new Float64Array(b)),
    fns: share(trace.fns, (b) => new Uint32Array(b)),
  };
}

/**
 * Starts a sweep worker (it waits for a `SweepWork` message). Run from TypeScript sources (tsx,
 * vitest), the worker registers tsx's loader before it imports the worker module: workers do not
 * inherit a loader that was registered with `module.register`, so passing `--import tsx` is not
 * enough.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./sweep-worker.js', import.meta.url));
  const api = typeof import.meta.resolve === 'function' ? import.meta.resolve('tsx/esm/api') : 'tsx/esm/api';
  const src = new URL('./sweep-worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { (m.register ?? m.default.register)(); return import(${JSON.stringify(src)}); })`;
  return new Worker(code, { eval: true });
}

const CSV_COLUMNS: (keyof SweepResult)[] = [
  'policy', 'budgetBytes', 'budgetPct', 'invocations', 'refused', 'coldStarts', 'hitRatio', 'loads', 'prewarmLoads',
  'evictions', 'expirations', 'loadDelayMs', 'meanLoadDelayMs', 'execMs', 'loadDelayPctOfExec', 'meanLatencyMs',
  'p99LatencyMs', 'meanQueueMs', 'byteSeconds', 'meanUsedBytes', 'peakUsedBytes', 'simulatedMs', 'wallMs',
];

export function toCsv(results: readonly SweepResult[]): string {
  const fmt = (v: unknown) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(8)) : String(v));
  return [CSV_COLUMNS.join(','), ...results.map((r) => CSV_COLUMNS.map((c) => fmt(r[c])).join(','))].join('\n') + '\n';
}
