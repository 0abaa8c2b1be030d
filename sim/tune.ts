import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cremebruleePlus, type CremeBruleePlusOptions } from '../runtime/policies/cremebrulee-plus';
import { readAzure } from './azure';
import { simulate } from './engine';
import { mapModels, readPaperModels } from './models';
import { createSimPolicy, type SimPolicyName } from './policies';
import { totalBytes } from './trace';

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
const a = parseArgs({
  options: {
    azure: { type: 'string' }, models: { type: 'string' }, spread: { type: 'string' }, seed: { type: 'string' },
    'report-from': { type: 'string' }, 'report-to': { type: 'string' }, budgets: { type: 'string' },
    variant: { type: 'string', multiple: true }, baseline: { type: 'string' },
  },
}).values;
const seed = Number(a.seed ?? 1);
const trace = readAzure(a.azure!, { spread: (a.spread ?? 'even') as 'even' | 'random', seed });
const models = mapModels(trace, readPaperModels(a.models!), 'rank', seed);
const all = totalBytes(models);
const pct = (v: string | undefined) => (v === undefined ? undefined : (Number(v.replace('%', '')) / 100) * trace.spanMs);
const window = { reportFromMs: pct(a['report-from']), reportToMs: pct(a['report-to']) };
const budgets = (a.budgets ?? '2.5,5,7.5,10,15,20,25,30,40,50,60,75,100').split(',').map(Number);
const others: SimPolicyName[] = ['cremebrulee', 'lru', 'lfu', 'gdsf', 'ttl', 'random', 'hybrid-histogram'];
const variants = (a.variant ?? ['{}']).map((v) => JSON.parse(v) as CremeBruleePlusOptions);
const opts = (b: number) => ({ budgetBytes: Math.max(1, Math.round((b / 100) * all)), ...Object.fromEntries(Object.entries(window).filter(([, v]) => v !== undefined)) });
const baseline = a.baseline
  ? (JSON.parse(readFileSync(a.baseline, 'utf8')) as { results: { policy: string; budgetPct: number; loadDelayPctOfExec: number }[] }).results
  : undefined;
console.log(['budget', 'best other', 'its delay', ...variants.map((v) => JSON.stringify(v))].join('\t'));
for (const b of budgets) {
  let best = { name: '', d: Infinity };
  for (const p of others) {
    const d = baseline
      ? baseline.find((r) => r.policy === p && Math.abs(r.budgetPct - b) < 1e-9)!.loadDelayPctOfExec
      : simulate(trace, models, createSimPolicy(p, { seed }), opts(b)).loadDelayPctOfExec;
    if (d < best.d) best = { name: p, d };
  }
  const ds = variants.map((v) => simulate(trace, models, cremebruleePlus(v), opts(b)).loadDelayPctOfExec - best.d);
  console.log([`${b}%`, best.name, best.d.toFixed(3), ...ds.map((d) => (d >= 0 ? '+' : '') + d.toFixed(3))].join('\t'));
}
