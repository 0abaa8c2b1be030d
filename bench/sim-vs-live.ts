/**
 * Does the simulator predict the live runtime? For each policy: start a real brulee (one serial
 * node: WORKER_CONCURRENCY=1, as the simulator's default one slot; a budget that forces evictions;
 * TRACE_RECORD=1), register generated MLP models of different sizes, drive a skewed, bursty trace
 * of calls at their scheduled times, read the live per-function figures from /stats, close brulee
 * (which writes the catalogue with the live exec and load times), then replay the recording with
 * the simulator (`--replay` reads the same two files) and compare per function: cold starts, loads,
 * evictions and load delay.
 *
 *   npx tsx bench/sim-vs-live.ts [--calls 3000] [--functions 12] [--budget-pct 35] [--seed 1] [--gap-ms 250]
 *                                [--policies cremebrulee,cremebrulee-plus,lru] [--out FILE.json]
 *
 * Needs `redis-server` on PATH (a private one is started on a free port). Takes about a minute per
 * policy. Prints one table row per policy (and per function with --per-function).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createBrulee } from '../brulee';
import { loadConfig } from '../config';
import { mlpForBytes } from '../models/generate';
import { startRedisServer } from '../queue/redis-server';
import { seededRandom } from '../runtime/policies/random';
import { simulate } from '../sim/engine';
import { createSimPolicy, type SimPolicyName } from '../sim/policies';
import { readCatalog, readPlainTrace } from '../sim/trace';

const { values: a } = parseArgs({
  options: {
    calls: { type: 'string', default: '3000' },
    functions: { type: 'string', default: '12' },
    'budget-pct': { type: 'string', default: '35' },
    seed: { type: 'string', default: '1' },
    'gap-ms': { type: 'string', default: '250' },
    policies: { type: 'string', default: 'cremebrulee,cremebrulee-plus,lru' },
    'per-function': { type: 'boolean', default: false },
    debug: { type: 'boolean', default: false },
    'align-popularity': { type: 'boolean', default: true },
    out: { type: 'string' },
  },
});
const CALLS = Number(a.calls);
const F = Number(a.functions);
const SEED = Number(a.seed);
const POLICIES = a.policies!.split(',') as SimPolicyName[];

/** Per function: what happened. */
interface Figures {
  calls: number;
  coldStarts: number;
  loads: number;
  prewarms: number;
  evictions: number;
  loadDelayMs: number;
}
const zero = (): Figures => ({ calls: 0, coldStarts: 0, loads: 0, prewarms: 0, evictions: 0, loadDelayMs: 0 });

/**
 * The schedule: bursts of calls to one function (Zipf-skewed choice, exponent 1.1), 1-15 calls
 * 5-30 ms apart, bursts `--gap-ms` (250) apart on average. Offsets in ms from the start.
 */
function schedule(n: number, fns: number, seed: number, gapMs: number): { at: number; fn: number }[] {
  const r = seededRandom(seed);
  const w = Array.from({ length: fns }, (_, i) => 1 / (i + 1) ** 1.1);
  const total = w.reduce((x, y) => x + y, 0);
  const pick = () => {
    let u = r() * total;
    for (let i = 0; i < fns; i++) if ((u -= w[i]!) <= 0) return i;
    return fns - 1;
  };
  const out: { at: number; fn: number }[] = [];
  let t = 0;
  while (out.length < n) {
    t += -Math.log(1 - r()) * gapMs;
    const fn = pick();
    const k = 1 + Math.floor(r() * 15);
    let s = t;
    for (let j = 0; j < k && out.length < n; j++) {
      out.push({ at: Math.round(s), fn });
      s += 5 + r() * 25;
    }
  }
  return out.sort((x, y) => x.at - y.at);
}

const name = (i: number) => `live${i}`;
/** Model sizes: 1.5 MB to ~18 MB, the popular ones not always the small ones. */
const targetBytes = (i: number) => Math.round((1.5 + ((i * 7) % F) * 1.4) * 1e6);

async function runPolicy(redisUrl: string, policy: SimPolicyName, models: Uint8Array[], plan: { at: number; fn: number }[]) {
  const dataDir = mkdtempSync(join(tmpdir(), `brulee-live-${policy}-`));
  const prefix = `live${policy.replace(/[^a-z]/g, '')}${Date.now() % 100000}`;
  const env = {
    REDIS_URL: redisUrl, DATA_DIR: dataDir, KEY_PREFIX: prefix, NODE_ID: `node-${prefix}`, LOG_LEVEL: 'silent',
    EVICTION_POLICY: policy, WORKER_CONCURRENCY: '1', TRACE_RECORD: '1', MEMORY_BUDGET: '64GiB',
    // No call may time out: the simulator serves every recorded call, however long the queue.
    INVOKE_TIMEOUT_MS: '600000',
  };
  // First registration (profiling measures the sizes), then the real run with a budget from them.
  let b = await createBrulee(loadConfig(env), { log: pino({ level: 'silent' }) });
  for (let i = 0; i < F; i++) {
    const res = await b.app.request(`/functions/${name(i)}`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: models[i] });
    if (res.status >= 300) throw new Error(`register ${name(i)}: ${res.status} ${await res.text()}`);
  }
  const sizes = new Map((await b.dataPlane.list()).map((f) => [f.name, f.sizeBytes]));
  await b.close();
  const all = [...sizes.values()].reduce((x, y) => x + y, 0);
  const budget = Math.max(Math.round((Number(a['budget-pct']) / 100) * all), Math.max(...sizes.values()));
  rmSync(join(dataDir, 'traces'), { recursive: true, force: true });
  b = await createBrulee(loadConfig({ ...env, MEMORY_BUDGET: String(budget) }), { log: pino({ level: 'silent' }) });

  const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, k) => k / 64) } } });
  const live = new Map<string, Figures>();
  for (let i = 0; i < F; i++) live.set(name(i), zero());
  const t0 = performance.now() + 200;
  let failed = 0;
  const failures = new Map<string, number>();
  const pending: Promise<void>[] = [];
  for (const c of plan) {
    const wait = t0 + c.at - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      Promise.resolve(b.app.request(`/functions/${name(c.fn)}/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }))
        .then(async (res: Response) => {
          const j = (await res.json()) as { coldStart?: boolean; timings?: { loadMs: number } };
          if (res.status !== 200) {
            failed++;
            const why = `${res.status} ${(j as { error?: { code?: string } }).error?.code ?? ''}`;
            failures.set(why, (failures.get(why) ?? 0) + 1);
            return;
          }
          const f = live.get(name(c.fn))!;
          f.calls++;
          if (j.coldStart) {
            f.coldStarts++;
            f.loadDelayMs += j.timings?.loadMs ?? 0;
          }
        }),
    );
  }
  await Promise.all(pending);
  const wallS = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 500)); // the stats pipeline
  const st = await b.dataPlane.stats();
  const liveEvictions = (st.recentEvictions as unknown as { fn?: string; key?: string; at?: number; reason?: string }[]).slice().reverse();
  const stats = st.functions as Record<string, { loads: number; prewarms: number; evictions: number; coldStarts: number; loadWaitMsTotal: number }>;
  for (const [fn, f] of live) {
    const s = stats[fn]!;
    f.loads = s.loads;
    f.prewarms = s.prewarms;
    f.evictions = s.evictions;
  }
  await b.close();

  // Replay the recording (what `npm run sim -- --replay DATA_DIR/traces` reads).
  const trace = readPlainTrace(join(dataDir, 'traces', 'invocations.csv'));
  const catalog = readCatalog(join(dataDir, 'traces', 'catalog.json'), trace);
  const simEvictions: string[] = [];
  const sim = new Map<string, Figures>();
  for (let i = 0; i < F; i++) sim.set(name(i), zero());
  // The live popularity cron fires at the wall clock's multiples of 10 s: line the simulator's refreshes up with it.
  const firstEpoch = Math.min(...readFileSync(join(dataDir, 'traces', 'invocations.csv'), 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[0])));
  const r = simulate(trace, catalog, createSimPolicy(policy), {
    budgetBytes: budget,
    ...(a['align-popularity'] ? { popularityFirstRefreshMs: 10_000 - (firstEpoch % 10_000) } : {}),
    onServe: (key, waitMs, cold) => {
      const f = sim.get(key)!;
      f.calls++;
      if (cold) f.coldStarts++;
      f.loadDelayMs += waitMs;
    },
    onLoadStart: (key, prewarm) => {
      const f = sim.get(key)!;
      f.loads++;
      if (prewarm) f.prewarms++;
    },
    onEvict: (key, now) => {
      sim.get(key)!.evictions++;
      simEvictions.push(`${key}@${Math.round(now)}`);
    },
  });
  if (a.debug) {
    console.log('live evictions (latest 50):', liveEvictions.map((e) => JSON.stringify(e)).join('\n  '));
    console.log('sim evictions:', simEvictions.join(' '));
  }
  rmSync(dataDir, { recursive: true, force: true });
  return { policy, budget, allBytes: all, failed, failures: Object.fromEntries(failures), wallS, live: Object.fromEntries(live), sim: Object.fromEntries(sim), simResult: r };
}

const sum = (m: Record<string, Figures>, k: keyof Figures) => Object.values(m).reduce((x, f) => x + f[k], 0);
const pct = (s: number, l: number) => (l === 0 ? (s === 0 ? '0%' : '∞') : `${s >= l ? '+' : '−'}${((100 * Math.abs(s - l)) / l).toFixed(1)}%`);

const dir = mkdtempSync(join(tmpdir(), 'brulee-live-redis-'));
const redis = await startRedisServer({ dir, persist: false });
try {
  const models = Array.from({ length: F }, (_, i) => mlpForBytes(targetBytes(i), i + 1));
  const plan = schedule(CALLS, F, SEED, Number(a['gap-ms']));
  const runs = [];
  console.log(`${CALLS} calls to ${F} functions over ${(plan.at(-1)!.at / 1000).toFixed(1)} s (seed ${SEED}), one serial node, budget ${a['budget-pct']}% of all models' size`);
  console.log('| policy | cold starts live / sim (diff) | load delay ms live / sim (diff) | loads live / sim | evictions live / sim | prewarms live / sim | largest per-function cold-start difference |');
  console.log('|---|---|---|---|---|---|---|');
  for (const p of POLICIES) {
    const r = await runPolicy(redis.url, p, models, plan);
    runs.push(r);
    const [lc, sc] = [sum(r.live, 'coldStarts'), sum(r.sim, 'coldStarts')];
    const [ld, sd] = [sum(r.live, 'loadDelayMs'), sum(r.sim, 'loadDelayMs')];
    let worst = '';
    let worstD = -1;
    for (const fn of Object.keys(r.live)) {
      const d = Math.abs(r.live[fn]!.coldStarts - r.sim[fn]!.coldStarts);
      if (d > worstD) {
        worstD = d;
        worst = `${fn}: ${r.live[fn]!.coldStarts} / ${r.sim[fn]!.coldStarts}`;
      }
    }
    console.log(`| ${p} | ${lc} / ${sc} (${pct(sc, lc)}) | ${ld.toFixed(0)} / ${sd.toFixed(0)} (${pct(sd, ld)}) | ${sum(r.live, 'loads')} / ${sum(r.sim, 'loads')} | ${sum(r.live, 'evictions')} / ${sum(r.sim, 'evictions')} | ${sum(r.live, 'prewarms')} / ${sum(r.sim, 'prewarms')} | ${worst} |`);
    if (r.failed > 0) console.log(`  (${r.failed} live calls failed: ${JSON.stringify(r.failures)})`);
    if (a['per-function']) {
      for (const fn of Object.keys(r.live)) {
        const l = r.live[fn]!, s = r.sim[fn]!;
        console.log(`    ${fn}: calls ${l.calls}/${s.calls} cold ${l.coldStarts}/${s.coldStarts} loads ${l.loads}/${s.loads} evictions ${l.evictions}/${s.evictions} delay ${l.loadDelayMs.toFixed(0)}/${s.loadDelayMs.toFixed(0)}`);
      }
    }
  }
  if (a.out) writeFileSync(a.out, JSON.stringify(runs, null, 1) + '\n');
} finally {
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
