import { pathToFileURL } from 'node:url';
import { ORACLE_POLICIES, SIM_POLICIES } from './policies';
import { readLines, TraceError } from './trace';
import { runTool, UsageError } from './usage';

/**
 * Prints the README's result tables (markdown) from sweep CSVs (`npm run sim -- ... --csv FILE`):
 * load delay as % of exec per policy and budget, and cremebrulee-plus's gap to the best other
 * online policy and to the oracles, per budget.
 *
 *   npx tsx sim/report.ts all sim/results/sample100-full.csv
 *   npx tsx sim/report.ts plus sim/results/sample100-second-half.csv
 *   npx tsx sim/report.ts bound sim/results/sample100-bound.csv
 */
export interface Row {
  policy: string;
  budgetPct: number;
  coldStarts: number;
  loadDelayPctOfExec: number;
}

/** Rows of a sweep CSV (`path` only names it in errors). */
export function parseRows(text: string, path = 'csv'): Row[] {
  const [head, ...lines] = text.trim().split('\n');
  const cols = head!.split(',');
  const at = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new TraceError(`${path}: no column ${name}`);
    return i;
  };
  const [p, b, c, d] = [at('policy'), at('budgetPct'), at('coldStarts'), at('loadDelayPctOfExec')];
  return lines.map((l) => {
    const f = l.split(',');
    return { policy: f[p]!, budgetPct: Number(f[b]), coldStarts: Number(f[c]), loadDelayPctOfExec: Number(f[d]) };
  });
}

/** About 4 significant digits, more where a value is small. */
const value = (x: number) => (x === 0 ? '0' : Math.abs(x) >= 100 ? x.toFixed(1) : Math.abs(x) >= 10 ? x.toFixed(2) : x.toPrecision(3));
/** A signed difference in points, with a true minus sign. */
const diff = (x: number) => {
  if (Math.abs(x) < 0.0005) return '0.000';
  const s = Math.abs(x) >= 1 ? Math.abs(x).toFixed(2) : Math.abs(x).toFixed(3);
  return `${x < 0 ? '−' : '+'}${s}`;
};
const isOracle = (p: string) => (ORACLE_POLICIES as readonly string[]).includes(p);

function byBudget(rows: Row[]): Map<number, Map<string, Row>> {
  const out = new Map<number, Map<string, Row>>();
  for (const r of rows) {
    if (!out.has(r.budgetPct)) out.set(r.budgetPct, new Map());
    out.get(r.budgetPct)!.set(r.policy, r);
  }
  return out;
}

const short: Record<string, string> = { 'hybrid-histogram': 'hybrid-hist', 'cremebrulee-oracle': 'cb-oracle' };

/** Load delay (% of exec) of every policy per budget; bold: the lowest online policy. */
export function allTable(rows: Row[]): string {
  const policies = SIM_POLICIES.filter((p) => rows.some((r) => r.policy === p));
  const out = [`| budget | ${policies.map((p) => (p === 'cremebrulee-plus' ? 'plus' : short[p] ?? p)).join(' | ')} |`, `|---:|${policies.map(() => '---:').join('|')}|`];
  for (const [b, m] of byBudget(rows)) {
    const best = Math.min(...policies.filter((p) => !isOracle(p)).map((p) => m.get(p)!.loadDelayPctOfExec));
    const cells = policies.map((p) => {
      const d = m.get(p)!.loadDelayPctOfExec;
      return !isOracle(p) && d === best ? `**${value(d)}**` : value(d);
    });
    out.push(`| ${b}% | ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

/** cremebrulee-plus against the best other online policy and the oracles, per budget. */
export function plusTable(rows: Row[]): string {
  const out = [
    '| budget | plus | best other online | plus − it | plus − belady | plus − cb-oracle | closest online |',
    '|---:|---:|---|---:|---:|---:|---|',
  ];
  for (const [b, m] of byBudget(rows)) {
    const plus = m.get('cremebrulee-plus')!;
    const online = [...m.values()].filter((r) => !isOracle(r.policy));
    const others = online.filter((r) => r.policy !== 'cremebrulee-plus').sort((x, y) => x.loadDelayPctOfExec - y.loadDelayPctOfExec);
    const best = others[0]!;
    const low = Math.min(...online.map((r) => r.loadDelayPctOfExec));
    const closest = online.filter((r) => r.loadDelayPctOfExec === low).map((r) => r.policy);
    const d = plus.loadDelayPctOfExec - best.loadDelayPctOfExec;
    const who = closest.includes('cremebrulee-plus')
      ? closest.length === 1
        ? '**plus**'
        : `plus (tie: ${closest.filter((p) => p !== 'cremebrulee-plus').join(', ')})`
      : closest.join(', ');
    const cold = plus.coldStarts - best.coldStarts;
    out.push(
      `| ${b}% | ${value(plus.loadDelayPctOfExec)} | ${best.policy} ${value(best.loadDelayPctOfExec)} | ${diff(d)} | ${diff(plus.loadDelayPctOfExec - m.get('belady')!.loadDelayPctOfExec)} | ${diff(plus.loadDelayPctOfExec - m.get('cremebrulee-oracle')!.loadDelayPctOfExec)} | ${who}${cold !== 0 && Math.abs(d) < 0.1 ? ` (${Math.abs(cold)} ${cold < 0 ? 'fewer' : 'more'} cold start${Math.abs(cold) === 1 ? '' : 's'})` : ''} |`,
    );
  }
  return out.join('\n');
}

/** Policies that pre-warm: the bound assumes loads on demand, so they may go below it. */
const PREWARMING = ['cremebrulee-plus', 'hybrid-histogram'];

/**
 * Every policy's load delay over the lower bound (`--policy all,bound`), per budget, and the best
 * on-demand policy's (the optimum of on-demand caching lies between the bound and it).
 */
export function boundTable(rows: Row[]): string {
  const policies = SIM_POLICIES.filter((p) => rows.some((r) => r.policy === p));
  // With `offline` rows (the feasible offline schedule, above the optimum): its load delay and its ratio to the bound.
  const withOffline = rows.some((r) => r.policy === 'offline');
  const out = [
    `| budget | bound (% of exec) | ${withOffline ? 'offline (% of exec) | offline / bound | ' : ''}${policies.map((p) => (p === 'cremebrulee-plus' ? 'plus' : short[p] ?? p)).join(' | ')} | best on-demand |`,
    `|---:|---:|${withOffline ? '---:|---:|' : ''}${policies.map(() => '---:').join('|')}|---|`,
  ];
  const ratio = (d: number, lb: number) => (lb > 0 ? (d / lb).toFixed(2) : d === 0 ? '1.00' : '∞');
  for (const [b, m] of byBudget(rows)) {
    const bound = m.get('bound');
    if (!bound) throw new TraceError(`no bound row at ${b}% (run with --policy all,bound)`);
    const lb = bound.loadDelayPctOfExec;
    const onDemand = policies.filter((p) => !PREWARMING.includes(p)).map((p) => m.get(p)!);
    const best = onDemand.reduce((x, y) => (y.loadDelayPctOfExec < x.loadDelayPctOfExec ? y : x));
    const cells = policies.map((p) => ratio(m.get(p)!.loadDelayPctOfExec, lb));
    const off = m.get('offline');
    if (withOffline && !off) throw new TraceError(`no offline row at ${b}%`);
    const offCells = off ? `${value(off.loadDelayPctOfExec)} | ${ratio(off.loadDelayPctOfExec, lb)} | ` : '';
    out.push(`| ${b}% | ${value(lb)} | ${offCells}${cells.join(' | ')} | ${short[best.policy] ?? best.policy} ${ratio(best.loadDelayPctOfExec, lb)} |`);
  }
  return out.join('\n');
}

const HELP = `usage: npx tsx sim/report.ts all|plus|bound SWEEP.csv

Prints a README table (markdown) from a sweep's CSV (npm run sim -- ... --csv SWEEP.csv):
  all     load delay (% of exec) per policy and budget, the lowest online policy in bold
  plus    cremebrulee-plus's gap to the best other online policy and to the oracles
  bound   each policy's load delay over the lower bound (a sweep with --policy all,bound)`;

/** The tables a report prints, by the name given first on the command line. */
const TABLES: Record<string, (rows: Row[]) => string> = { all: allTable, plus: plusTable, bound: boundTable };

function main(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HELP);
    return 0;
  }
  const [what, file, ...rest] = argv;
  const table = what === undefined ? undefined : TABLES[what];
  if (!table || file === undefined || rest.length > 0) {
    throw new UsageError(`give a table (all, plus or bound) and one sweep CSV, got ${JSON.stringify(argv)}`);
  }
  console.log(table(parseRows(readLines(file).join('\n'), file)));
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) runTool('sim/report', () => main(process.argv.slice(2)));
