import { simulate, type SimOptions, type SimResult } from './engine';
import { createSimPolicy, isOracle, type SimPolicyName, type SimPolicyOptions } from './policies';
import { totalBytes, type SimModel, type Trace } from './trace';
import type { BudgetSpec } from './units';

export interface SweepOptions extends Omit<SimOptions, 'budgetBytes' | 'future'> {
  policies: readonly SimPolicyName[];
  budgets: readonly BudgetSpec[];
  policyOptions?: SimPolicyOptions;
  /** Called after each run. */
  onRun?: (r: SweepResult, index: number, total: number) => void;
}

export interface SweepResult extends SimResult {
  /** The budget as a percentage of all models' size. */
  budgetPct: number;
}

/** Runs every policy at every budget (each run with a fresh policy instance). */
export function sweep(trace: Trace, models: readonly SimModel[], opts: SweepOptions): SweepResult[] {
  const all = totalBytes(models);
  const out: SweepResult[] = [];
  const total = opts.policies.length * opts.budgets.length;
  for (const b of opts.budgets) {
    const budgetBytes = 'bytes' in b ? b.bytes : Math.max(1, Math.round((b.percent / 100) * all));
    for (const name of opts.policies) {
      const policy = createSimPolicy(name, opts.policyOptions);
      const r = simulate(trace, models, policy, { ...opts, budgetBytes, future: isOracle(name) });
      const res: SweepResult = { ...r, budgetPct: all > 0 ? (100 * budgetBytes) / all : 0 };
      out.push(res);
      opts.onRun?.(res, out.length, total);
    }
  }
  return out;
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
