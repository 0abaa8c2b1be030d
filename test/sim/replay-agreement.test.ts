import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TraceRecorder } from '../../functions/trace-recorder';
import { WarmPool } from '../../runtime/warm-pool';
import { simulate } from '../../sim/engine';
import { PopularityTracker } from '../../sim/popularity';
import { createSimPolicy, type SimPolicyName } from '../../sim/policies';
import { readCatalog, readPlainTrace, type Trace } from '../../sim/trace';
import { randomTrace } from './helpers';

/**
 * A live node's eviction policy ranks models by the load time of the registration profile (the
 * `loadMs` of the function's ModelRef), while its loads take what they take; the recorder's
 * catalogue gives the simulator the live mean as `loadMs` (what cold starts wait) and the profile's
 * as `profileLoadMs` (what the policy is told). Until the simulator told its policy the profile's
 * time, a replay ranked by the live means and `cremebrulee` diverged from the live node (8-16% of
 * cold starts in bench/sim-vs-live.ts). Here a recording (written by the runtime's own
 * TraceRecorder) is replayed through the simulator and through the runtime's WarmPool (spec
 * `loadMs` = the profile's; each load advances a fake clock by the live time), and the two must
 * make the same evictions, in order, with the same cold starts and the same total wait.
 */

const dir = mkdtempSync(join(tmpdir(), 'brulee-replay-agreement-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const F = 16;
// Live load times and profile load times that rank the models differently (profile 3-11x live, not in proportion).
const live = (f: number) => 20 + ((f * 37) % 90);
const profile = (f: number) => 60 + ((f * 149) % 600);
const size = (f: number) => 1e6 * (1 + ((f * 7) % F));
const exec = (f: number) => 1 + (f % 5);

/** Records once (the recorder appends): the runtime's TraceRecorder writes both files. */
let recorded: Promise<string> | undefined;
const record = () => (recorded ??= recordOnce());
async function recordOnce(): Promise<string> {
  const src = randomTrace(21, 2500, F);
  const rec = new TraceRecorder(dir);
  const epoch = 1_790_000_000_000;
  for (let i = 0; i < src.times.length; i++) rec.record(src.functions[src.fns[i]!]!, epoch + src.times[i]!);
  await rec.close();
  const fns = src.functions.map((name) => {
    const f = Number(name.slice(1));
    return { name, sizeBytes: size(f), profile: { loadMs: profile(f), execMs: 999 } };
  });
  await rec.writeCatalog(fns, new Map(src.functions.map((name) => [name, { loadMs: live(Number(name.slice(1))), execMs: exec(Number(name.slice(1))) }])));
  return join(dir, 'traces');
}

const make = (name: SimPolicyName) => createSimPolicy(name, { prefetch: false });

/** The runtime's WarmPool over the recorded calls, one at a time, popularity by the same tracker. */
async function throughWarmPool(trace: Trace, name: SimPolicyName, budget: number) {
  const catalog = JSON.parse(readFileSync(join(dir, 'traces', 'catalog.json'), 'utf8')) as Record<string, { sizeBytes: number; loadMs: number; execMs: number; profileLoadMs: number }>;
  let clock = 0;
  const index = new Map(trace.functions.map((k, f) => [k, f]));
  const pop = new PopularityTracker(trace.functions.length);
  const evictions: string[] = [];
  let cold = 0;
  let waited = 0;
  const pool = new WarmPool<string>({
    budgetBytes: budget,
    policy: make(name),
    now: () => clock,
    load: async (spec) => {
      clock += catalog[spec.key]!.loadMs; // the load takes the live time
      pop.advanceTo(clock);
      return spec.key;
    },
    popularity: (fn) => pop.popularity[index.get(fn)!]!,
    onEvict: (ev) => evictions.push(ev.key),
  });
  for (let i = 0; i < trace.times.length; i++) {
    const key = trace.functions[trace.fns[i]!]!;
    const c = catalog[key]!;
    clock = Math.max(clock, trace.times[i]!);
    pop.advanceTo(clock);
    pop.record(trace.fns[i]!);
    const t0 = clock;
    // What a node's spec carries: the registration profile's load time (runtime/node.ts `spec`).
    const lease = await pool.acquire({ key, fn: key, sizeBytes: c.sizeBytes, loadMs: c.profileLoadMs, execMs: c.execMs });
    if (lease.coldStart) {
      cold++;
      waited += clock - t0;
    }
    clock += c.execMs;
    pop.advanceTo(clock);
    lease.release();
  }
  return { evictions, cold, waited };
}

describe('a recorded trace replayed by the simulator makes the live warm pool\'s decisions', () => {
  for (const name of ['cremebrulee', 'cremebrulee-plus', 'lru', 'gdsf'] as const) {
    it(`${name}: same evictions in order, cold starts and load delay`, async () => {
      const traces = await record();
      const trace = readPlainTrace(join(traces, 'invocations.csv'));
      const models = readCatalog(join(traces, 'catalog.json'), trace);
      expect(models.every((m) => m.policyLoadMs !== undefined && m.policyLoadMs !== m.loadMs)).toBe(true);
      const budget = 0.3 * models.reduce((s, m) => s + m.sizeBytes, 0);
      const simEv: string[] = [];
      const r = simulate(trace, models, make(name), { budgetBytes: budget, onEvict: (key) => simEv.push(key) });
      const pool = await throughWarmPool(trace, name, budget);
      expect(simEv.length).toBeGreaterThan(100);
      expect(simEv).toEqual(pool.evictions);
      expect(r.coldStarts).toBe(pool.cold);
      expect(r.loadDelayMs).toBeCloseTo(pool.waited, 6);
    });
  }
});
