/**
 * How long a brulee process stops answering while a model loads or runs (never part of
 * `npm test`). onnxruntime-node creates and runs sessions on the calling thread; on the main
 * thread that stalls the event loop: HTTP accepts, heartbeats, lock renewals, other calls' Redis
 * work. Each checkout runs as `npm start` does, with a probe preloaded into the process under test
 * (bench/loop-probe.mjs: perf_hooks.monitorEventLoopDelay, 1 ms resolution), while this process
 * asks that process's `GET /healthz` every 5 ms (a Redis round trip behind it).
 *
 *   git worktree add --detach /tmp/base main && ln -s $PWD/node_modules /tmp/base/
 *   flock /work/heavy.lock npx tsx bench/event-loop.ts --base /tmp/base --role all
 *   flock /work/heavy.lock npx tsx bench/event-loop.ts --base /tmp/base --role worker
 *
 * Roles: `all` (one process: gateway and node; the probe and /healthz are that process) and
 * `worker` (a ROLE=gateway process and a ROLE=worker process on one Redis; the probe and /healthz
 * are the worker's). Per model: `--cold` cold calls (unload, 150 ms pause, one invoke) and
 * `--warm` warm calls on a big batch, v2 binary both ways. Per phase: the loop delay's max and
 * p99 over the phase, the slowest /healthz answer and the longest time between two /healthz
 * answers, the calls' median latency; then warm calls a second, 4 callers for `--tput` s (no
 * /healthz probe). Base runs first, then now: the second server of a run has been slower even when
 * both were the same code, so compare the loop columns, not small latency gaps. `--env K=V,...` is given to "now"'s processes only (e.g.
 * ORT_OFF_THREAD=never for an A/B on one checkout).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { mlpForBytes, mlpModel } from '../models/generate';
import { startRedisServer } from '../queue/redis-server';
import { readModel, REAL_MODELS } from '../test/support/models';
import { leanClient, median, startServer, throughput, v2Binary, type BenchServer } from './support';

const args = parseArgs({
  options: {
    base: { type: 'string' },
    role: { type: 'string', default: 'all' },
    models: { type: 'string', default: 'mlp,mlp-40MB,ocr-rec' },
    cold: { type: 'string', default: '3' },
    warm: { type: 'string', default: '6' },
    env: { type: 'string', default: '' },
    tput: { type: 'string', default: '4' },
  },
}).values;

const here = join(import.meta.dirname, '..');
const PROBE = join(import.meta.dirname, 'loop-probe.mjs');

interface Model {
  bytes: Uint8Array;
  /** The input of a cold call and of a warm call (a big batch), one float32 tensor `x`. */
  cold: number[];
  warm: number[];
}
const MODELS: Record<string, () => Model> = {
  mlp: () => ({ bytes: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }), cold: [1, 64], warm: [1, 64] }),
  'mlp-40MB': () => ({ bytes: mlpForBytes(40e6, 1), cold: [2000, 64], warm: [2000, 64] }),
  'mlp-100MB': () => ({ bytes: mlpForBytes(100e6, 1), cold: [1, 64], warm: [2000, 64] }),
  'ocr-rec': () => ({ bytes: readModel(REAL_MODELS.ocrRec), cold: [1, 3, 48, 320], warm: [8, 3, 48, 320] }),
};

/** A v2 binary infer of one float32 input `x` of `dims`. */
function inferBody(dims: number[]): { body: Buffer; headers: Record<string, string> } {
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * 0.5);
  const { body, headers } = v2Binary('x', dims, x);
  return { body, headers: { ...headers, 'content-type': 'application/octet-stream' } };
}

/** The probe in process `pid`: its samples since the last read. */
async function readProbe(pid: number, file: string): Promise<{ max: number; p99: number; p50: number; n: number }> {
  const before = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { seq: number }).seq : 0;
  process.kill(pid, 'SIGUSR2');
  for (;;) {
    await new Promise((r) => setTimeout(r, 5));
    if (!existsSync(file)) continue;
    const r = JSON.parse(readFileSync(file, 'utf8')) as { seq: number; max: number; p99: number; p50: number; n: number };
    if (r.seq > before) return r;
  }
}

/** Asks `url`/healthz every 5 ms until stopped: the slowest answer and the longest time between two answers. */
function healthProber(url: string) {
  const c = leanClient(url);
  let stop = false;
  let slowest = 0;
  let gap = 0;
  let n = 0;
  const done = (async () => {
    let last = performance.now();
    while (!stop) {
      const t = performance.now();
      const r = await c.call('GET', '/healthz');
      if (r.status !== 200) throw new Error(`/healthz ${r.status}`);
      const now = performance.now();
      n++;
      slowest = Math.max(slowest, now - t);
      gap = Math.max(gap, now - last);
      last = now;
      await new Promise((res) => setTimeout(res, 5));
    }
  })();
  return async () => {
    stop = true;
    await done;
    c.close();
    return { slowest, gap, n };
  };
}

interface Phase {
  calls: number[];
  /** Warm calls a second with 4 callers at once, for `--tput` seconds (no /healthz probe then). */
  perS?: number;
  loopMax: number;
  loopP99: number;
  healthMax: number;
  healthGap: number;
}

async function run(label: string, dir: string, env: Record<string, string>): Promise<Record<string, Record<'cold' | 'warm', Phase>>> {
  const tmp = mkdtempSync(join(tmpdir(), 'brulee-loop-'));
  const probeFile = join(tmp, 'probe.json');
  const probed = { LOOP_PROBE: probeFile };
  const nodeArgs = ['--import', PROBE];
  let gateway: BenchServer;
  let target: BenchServer;
  const servers: BenchServer[] = [];
  let redis: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  try {
    if (args.role === 'worker') {
      redis = await startRedisServer({ dir: join(tmp, 'redis'), persist: false });
      process.env.REDIS_URL = redis.url;
      target = await startServer(join(tmp, 'w'), { ...env, ...probed, ROLE: 'worker', NODE_ID: 'bench-w' }, dir, nodeArgs);
      servers.push(target);
      gateway = await startServer(join(tmp, 'g'), { ...env, ROLE: 'gateway', NODE_ID: 'bench-g', MODEL_STORE: `file://${join(tmp, 'w', 'data', 'models')}` }, dir);
      servers.push(gateway);
    } else {
      gateway = target = await startServer(tmp, { ...env, ...probed }, dir, nodeArgs);
      servers.push(target);
    }
    const c = leanClient(gateway.url);
    const out: Record<string, Record<'cold' | 'warm', Phase>> = {};
    for (const name of args.models.split(',')) {
      const m = MODELS[name]!();
      const put = await c.call('PUT', `/functions/${name}`, Buffer.from(m.bytes), { 'content-type': 'application/octet-stream' });
      if (put.status !== 201 && put.status !== 200) throw new Error(`register ${name}: ${put.status} ${put.body.toString()}`);
      const cold = inferBody(m.cold);
      const warm = inferBody(m.warm);
      const infer = async (b: { body: Buffer; headers: Record<string, string> }) => {
        const t = performance.now();
        const r = await c.call('POST', `/v2/models/${name}/infer`, b.body, b.headers);
        if (r.status !== 200) throw new Error(`infer ${name}: ${r.status} ${r.body.toString().slice(0, 300)}`);
        return performance.now() - t;
      };
      const phase = async (times: number, before: () => Promise<unknown>, body: typeof cold): Promise<Phase> => {
        const p: Phase = { calls: [], loopMax: 0, loopP99: 0, healthMax: 0, healthGap: 0 };
        for (let i = 0; i < times; i++) {
          await before();
          await new Promise((r) => setTimeout(r, 150));
          await readProbe(target.pid, probeFile);
          const stop = healthProber(target.url);
          await new Promise((r) => setTimeout(r, 20));
          p.calls.push(await infer(body));
          await new Promise((r) => setTimeout(r, 20));
          const h = await stop();
          const l = await readProbe(target.pid, probeFile);
          p.loopMax = Math.max(p.loopMax, l.max);
          p.loopP99 = Math.max(p.loopP99, l.p99);
          p.healthMax = Math.max(p.healthMax, h.slowest);
          p.healthGap = Math.max(p.healthGap, h.gap);
        }
        return p;
      };
      const unload = async () => {
        const r = await c.call('POST', `/v2/repository/models/${name}/unload`, '', { 'content-type': 'application/json' });
        if (r.status !== 200) throw new Error(`unload ${name}: ${r.status}`);
      };
      const coldPhase = await phase(Number(args.cold), unload, cold);
      await infer(warm); // the big batch's first runs are measured alone (runtime/footprint.ts): not timed
      await infer(warm);
      await infer(warm);
      const warmPhase = await phase(Number(args.warm), () => Promise.resolve(), warm);
      if (Number(args.tput) > 0) warmPhase.perS = await throughput(4, Number(args.tput), () => infer(warm));
      out[name] = { cold: coldPhase, warm: warmPhase };
      console.error(`${label} ${name} done`);
    }
    c.close();
    return out;
  } finally {
    for (const s of servers.reverse()) await s.stop();
    await redis?.stop();
    delete process.env.REDIS_URL;
    rmSync(tmp, { recursive: true, force: true });
  }
}

const nowEnv = Object.fromEntries(args.env.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
const runs: Array<[string, string, Record<string, string>]> = [...(args.base ? [['base', args.base, {}] as [string, string, Record<string, string>]] : []), ['now', here, nowEnv]];
const results: Record<string, Awaited<ReturnType<typeof run>>> = {};
for (const [label, dir, env] of runs) results[label] = await run(label, dir, env);

const f = (x: number) => x.toFixed(1).padStart(8);
const load = execFileSync('uptime').toString().trim().replace(/^.*load average: /, '');
console.log(`\nevent loop while a model loads or runs: ROLE=${args.role}, ${new Date().toISOString()}, load average ${load}${args.env ? `, now with ${args.env}` : ''}`);
console.log(`   loop ms: monitorEventLoopDelay (1 ms resolution: idle reads ~1), max and p99 over the phase's calls; /healthz ms: slowest answer, longest gap between answers (asked every 5 ms); call ms: median; calls/s: warm, 4 callers at once for ${args.tput} s, no /healthz probe`);
console.log(`${'model'.padEnd(10)} ${'phase'.padEnd(5)} ${'run'.padEnd(5)} ${'loop max'.padStart(8)} ${'loop p99'.padStart(8)} ${'hz max'.padStart(8)} ${'hz gap'.padStart(8)} ${'call ms'.padStart(8)} ${'calls/s'.padStart(8)}`);
for (const name of args.models.split(',')) {
  for (const ph of ['cold', 'warm'] as const) {
    for (const [label] of runs) {
      const p = results[label]![name]![ph];
      console.log(`${name.padEnd(10)} ${ph.padEnd(5)} ${label.padEnd(5)} ${f(p.loopMax)} ${f(p.loopP99)} ${f(p.healthMax)} ${f(p.healthGap)} ${f(median(p.calls))} ${p.perS === undefined ? '' : f(p.perS)}`);
    }
  }
}
writeFileSync(join(tmpdir(), `brulee-event-loop-${args.role}.json`), JSON.stringify(results));
