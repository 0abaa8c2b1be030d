import { cremebruleePlus, type CremeBruleePlusOptions } from '../runtime/policies/cremebrulee-plus';
import { readAzure } from './azure';
import { simulate } from './engine';
import { mapModels, readPaperModels } from './models';
import { createSimPolicy, type SimPolicyName } from './policies';
import { readJson, totalBytes, TraceError } from './trace';
import { parseFlags, runTool, UsageError } from './usage';

/**
 * Tuning harness for cremebrulee-plus: runs variants (JSON option objects) against the other
 * online policies on one window of the trace and prints, per budget, each variant's load delay
 * (% of exec) minus the best other online policy's (negative: the variant is closest to the
 * oracles). Tune with `--report-to 50%` only; report held-out numbers with the main CLI.
 * `--baseline FILE` (a `--policy all` sweep's `--out` JSON over the same trace, window and budgets)
 * takes the other policies' results from that file instead of running them again.
 *
 *   npx tsx sim/tune.ts --azure ../shared/traces/azure2019-sample100 --models ../shared/models/paper-models.json \
 *     --report-to 50% --variant '{}' --variant '{"prefetch":true}'
 */
const HELP = `usage: npx tsx sim/tune.ts --azure DIR --models FILE [--report-from T] [--report-to T] [--budgets LIST]
                        [--spread even|random] [--seed N] [--variant JSON]... [--baseline FILE]

Runs cremebrulee-plus variants (JSON option objects, default {}) against the other online policies
on one window of an Azure Functions 2019 trace and prints, per budget (% of all models' size), each
variant's load delay (% of exec) minus the best other policy's. --report-from/--report-to: % of the
trace. --baseline: a --policy all sweep's --out JSON over the same trace, window and budgets.`;

type Baseline = { policy: string; budgetPct: number; loadDelayPctOfExec: number }[];

function main(argv: string[]): number {
  const a = parseFlags(argv, {
    azure: { type: 'string' }, models: { type: 'string' }, spread: { type: 'string' }, seed: { type: 'string' },
    'report-from': { type: 'string' }, 'report-to': { type: 'string' }, budgets: { type: 'string' },
    variant: { type: 'string', multiple: true }, baseline: { type: 'string' },
  }, HELP);
  if (!a) return 0;
  if (a.azure === undefined || a.models === undefined) throw new UsageError('give --azure DIR (the trace) and --models FILE (the model catalogue)');
  const variants = (a.variant ?? ['{}']).map((v) => {
    try {
      return JSON.parse(v) as CremeBruleePlusOptions;
    } catch (e) {
      throw new UsageError(`--variant ${v}: not JSON (${(e as Error).message})`);
    }
  });
  const seed = Number(a.seed ?? 1);
  const trace = readAzure(a.azure, { spread: (a.spread ?? 'even') as 'even' | 'random', seed });
  const models = mapModels(trace, readPaperModels(a.models), 'rank', seed);
  const all = totalBytes(models);
  const pct = (v: string | undefined) => (v === undefined ? undefined : (Number(v.replace('%', '')) / 100) * trace.spanMs);
  const window = { reportFromMs: pct(a['report-from']), reportToMs: pct(a['report-to']) };
  const budgets = (a.budgets ?? '2.5,5,7.5,10,15,20,25,30,40,50,60,75,100').split(',').map(Number);
  const others: SimPolicyName[] = ['cremebrulee', 'lru', 'lfu', 'gdsf', 'ttl', 'random', 'hybrid-histogram'];
  const opts = (b: number) => ({ budgetBytes: Math.max(1, Math.round((b / 100) * all)), ...Object.fromEntries(Object.entries(window).filter(([, v]) => v !== undefined)) });
  const baseline = a.baseline === undefined ? undefined : (readJson(a.baseline) as { results: Baseline }).results;
  const fromBaseline = (p: string, b: number) => {
    const r = baseline!.find((x) => x.policy === p && Math.abs(x.budgetPct - b) < 1e-9);
    if (!r) throw new TraceError(`${a.baseline}: no ${p} result at ${b}% (a --policy all sweep over the same budgets)`);
    return r.loadDelayPctOfExec;
  };
  console.log(['budget', 'best other', 'its delay', ...variants.map((v) => JSON.stringify(v))].join('\t'));
  for (const b of budgets) {
    let best = { name: '', d: Infinity };
    for (const p of others) {
      const d = baseline ? fromBaseline(p, b) : simulate(trace, models, createSimPolicy(p, { seed }), opts(b)).loadDelayPctOfExec;
      if (d < best.d) best = { name: p, d };
    }
    const ds = variants.map((v) => simulate(trace, models, cremebruleePlus(v), opts(b)).loadDelayPctOfExec - best.d);
    console.log([`${b}%`, best.name, best.d.toFixed(3), ...ds.map((d) => (d >= 0 ? '+' : '') + d.toFixed(3))].join('\t'));
  }
  return 0;
}

runTool('sim/tune', () => main(process.argv.slice(2)));
