import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../runtime/policies/random';
import { parseFlags, runTool, UsageError } from './usage';

/**
 * Writes a synthetic trace in the Azure Functions 2019 format, for speed runs at sizes the
 * shipped sample does not reach: Zipf-like popularity (exponent 1) over `functions`, a quarter of
 * them timer-like (a fixed period in minutes), the rest Poisson-ish per minute. Not a stand-in
 * for real traffic: use it to measure the simulator, not the policies.
 */
export function synthAzure(dir: string, functions: number, minutes: number, invocations: number, seed = 1): number {
  const rand = seededRandom(seed);
  const weights = Array.from({ length: functions }, (_, i) => 1 / (i + 1));
  const wsum = weights.reduce((a, b) => a + b, 0);
  const lines = [['HashOwner', 'HashApp', 'HashFunction', 'Trigger', ...Array.from({ length: minutes }, (_, m) => String(m + 1))].join(',')];
  let total = 0;
  for (let f = 0; f < functions; f++) {
    const perMin = (invocations * weights[f]!) / wsum / minutes;
    const timer = f % 4 === 3;
    const period = timer ? Math.max(1, Math.round(1 / Math.max(perMin, 1e-9))) : 0;
    const phase = Math.floor(rand() * Math.max(1, period));
    const row: number[] = [];
    for (let m = 0; m < minutes; m++) {
      let c: number;
      if (timer && period > 1) c = (m + phase) % period === 0 ? 1 : 0;
      else {
        const lam = perMin * (0.5 + rand());
        c = Math.floor(lam) + (rand() < lam - Math.floor(lam) ? 1 : 0);
      }
      row.push(c);
      total += c;
    }
    lines.push([`owner${f}`, `app${f}`, `fn${String(f).padStart(5, '0')}`, timer ? 'timer' : 'http', ...row].join(','));
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'invocations.csv'), lines.join('\n') + '\n');
  return total;
}

const HELP = `usage: npx tsx sim/synth.ts --out DIR [--functions 500] [--minutes 1440] [--invocations 1000000] [--seed 1]

Writes DIR/invocations.csv, a synthetic trace in the Azure Functions 2019 format (for speed runs;
not a stand-in for real traffic).`;

function main(argv: string[]): number {
  const v = parseFlags(argv, { functions: { type: 'string' }, minutes: { type: 'string' }, invocations: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' } }, HELP);
  if (!v) return 0;
  if (!v.out) throw new UsageError('give --out DIR, the folder to write invocations.csv in');
  const count = (flag: 'functions' | 'minutes' | 'invocations' | 'seed', def: number) => {
    const n = Number(v[flag] ?? def);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} must be a whole number, got ${JSON.stringify(v[flag])}`);
    return n;
  };
  const n = synthAzure(v.out, count('functions', 500), count('minutes', 1440), count('invocations', 1_000_000), count('seed', 1));
  process.stderr.write(`wrote ${v.out}/invocations.csv: ${n} invocations\n`);
  return 0;
}

if (process.argv[1]?.endsWith('synth.ts')) runTool('sim/synth', () => main(process.argv.slice(2)));
