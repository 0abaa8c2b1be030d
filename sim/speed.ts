/**
 * Simulator speed, one run at a time on this thread: per policy and budget, wall time and this
 * process's CPU time (user + system), and calls per second by each. CPU time is what a shared
 * machine does not steal (the wall clock is, when other jobs run), so both are printed.
 * `--save FILE` writes every result without its `wallMs` (to diff two versions: decisions must be
 * bit-identical).
 *
 *   npx tsx sim/speed.ts --azure /tmp/synth3m --models ../shared/models/paper-models.json \
 *     [--policies all] [--budgets 25%] [--rounds 1] [--save FILE.json]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readAzure } from './azure';
import { mapModels, readPaperModels } from './models';
import { SIM_POLICIES, type SweepPolicyName } from './policies';
import { runOne, sweepJobs, type SweepResult } from './sweep';
import { parseBudget, type BudgetSpec } from './units';

const { values: a } = parseArgs({
  options: {
    azure: { type: 'string' },
    models: { type: 'string' },
    mapping: { type: 'string', default: 'rank' },
    seed: { type: 'string', default: '1' },
    policies: { type: 'string', default: 'all' },
    budgets: { type: 'string', default: '25%' },
    rounds: { type: 'string', default: '1' },
    save: { type: 'string' },
  },
});
if (!a.azure || !a.models) throw new Error('give --azure DIR --models FILE');
const seconds = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1e6;
const started = process.cpuUsage(); // (the process's start and its modules, up to here)
const seed = Number(a.seed);
const trace = readAzure(a.azure, { spread: 'even', seed });
const models = mapModels(trace, readPaperModels(a.models), a.mapping as 'rank', seed);
console.log(`CPU s: start and modules ${seconds(started).toFixed(2)}, trace read and mapped ${seconds(process.cpuUsage(started)).toFixed(2)}`);
const policies = a.policies!.split(',').flatMap((p) => (p === 'all' ? [...SIM_POLICIES] : [p])) as SweepPolicyName[];
const budgets = a.budgets!.split(',').map((s) => parseBudget(s)!) as BudgetSpec[];
const jobs = sweepJobs(models, { policies, budgets });
const saved: Omit<SweepResult, 'wallMs'>[] = [];
console.log(`${trace.times.length} calls, ${trace.functions.length} functions`);
console.log('| policy | budget | wall s | CPU s | M calls/s (wall) | M calls/s (CPU) |');
console.log('|---|---:|---:|---:|---:|---:|');
for (let round = 0; round < Number(a.rounds); round++) {
  for (const job of jobs) {
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    const r = runOne(trace, models, { policies, budgets }, job);
    const wall = (performance.now() - w0) / 1000;
    const c = process.cpuUsage(c0);
    const cpu = seconds(c);
    const n = trace.times.length / 1e6;
    console.log(`| ${job.policy} | ${r.budgetPct.toFixed(1)}% | ${wall.toFixed(2)} | ${cpu.toFixed(2)} | ${(n / wall).toFixed(2)} | ${(n / cpu).toFixed(2)} |`);
    if (round === 0) {
      const { wallMs: _w, ...rest } = r;
      saved.push(rest);
    }
  }
}
if (a.save) writeFileSync(a.save, JSON.stringify(saved, null, 1) + '\n');
