import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { modelsFromAzure, readAzure } from './azure';
import { mapModels, MAPPINGS, readPaperModels, type Mapping } from './models';
import { isSimPolicy, SIM_POLICIES, type SweepPolicyName } from './policies';
import { plotSvg } from './plot';
import { startSweepWorkers, sweepParallel, toCsv, type SweepResult } from './sweep';
import { readCatalog, readPlainTrace, totalBytes, type SimModel, type Trace } from './trace';
import { formatBytes, parseBudget, parseDuration, type BudgetSpec } from './units';
import { parseFlags, runTool, UsageError } from './usage';

const HELP = `brulee simulator: replay a trace through the runtime's eviction policies on a virtual clock.

Input (one of):
  --trace-csv FILE --catalog FILE   plain trace (header time_ms,function) and catalogue JSON
                                    {"<fn>": {"sizeBytes", "loadMs", "execMs"}} (optional "profileLoadMs":
                                    the load time the policy is told, when loads take loadMs)
  --replay DIR                      the runtime's own recording: DIR/invocations.csv + DIR/catalog.json
                                    (DATA_DIR/traces)
  --azure DIR                       Azure Functions 2019 format (invocations.csv, durations.csv, memory.csv)
    --models FILE                   model catalogue (../shared/models/paper-models.json); without it,
                                    sizes come from memory.csv and exec times from durations.csv
    --mapping rank|roundrobin|random  function -> model mapping (default rank)
    --spread even|random            placing a minute's invocations inside it (default even)
    --load-ratio X                  without --models: load time = X x exec time (default 10)
  --seed N                          seed for random mapping, random spread, random policy (default 1)

Policies and budgets:
  --policy NAME[,NAME...]|all       ${SIM_POLICIES.join(', ')}; all = every one of them;
                                    bound = the offline lower bound on load delay (sim/bound.ts; one slot),
                                    e.g. --policy all,bound; offline = a feasible offline schedule
                                    (above the optimum: the optimum lies between bound and offline)
  --budget SIZE                     bytes or with a unit (300000000, 512MiB, 2GB)
  --budgets LIST                    comma list of sizes or percentages of all models' size (10%,25%,50%)
  --slots K                         invocations a node runs at a time (default 1)
  --ttl MS                          keep-alive of ttl / fixed keep-alive of hybrid-histogram (default 10m)
  --alpha X                         gap-average weight of cremebrulee-plus, (0, 1] (default 0.3)
  --oracle-horizon MS               look-ahead of cremebrulee-oracle (default 10m)
  --popularity-refresh MS           popularity refresh period, virtual time (default 10s)
  --popularity-window MS         time constant of the decayed popularity (default 10m)
  --sweep MS                        keep-alive / pre-warm check period (default 1s; 0 = every dispatch)
  --report-from T, --report-to T    count only invocations arriving in [from, to): ms or % of the trace
  --jobs N                          runs in parallel on N threads, this one and N-1 workers (default: the machine's cores, ${availableParallelism()})

Output:
  --out FILE                        JSON {"results": [...]}
  --csv FILE                        the same as CSV
  --plot FILE                       SVG of load delay (% of exec) against budget, one line per policy
  --overwrite                       allow replacing an existing file under sim/results/ (the tracked results)
  --quiet                           no progress on stderr
  --help`;

async function main(argv: string[]): Promise<number> {
  const a = parseFlags(argv, {
    'trace-csv': { type: 'string' }, catalog: { type: 'string' }, replay: { type: 'string' }, azure: { type: 'string' },
    models: { type: 'string' }, mapping: { type: 'string' }, spread: { type: 'string' }, 'load-ratio': { type: 'string' },
    seed: { type: 'string' }, policy: { type: 'string' }, budget: { type: 'string' }, budgets: { type: 'string' },
    slots: { type: 'string' }, jobs: { type: 'string' }, ttl: { type: 'string' }, alpha: { type: 'string' }, 'oracle-horizon': { type: 'string' },
    'popularity-refresh': { type: 'string' }, 'popularity-window': { type: 'string' }, sweep: { type: 'string' },
    'report-from': { type: 'string' }, 'report-to': { type: 'string' },
    out: { type: 'string' }, csv: { type: 'string' }, plot: { type: 'string' }, quiet: { type: 'boolean' }, overwrite: { type: 'boolean' },
  }, HELP);
  if (!a) return 0;
  const int = (flag: string, v: string | undefined, def: number, min = 0) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  const dur = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = parseDuration(v);
    if (!Number.isFinite(n)) throw new UsageError(`--${flag} must be a duration (600000, 30s, 10m, 2h), got ${JSON.stringify(v)}`);
    return n;
  };
  const seed = int('seed', a.seed, 1);
  const quiet = a.quiet === true;
  const log = (s: string) => { if (!quiet) process.stderr.write(s + '\n'); };

  // The tracked results (sim/results/) are replaced only when asked.
  for (const f of [a.out, a.csv, a.plot]) {
    if (f !== undefined && !a.overwrite && existsSync(f) && resolve(f).includes(`${sep}sim${sep}results${sep}`)) {
      throw new UsageError(`${f} is a tracked result; add --overwrite to replace it, or write elsewhere`);
    }
  }
  // Checked before the runs, not found at their end (a sweep's minutes lost to a mistyped folder).
  for (const [flag, f] of [['out', a.out], ['csv', a.csv], ['plot', a.plot]] as const) {
    if (f === undefined) continue;
    try {
      accessSync(dirname(resolve(f)), constants.W_OK);
    } catch (e) {
      throw new UsageError(`--${flag} ${f}: cannot write in ${dirname(resolve(f))} (${(e as NodeJS.ErrnoException).code ?? String(e)}); give a file in an existing folder you can write`);
    }
  }

  // Policies.
  const pol = a.policy ?? 'cremebrulee';
  const policies: SweepPolicyName[] = pol.split(',').map((p) => p.trim()).flatMap((p): SweepPolicyName[] => {
    if (p === 'all') return [...SIM_POLICIES];
    if (p === 'bound' || p === 'offline' || isSimPolicy(p)) return [p];
    throw new UsageError(`unknown policy ${JSON.stringify(p)}; choose from ${SIM_POLICIES.join(', ')}, bound, or all`);
  });

  // Budgets.
  if ((a.budget === undefined) === (a.budgets === undefined)) throw new UsageError('give --budget SIZE or --budgets LIST (one of them)');
  const budgets: BudgetSpec[] = (a.budget !== undefined ? [a.budget] : a.budgets!.split(',')).map((s) => {
    const b = parseBudget(s);
    if (!b) throw new UsageError(`bad budget ${JSON.stringify(s)}: bytes (300000000), a size (512MiB, 2GB) or a percentage (25%)`);
    return b;
  });

  const jobs = int('jobs', a.jobs, availableParallelism(), 1);
  // Several runs: start the worker threads now, so they load while the trace is read.
  const nThreads = Math.min(jobs, policies.length * budgets.length);
  const workers = nThreads > 1 ? startSweepWorkers(nThreads - 1) : [];

  // Input.
  const inputs = [a['trace-csv'] ?? a.catalog ? 'plain' : undefined, a.replay, a.azure].filter((x) => x !== undefined);
  if (inputs.length !== 1) throw new UsageError('give exactly one input: --trace-csv FILE --catalog FILE, --replay DIR, or --azure DIR (see --help)');
  let trace: Trace;
  let models: SimModel[];
  const t0 = performance.now();
  if (a.azure !== undefined) {
    const spread = a.spread ?? 'even';
    if (spread !== 'even' && spread !== 'random') throw new UsageError(`--spread must be even or random, got ${JSON.stringify(spread)}`);
    const az = readAzure(a.azure, { spread, seed });
    trace = az;
    if (a.models !== undefined) {
      const mapping = (a.mapping ?? 'rank') as Mapping;
      if (!MAPPINGS.includes(mapping)) throw new UsageError(`--mapping must be one of ${MAPPINGS.join(', ')}, got ${JSON.stringify(a.mapping)}`);
      models = mapModels(trace, readPaperModels(a.models), mapping, seed);
    } else {
      const ratio = a['load-ratio'] === undefined ? 10 : Number(a['load-ratio']);
      if (!(ratio >= 0)) throw new UsageError(`--load-ratio must be a non-negative number, got ${JSON.stringify(a['load-ratio'])}`);
      models = modelsFromAzure(az, ratio);
    }
  } else {
    if (a.models !== undefined || a.mapping !== undefined) throw new UsageError('--models and --mapping apply to --azure only');
    const tracePath = a.replay !== undefined ? join(a.replay, 'invocations.csv') : a['trace-csv'];
    const catPath = a.replay !== undefined ? join(a.replay, 'catalog.json') : a.catalog;
    if (tracePath === undefined || catPath === undefined) throw new UsageError('--trace-csv and --catalog go together');
    trace = readPlainTrace(tracePath);
    models = readCatalog(catPath, trace);
  }
  const all = totalBytes(models);
  log(`trace ${trace.source}: ${trace.times.length} invocations, ${trace.functions.length} functions, ${(trace.spanMs / 60_000).toFixed(1)} min; all models ${formatBytes(all)} (read in ${Math.round(performance.now() - t0)} ms)`);
  if (trace.times.length === 0) throw new UsageError('the trace has no invocations');

  const within = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (v.trim().endsWith('%')) {
      const p = Number(v.trim().slice(0, -1));
      if (!(p >= 0 && p <= 100)) throw new UsageError(`--${flag} percentage must be 0..100, got ${JSON.stringify(v)}`);
      return (p / 100) * trace.spanMs;
    }
    return dur(flag, v);
  };
  const reportFromMs = within('report-from', a['report-from']);
  const reportToMs = within('report-to', a['report-to']);
  if (reportFromMs !== undefined && reportToMs !== undefined && !(reportFromMs < reportToMs)) {
    throw new UsageError(`--report-from ${a['report-from']} is not before --report-to ${a['report-to']}: no invocation would be counted`);
  }
  const ttlMs = dur('ttl', a.ttl);
  const oracleHorizonMs = dur('oracle-horizon', a['oracle-horizon']);
  const popularityRefreshMs = dur('popularity-refresh', a['popularity-refresh']);
  const popularityWindowMs = dur('popularity-window', a['popularity-window']);
  const sweepMs = dur('sweep', a.sweep);
  const slots = int('slots', a.slots, 1, 1);
  if (ttlMs !== undefined && !(ttlMs > 0)) throw new UsageError('--ttl must be > 0');
  const alpha = a.alpha === undefined ? undefined : Number(a.alpha);
  if (alpha !== undefined && !(alpha > 0 && alpha <= 1)) throw new UsageError(`--alpha must be in (0, 1], got ${JSON.stringify(a.alpha)}`);

  const runs = policies.length * budgets.length;
  const wall0 = performance.now();
  let events = 0;
  const results = await sweepParallel(trace, models, {
    jobs,
    workers,
    policies,
    budgets,
    slots,
    policyOptions: { seed, ...(alpha !== undefined ? { alpha } : {}), ...(ttlMs !== undefined ? { ttlMs } : {}), ...(oracleHorizonMs !== undefined ? { oracleHorizonMs } : {}) },
    ...(popularityRefreshMs !== undefined ? { popularityRefreshMs } : {}),
    ...(popularityWindowMs !== undefined ? { popularityWindowMs } : {}),
    ...(sweepMs !== undefined ? { sweepMs } : {}),
    ...(reportFromMs !== undefined ? { reportFromMs } : {}),
    ...(reportToMs !== undefined ? { reportToMs } : {}),
    onProgress: trace.times.length >= 1 << 20 && !quiet && (jobs === 1 || runs === 1) ? (done, total) => process.stderr.write(`  ${(100 * done / total).toFixed(0)}%\r`) : undefined,
    onRun: (r, k, total) => {
      events += trace.times.length;
      log(`[${k}/${total}] ${r.policy.padEnd(18)} budget ${formatBytes(r.budgetBytes).padStart(10)} (${r.budgetPct.toFixed(1)}%): cold ${r.coldStarts}, hit ${(100 * r.hitRatio).toFixed(2)}%, load delay ${r.loadDelayPctOfExec.toFixed(1)}% of exec, ${Math.round(r.wallMs)} ms`);
    },
  } as Parameters<typeof sweepParallel>[2]);
  const wallMs = performance.now() - wall0;
  log(`${runs} run(s) in ${(wallMs / 1000).toFixed(2)} s: ${Math.round(events / (wallMs / 1000)).toLocaleString('en-US')} invocations/s`);

  const meta = {
    trace: trace.source, invocations: trace.times.length, functions: trace.functions.length, spanMs: trace.spanMs,
    allModelsBytes: all, slots, seed, jobs, wallMs: Math.round(wallMs), invocationsPerSecond: Math.round(events / (wallMs / 1000)),
  };
  if (a.out) writeFileSync(a.out, JSON.stringify({ meta, results }, null, 2) + '\n');
  if (a.csv) writeFileSync(a.csv, toCsv(results));
  if (a.plot) writeFileSync(a.plot, plotSvg(results, { title: `load delay vs memory budget: ${trace.source}` }));
  if (!a.out && !a.csv) printTable(results);
  return 0;
}

function printTable(results: readonly SweepResult[]): void {
  console.log(['policy', 'budget', 'budget%', 'invocations', 'cold', 'hit%', 'loadDelay%exec', 'meanLat ms', 'p99Lat ms'].join('\t'));
  for (const r of results) {
    console.log([r.policy, r.budgetBytes, r.budgetPct.toFixed(1), r.invocations, r.coldStarts, (100 * r.hitRatio).toFixed(2),
      r.loadDelayPctOfExec.toFixed(2), r.meanLatencyMs.toFixed(1), r.p99LatencyMs.toFixed(1)].join('\t'));
  }
}

runTool('sim', () => main(process.argv.slice(2)));
