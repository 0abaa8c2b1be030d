#!/usr/bin/env node
// `npm run mutate [-- module...]`: one Stryker run per module (see modules.mjs), then the
// mutation score of each. Reports land in reports/mutation/<module>.json (and .html is not made).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { MODULES } from './modules.mjs';

const asked = process.argv.slice(2);
for (const m of asked) {
  if (!MODULES[m]) {
    console.error(`mutate: unknown module "${m}"; modules: ${Object.keys(MODULES).join(', ')}`);
    process.exit(2);
  }
}
const names = asked.length > 0 ? asked : Object.keys(MODULES);
const rows = [];
let failed = false;
for (const name of names) {
  console.log(`\n=== mutate ${name}: ${MODULES[name].mutate.join(' ')} ===`);
  const r = spawnSync('npx', ['stryker', 'run'], { stdio: 'inherit', env: { ...process.env, MUTATE_MODULE: name } });
  if (r.status !== 0) failed = true;
  const file = `reports/mutation/${name}.json`;
  if (r.status === 0 && existsSync(file)) rows.push(score(name, JSON.parse(readFileSync(file, 'utf8'))));
}
console.log('\nmodule      killed  survived  no cov  timeout  score');
for (const r of rows) console.log(`${r.name.padEnd(11)} ${String(r.killed).padStart(6)}  ${String(r.survived).padStart(8)}  ${String(r.noCoverage).padStart(6)}  ${String(r.timeout).padStart(7)}  ${r.score.toFixed(1)} %`);
process.exit(failed ? 1 : 0);

/** Stryker's mutation score: (killed + timeout) / (killed + timeout + survived + no coverage). */
function score(name, report) {
  const c = { killed: 0, survived: 0, noCoverage: 0, timeout: 0 };
  for (const f of Object.values(report.files)) {
    for (const m of f.mutants) {
      if (m.status === 'Killed') c.killed++;
      else if (m.status === 'Survived') c.survived++;
      else if (m.status === 'NoCoverage') c.noCoverage++;
      else if (m.status === 'Timeout') c.timeout++;
    }
  }
  const valid = c.killed + c.timeout + c.survived + c.noCoverage;
  return { name, ...c, score: valid === 0 ? 0 : (100 * (c.killed + c.timeout)) / valid };
}
