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

/** Runs one job with a fresh policy instance. */
export function runOne(trace: Trace, models: readonly SimModel[], opts: SweepOptions, job: SweepJob): SweepResult {
  const all = totalBytes(models);
  const budgetPct = all > 0 ? (100 * job.budgetBytes) / all : 0;
  if (job.policy === 'bound' || job.policy === 'offline') {
    if ((opts.slots ?? 1) !== 1) throw new RangeError(`the ${job.policy === 'bound' ? 'bound' : 'offline schedule'} holds for one slot only (--slots 1)`);
    const o = { budgetBytes: job.budgetBytes, reportFromMs: opts.reportFromMs, reportToMs: opts.reportToMs };
    return { ...(job.policy === 'bound' ? boundResult(trace, models, o) : scheduleResult(trace, models, o)), budgetPct };
  }
  const policy = createSimPolicy(job.policy, opts.policyOptions);
  const { policies: _p, budgets: _b, policyOptions: _o, onRun: _r, ...simOpts } = opts;
  const r = simulate(trace, models, policy, { ...simOpts, budgetBytes: job.budgetBytes, future: isOracle(job.policy) });
  return { ...r, budgetPct };
}

/** Runs every policy at every budget, one after another (each run with a fresh policy instance). */
export function sweep(trace: Trace, models: readonly SimModel[], opts: SweepOptions): SweepResult[] {
  const jobs = sweepJobs(models, opts);
  const out: SweepResult[] = [];
  for (const job of jobs) {
    const res = runOne(trace, models, opts, job);
    out.push(res);
    opts.onRun?.(res, out.length, jobs.length);
  }
  return out;
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

/** What a sweep worker is sent: the trace, the runs in the order to take them, and the shared counter. */
export interface SweepWork {
  trace: Trace;
  models: readonly SimModel[];
  opts: SweepOptions;
  order: readonly SweepJob[];
  /** Index into `order` of the next run to take, shared by every thread (`Atomics.add`). */
  next: Int32Array;
}

/**
 * The same runs as `sweep`, with the same results in the same order, spread over `jobs` threads:
 * this one and `jobs - 1` worker threads (runs are independent: each has its own policy instance
 * and state). Every thread takes the next run from one shared queue, costliest first, so no thread
 * waits for another. With one job, or one run, it runs inline. `onRun` is called as runs finish
 * (this thread's at once, the workers' when this thread is free); `onProgress` and `onEvict` are
 * ignored.
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
  // Costliest first, so no thread is left with a long run at the end (relative single-run CPU
  // times on the synthetic 3M-call, 500-function trace at 25%, measured 2026-11-28; sim/README.md
  // "Speed" has the current ones).
  const COST: Partial<Record<SweepPolicyName, number>> = {
    'hybrid-histogram': 9.7, 'cremebrulee-plus': 6.5, cremebrulee: 6.2, lfu: 6.1, random: 5.9, 'cremebrulee-oracle': 5.3, ttl: 4.8,
    belady: 4.6, gdsf: 3.4, lru: 2, bound: 1,
  };
  const cost = (p: SweepPolicyName) => COST[p] ?? 5;
  const order = [...jobs].sort((a, b) => cost(b.policy) - cost(a.policy) || a.index - b.index);
  const work: SweepWork = { trace: sharedTrace(trace), models, opts: plain, order, next: new Int32Array(new SharedArrayBuffer(4)) };
  const workers = spare.slice(0, nThreads - 1);
  for (const w of spare.slice(nThreads - 1)) void w.terminate();
  while (workers.length < nThreads - 1) workers.push(startWorker());
  const results: SweepResult[] = new Array(jobs.length);
  let done = 0;
  const finished = (index: number, r: SweepResult) => {
    results[index] = r;
    opts.onRun?.(r, ++done, jobs.length);
  };
  const exits = workers.map(
    (w) =>
      new Promise<void>((resolve, reject) => {
        w.ref();
        w.on('message', (m: { index: number; result: SweepResult }) => finished(m.index, m.result));
        w.on('error', reject);
        w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sweep worker exited with code ${code}`))));
        w.postMessage(work);
      }),
  );
  try {
    // This thread takes runs from the same queue.
    for (let k = Atomics.add(work.next, 0, 1); k < order.length; k = Atomics.add(work.next, 0, 1)) {
      finished(order[k]!.index, runOne(trace, models, plain, order[k]!));
    }
    await Promise.all(exits);
  } catch (e) {
    for (const w of workers) void w.terminate();
    throw e;
  }
  return results;
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
