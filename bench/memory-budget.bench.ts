/**
 * Is a worker's memory honest to its budget (issue 12 §4)? A gateway and a worker (each
 * `node --import tsx server.ts`, as `npm start` runs them) serve a seeded random workload over 15
 * models: the 4 real ones (PP-OCR det, rec, cls; Silero VAD) with inputs of varied sizes, and 11
 * generated MLPs of 0.5-32 MB with varied batch sizes, under a MEMORY_BUDGET that forces evictions
 * (a fraction of the sum of the models' resident bytes). It reports the worker's RSS above its
 * idle RSS, at its peak (the kernel's VmHWM, reset once idle, so no sample is missed) and at the
 * end, against the budget, beside what the warm pool's accounting said.
 *
 *   npx tsx bench/memory-budget.bench.ts [--calls 400] [--concurrency 4] [--fraction 0.4] [--seed 1]
 *                                        [--env NAME=VALUE ...]   (e.g. --env MALLOC_ARENA_MAX=2)
 *                                        [--probe]  (splits the worker's highest sampled RSS into native
 *                                                    bytes, JS ArrayBuffers and V8 heap: bench/memory-probe.mjs)
 *                                        [--series]  (with --probe: how high single 50 ms RSS samples stand
 *                                                    above their neighbours, against the budget: spikes)
 *                                        [--trim]  (at the end, calls glibc's malloc_trim(0) in the worker through
 *                                                   gdb, which must be installed, and reports its RSS after: what
 *                                                   malloc kept of freed memory)
 *                                        [--arm NAME=DIR ...]  (the same calls through a worker of each checkout in
 *                                                   turn, after one registration: each arm from Redis as registration
 *                                                   left it, with a gateway and a worker of its own; a before/after
 *                                                   pair in one run. Default: this checkout alone)
 *
 * It also reports the worker's RSS by kind of mapping (`smaps`: malloc's main heap, anonymous, files)
 * at idle and at the end, the loads that waited for the worker's overhead (brulee_overhead_waits),
 * and a one-line summary per arm.
 */
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { mlpForBytes, mulberry32 as seededRandom } from '../models/generate';
import { closeRedis, createRedis, waitForRedis } from '../queue/connection';
import { startRedisServer } from '../queue/redis-server';
import { REAL_MODELS, readModel } from '../test/support/models';
import { startProc, stopAll, type Proc } from '../test/support/procs';
import { npmStartEnv } from './support';

const MiB = 1024 ** 2;
const { values: args } = parseArgs({
  options: {
    calls: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: '4' },
    fraction: { type: 'string', default: '0.4' },
    seed: { type: 'string', default: '1' },
    env: { type: 'string', multiple: true, default: [] },
    json: { type: 'string' },
    probe: { type: 'boolean', default: false },
    series: { type: 'boolean', default: false },
    trim: { type: 'boolean', default: false },
    arm: { type: 'string', multiple: true, default: [] },
  },
});
/** The checkouts whose workers run the calls, in order, after one registration (`--arm NAME=DIR`; this one by default). */
const arms = (args.arm.length > 0 ? args.arm : ['this=.']).map((a) => ({ name: a.slice(0, a.indexOf('=')), cwd: resolve(a.slice(a.indexOf('=') + 1)) }));
// `--env` for every arm's worker (`--env GLIBC_TUNABLES=` runs it without, as before issue 12 §4);
// otherwise each worker runs with the tunables its checkout's `npm start` sets (`armEnv`).
const extraEnv: Record<string, string> = {
  ...Object.fromEntries(args.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
};

const status = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The process's resident bytes by kind of mapping, MiB: malloc's main heap (its main arena only), anonymous (large blocks, V8's heap, and glibc's per-thread arenas, which onnxruntime's threads allocate from), files, the rest. */
function smaps(pid: number): Record<string, number> {
  const out: Record<string, number> = { heap: 0, anon: 0, file: 0, other: 0 };
  let kind = 'other';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) kind = m[1] === '[heap]' ? 'heap' : m[1] === '' ? 'anon' : m[1]!.startsWith('/') ? 'file' : 'other';
    else if (line.startsWith('Rss:')) out[kind]! += Number(/(\d+)/.exec(line)![1]) / 1024;
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}

/**
 * A probe file (bench/memory-probe.mjs writes each one whole and renames it into place), or
 * undefined with a note when the worker wrote none: the run's other figures still count.
 */
function probeFile<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    console.error(`no probe figures from ${path}: ${String(e)}`);
    return undefined;
  }
}

async function settled(pid: number): Promise<number> {
  await sleep(2000);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    xs.push(status(pid, 'VmRSS'));
    await sleep(500);
  }
  return xs.sort((a, b) => a - b)[2]!;
}

async function workerMemory(base: string): Promise<{ rssBytes: number; heapBytes: number; externalBytes: number } | undefined> {
  await sleep(1100); // a heartbeat carries it
  const s = (await (await fetch(`${base}/stats`)).json()) as { nodes: Array<{ id: string; memory?: { rssBytes: number; heapBytes: number; externalBytes: number } }> };
  return s.nodes.find((n) => n.id === 'w1')?.memory;
}

interface Model {
  fn: string;
  bytes: Uint8Array;
  /** A random input for one call. */
  input: (rnd: () => number) => Record<string, { type: string; dims: number[]; data: number[] }>;
}
const floats = (n: number, rnd: () => number) => Array.from({ length: n }, () => Math.round((rnd() * 2 - 1) * 1000) / 1000);
const pick = <T>(xs: readonly T[], rnd: () => number) => xs[Math.floor(rnd() * xs.length)]!;
const image = (c: number, h: number, w: number, rnd: () => number) => ({ x: { type: 'float32', dims: [1, c, h, w], data: floats(c * h * w, rnd) } });

const MLP_MB = [0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32];
const models: Model[] = [
  { fn: 'ocr-det', bytes: readModel(REAL_MODELS.ocrDet), input: (r) => image(3, pick([96, 160, 224, 320], r), pick([96, 160, 224, 320], r), r) },
  { fn: 'ocr-rec', bytes: readModel(REAL_MODELS.ocrRec), input: (r) => image(3, 48, pick([96, 160, 320, 480], r), r) },
  { fn: 'ocr-cls', bytes: readModel(REAL_MODELS.ocrCls), input: (r) => image(3, 48, 192, r) },
  {
    fn: 'vad',
    bytes: readModel(REAL_MODELS.sileroVad),
    input: (r) => ({ input: { type: 'float32', dims: [1, 512], data: floats(512, r) }, state: { type: 'float32', dims: [2, 1, 128], data: floats(256, r) }, sr: { type: 'int64', dims: [], data: [16000] } }),
  },
  ...MLP_MB.map((mb, i) => ({
    fn: `mlp-${mb}mb`,
    bytes: mlpForBytes(mb * 1024 * 1024, i + 1),
    input: (r: () => number) => {
      const b = 1 + Math.floor(r() * 16);
      return { x: { type: 'float32', dims: [b, 64], data: floats(b * 64, r) } };
    },
  })),
];

const dir = mkdtempSync(join(tmpdir(), 'brulee-membench-'));
const probeOut = join(dir, 'probe.json');
if (args.probe) {
  extraEnv.NODE_OPTIONS = `${extraEnv.NODE_OPTIONS ?? ''} --import ${pathToFileURL(join(import.meta.dirname, 'memory-probe.mjs')).href}`.trim();
  extraEnv.PROBE_OUT = probeOut;
  if (args.series) extraEnv.PROBE_SERIES = join(dir, 'series.json');
}
const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
const procs: Proc[] = [];
const shared = { REDIS_URL: redis.url, KEY_PREFIX: 'mb', MODEL_STORE: pathToFileURL(join(dir, 'store')).href, LOG_LEVEL: 'warn', POPULARITY_CRON: '*/5 * * * * *' };
const summary: Awaited<ReturnType<typeof runArm>>[] = [];
try {
  const reg = await startProc('gw', 'gateway', shared);
  procs.push(reg);
  // Sizes first (registration profiles each model), so the budget can be a fraction of their sum.
  const resident: Record<string, number> = {};
  for (const m of models) {
    const r = await fetch(`${reg.base}/functions/${m.fn}`, { method: 'PUT', body: m.bytes, headers: { 'content-type': 'application/octet-stream' } });
    const body = (await r.json()) as { profile?: { residentBytes: number } };
    if (r.status !== 201 || !body.profile) throw new Error(`register ${m.fn}: ${r.status} ${JSON.stringify(body)}`);
    resident[m.fn] = body.profile.residentBytes;
  }
  const sum = Object.values(resident).reduce((a, b) => a + b, 0);
  const largest = Math.max(...Object.values(resident));
  const budget = Math.max(largest, Math.floor(sum * Number(args.fraction)));
  // Each arm starts from Redis as registration left it (its keys dumped here, restored before each
  // arm), with a gateway and a worker of its own: no arm learns popularity or stats from another.
  await reg.stop();
  procs.length = 0;
  const conn = createRedis(redis.url, { name: 'bench-memory-budget' });
  await waitForRedis(conn);
  const dumped: Array<[string, Buffer]> = [];
  for (const k of await conn.keys('*')) {
    const d = await conn.dumpBuffer(k);
    if (d) dumped.push([k, d]);
  }
  for (const arm of arms) {
    await conn.flushall();
    for (const [k, d] of dumped) await conn.restore(k, 0, d);
    const result = await runArm(arm, budget, sum, resident);
    console.log(JSON.stringify(result, null, 1));
    if (args.json) writeFileSync(args.json, JSON.stringify(result) + '\n', { flag: 'a' });
    summary.push(result);
  }
  await closeRedis(conn);
  for (const r of summary) {
    const at = r.atSampledPeak as { nativeRatio: number; arrayBuffersRatio: number } | undefined;
    console.log(
      `${r.arm}: seed ${args.seed}, peak ${r.peakRatio.toFixed(2)}x, end ${r.endRatio.toFixed(2)}x of ${r.budgetMiB.toFixed(1)} MiB, ${r.loads} loads, ${r.seconds.toFixed(1)} s of calls, ${JSON.stringify(r.byStatus)}, load ${r.loadavg}, overhead waits ${JSON.stringify(r.overheadWaits)}` +
        (at ? `; at the sampled peak native ${at.nativeRatio.toFixed(2)}x, ArrayBuffers ${at.arrayBuffersRatio.toFixed(2)}x` : ''),
    );
  }
} finally {
  await stopAll(procs);
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

/** Runs the seeded calls through a fresh gateway and a worker of `arm`'s checkout, and measures the worker. */
async function runArm(arm: { name: string; cwd: string }, budget: number, sum: number, resident: Record<string, number>) {
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  rmSync(probeOut, { force: true });
  rmSync(join(dir, 'series.json'), { force: true });
  const gw = await startProc('gw', 'gateway', { ...shared, GLIBC_TUNABLES: npmStartEnv().GLIBC_TUNABLES ?? '' });
  procs.push(gw);
  // (None, for a checkout whose npm start sets none: an empty value is glibc's defaults too.)
  const armEnv = { GLIBC_TUNABLES: npmStartEnv(arm.cwd).GLIBC_TUNABLES ?? '', ...extraEnv };
  const worker = await startProc('w1', 'worker', { ...shared, NODE_ID: 'w1', MEMORY_BUDGET: String(budget), ...armEnv }, { cwd: arm.cwd });
  procs.push(worker);
  const pid = worker.child.pid!;
  const idle = await settled(pid);
  const idleSmaps = smaps(pid);
  writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
  const idleHeap = (await workerMemory(gw.base))?.heapBytes ?? 0;

  const rnd = seededRandom(Number(args.seed));
  // Zipf-like popularity over a shuffled order: a few models hot, most warm now and then.
  const order = [...models].sort(() => rnd() - 0.5);
  const weights = order.map((_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const draw = () => {
    let x = rnd() * total;
    for (let i = 0; i < order.length; i++) if ((x -= weights[i]!) <= 0) return order[i]!;
    return order[order.length - 1]!;
  };
  const calls = Array.from({ length: Number(args.calls) }, () => {
    const m = draw();
    return { m, body: JSON.stringify({ inputs: m.input(rnd) }) };
  });
  let maxUsed = 0;
  let maxHeap = 0;
  let maxExternal = 0;
  let maxSampled = 0;
  const sampler = setInterval(() => {
    maxSampled = Math.max(maxSampled, status(pid, 'VmRSS'));
  }, 50);
  const poller = setInterval(() => {
    void fetch(`${gw.base}/stats`)
      .then((r) => r.json() as Promise<{ nodes: Array<{ id: string; usedBytes: number; memory?: { heapBytes: number; externalBytes: number } }> }>)
      .then((s) => {
        const n = s.nodes.find((x) => x.id === 'w1');
        maxUsed = Math.max(maxUsed, n?.usedBytes ?? 0);
        maxHeap = Math.max(maxHeap, n?.memory?.heapBytes ?? 0);
        maxExternal = Math.max(maxExternal, n?.memory?.externalBytes ?? 0);
      })
      .catch(() => undefined);
  }, 200);
  const byStatus: Record<number, number> = {};
  let next = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: Number(args.concurrency) }, async () => {
      while (next < calls.length) {
        const c = calls[next++]!;
        const r = await fetch(`${gw.base}/functions/${c.m.fn}/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: c.body });
        const text = await r.text();
        byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
        if (r.status !== 200) console.error(c.m.fn, r.status, text.slice(0, 300));
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  clearInterval(poller);
  const peak = status(pid, 'VmHWM');
  const end = await settled(pid);
  const endSmaps = smaps(pid);
  let trimmed: unknown;
  if (args.trim) {
    const { execFileSync } = await import('node:child_process');
    execFileSync('gdb', ['-p', String(pid), '-batch', '-ex', 'call (int)malloc_trim(0)'], { stdio: 'ignore' });
    await sleep(500);
    trimmed = { endRatio: (status(pid, 'VmRSS') - idle) / budget, smaps: smaps(pid) };
  }
  // Loads that waited for the worker's overhead (brulee_overhead_waits), where the worker has it.
  const metricsText = await (await fetch(`${worker.base}/metrics`)).text();
  const overheadWaits = Object.fromEntries([...metricsText.matchAll(/^brulee_overhead_waits\{[^}]*what="(\w+)"[^}]*\} (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
  const endMem = (await workerMemory(gw.base))!;
  const st = (await (await fetch(`${gw.base}/stats`)).json()) as {
    nodes: Array<{ id: string; usedBytes: number; evictions: number; loads: number; memory?: { heapBytes: number; externalBytes: number }; residentModels: Array<{ fn: string; sizeBytes: number }> }>;
  };
  const node = st.nodes.find((n) => n.id === 'w1')!;
  // The highest sampled RSS, split: native (RSS less V8 heap less ArrayBuffers, above the same at
  // idle: models, arenas, malloc), JS ArrayBuffers (tensors in flight or not yet collected), V8 heap growth.
  let atSampledPeak: Record<string, unknown> | undefined;
  const p = args.probe ? probeFile<{ rssMiB: number; heapTotalMiB: number; arrayBuffersMiB: number; gc: unknown }>(probeOut) : undefined;
  if (p) {
    const [i, ih, b] = [idle / MiB, idleHeap / MiB, budget / MiB];
    atSampledPeak = {
      aboveIdleRatio: (p.rssMiB - i) / b,
      nativeRatio: (p.rssMiB - p.heapTotalMiB - p.arrayBuffersMiB - (i - ih)) / b,
      arrayBuffersRatio: p.arrayBuffersMiB / b,
      heapGrowthRatio: (p.heapTotalMiB - ih) / b,
      ...p,
    };
  }
  // How far one 50 ms sample stands above the samples beside it (a spike the next sample no longer
  // shows), above the least of the last three (what a min-of-3 filter would not see) and below the
  // most of the last three (what a max-of-3 would add), in budgets.
  let spikes: Record<string, unknown> | undefined;
  const xs = args.probe && args.series ? probeFile<number[]>(join(dir, 'series.json')) : undefined;
  if (xs) {
    const q = (ys: number[]) => {
      const s = [...ys].sort((a, b) => a - b);
      const at = (f: number) => Math.round((s[Math.min(s.length - 1, Math.floor(f * s.length))]! / budget) * 1000) / 1000;
      return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1), over005: s.filter((y) => y > 0.05 * budget).length, over01: s.filter((y) => y > 0.1 * budget).length };
    };
    const single: number[] = [];
    const overMin3: number[] = [];
    const underMax3: number[] = [];
    for (let i = 2; i < xs.length - 1; i++) {
      single.push(Math.max(0, xs[i]! - Math.max(xs[i - 1]!, xs[i + 1]!)));
      overMin3.push(xs[i]! - Math.min(xs[i]!, xs[i - 1]!, xs[i - 2]!));
      underMax3.push(Math.max(xs[i]!, xs[i - 1]!, xs[i - 2]!) - xs[i]!);
    }
    spikes = { samples: xs.length, single: q(single), overMin3: q(overMin3), underMax3: q(underMax3) };
  }
  const out = {
    when: new Date().toISOString(),
    arm: arm.name,
    cwd: arm.cwd,
    loadavg: load0,
    env: armEnv,
    calls: calls.length,
    concurrency: Number(args.concurrency),
    seconds,
    byStatus,
    models: models.length,
    sumResidentMiB: sum / MiB,
    budgetMiB: budget / MiB,
    idleMiB: idle / MiB,
    peakAboveIdleMiB: (peak - idle) / MiB,
    peakRatio: (peak - idle) / budget,
    sampledMaxRatio: (maxSampled - idle) / budget,
    endAboveIdleMiB: (end - idle) / MiB,
    endRatio: (end - idle) / budget,
    // RSS less the V8 heap, above the same at idle: what models and native buffers hold.
    endNativeAboveIdleMiB: (end - endMem.heapBytes - (idle - idleHeap)) / MiB,
    endNativeRatio: (end - endMem.heapBytes - (idle - idleHeap)) / budget,
    poolMaxUsedRatio: maxUsed / budget,
    poolEndUsedMiB: node.usedBytes / MiB,
    idleHeapMiB: idleHeap / MiB,
    maxHeapMiB: maxHeap / MiB,
    maxExternalMiB: maxExternal / MiB,
    endHeapMiB: (node.memory?.heapBytes ?? 0) / MiB,
    // RSS by kind of mapping at idle and at the end, MiB: memory malloc kept shows in the heap.
    smaps: { idle: idleSmaps, end: endSmaps, trimmed },
    charged: Object.fromEntries(node.residentModels.map((m) => [m.fn, `${(m.sizeBytes / MiB).toFixed(1)} (registered ${(resident[m.fn]! / MiB).toFixed(1)})`])),
    loads: node.loads,
    evictions: node.evictions,
    overheadWaits,
    ...(atSampledPeak ? { atSampledPeak } : {}),
    ...(spikes ? { spikes } : {}),
  };
  await stopAll(procs);
  procs.length = 0;
  return out;
}
