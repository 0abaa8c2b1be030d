/**
 * One vs two vs three worker processes on this machine, side by side in one run (never part of
 * `npm test`): a gateway and N workers (`npm start` processes, ROLE=gateway/worker, each with its
 * own DATA_DIR, one file:// model store), a Zipf-skewed stream of calls over 24 models whose
 * resident bytes add up to 3× one node's budget. Per configuration: throughput, p50/p99,
 * cold starts, copies made by placement, and Redis commands (and Redis CPU µs) per invocation from
 * INFO commandstats, with the ceiling that implies for one Redis. Raw onnxruntime on the same
 * calls (all sessions loaded, one process) is measured in the same run for scale.
 *
 *   npm run bench:cluster                       # 1500 calls per configuration, 16 at a time
 *   npm run bench:cluster -- --calls 3000 --concurrency 32 --workers 1,2,3
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import type { Redis } from 'ioredis';
import { mlpForBytes } from '../models/generate';
import { closeRedis, createRedis, waitForRedis } from '../queue/connection';
import { startRedisServer } from '../queue/redis-server';
import { startProc, stopAll, type Proc } from '../test/support/procs';

const args = parseArgs({
  options: {
    calls: { type: 'string', default: '1500' },
    concurrency: { type: 'string', default: '16' },
    workers: { type: 'string', default: '1,2,3' },
    models: { type: 'string', default: '24' },
    zipf: { type: 'string', default: '1.1' },
    /** Total resident bytes ÷ one node's budget. @default 3 */
    pressure: { type: 'string', default: '3' },
  },
}).values;
const CALLS = Number(args.calls);
const CONC = Number(args.concurrency);
const CONFIGS = args.workers!.split(',').map(Number);
const M = Number(args.models);
const S = Number(args.zipf);

// Models of 0.5-4 MB of weights; each is charged 4× its file (about what onnxruntime holds for an
// MLP: weights, arena, session), set with memoryBytes so every configuration charges the same.
const models = Array.from({ length: M }, (_, i) => {
  const bytes = mlpForBytes(500_000 + ((i * 7) % 8) * 500_000, i + 1);
  return { fn: `m${i}`, bytes, charge: bytes.byteLength * 4 };
});
const total = models.reduce((s, m) => s + m.charge, 0);
const budget = Math.ceil(total / Number(args.pressure));

// Zipf: model k (by rank) with weight 1/(k+1)^s; a fixed pseudo-random sequence.
const weights = models.map((_, k) => 1 / (k + 1) ** S);
const wsum = weights.reduce((a, b) => a + b, 0);
let seed = 12345;
const rnd = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
const sequence = Array.from({ length: CALLS }, () => {
  let r = rnd() * wsum;
  for (let k = 0; k < M; k++) if ((r -= weights[k]!) <= 0) return k;
  return M - 1;
});
const x = Array.from({ length: 64 }, (_, i) => Math.fround(Math.sin(i)));
const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 64], data: x } } });

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function commandstats(redis: Redis): Promise<{ calls: number; usec: number; by: Map<string, number> }> {
  const info = await redis.info('commandstats');
  let calls = 0;
  let usec = 0;
  const by = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    if (m[1] === 'info') continue;
    calls += Number(m[2]);
    usec += Number(m[3]);
    by.set(m[1]!, Number(m[2]));
  }
  return { calls, usec, by };
}

async function raw(): Promise<number> {
  const sessions = await Promise.all(models.map((m) => ort.InferenceSession.create(m.bytes)));
  const feed = { x: new ort.Tensor('float32', Float32Array.from(x), [1, 64]) };
  const t0 = performance.now();
  for (const k of sequence) await sessions[k]!.run(feed);
  const s = (performance.now() - t0) / 1000;
  await Promise.all(sessions.map((x) => x.release()));
  return CALLS / s;
}

async function run(workers: number, redisUrl: string, redis: Redis) {
  const prefix = `bench${workers}x${Date.now() % 100000}`;
  const store = mkdtempSync(join(tmpdir(), 'brulee-bench-store-'));
  const env = { REDIS_URL: redisUrl, KEY_PREFIX: prefix, MODEL_STORE: pathToFileURL(store).href, LOG_LEVEL: 'error', POPULARITY_CRON: '*/5 * * * * *' };
  const procs: Proc[] = [];
  try {
    const started = await Promise.all([
      startProc('gw', 'gateway', env),
      ...Array.from({ length: workers }, (_, i) => startProc(`w${i + 1}`, 'worker', { ...env, NODE_ID: `w${i + 1}`, MEMORY_BUDGET: String(budget), WORKER_CONCURRENCY: '4' })),
    ]);
    procs.push(...started);
    const gw = started[0]!;
    for (const m of models) {
      const r = await fetch(`${gw.base}/functions/${m.fn}?memoryBytes=${m.charge}`, { method: 'PUT', body: m.bytes });
      if (r.status !== 201) throw new Error(`register ${m.fn}: ${r.status} ${await r.text()}`);
    }
    const before = await commandstats(redis);
    const lat: number[] = [];
    let cold = 0;
    let errors = 0;
    const copies = new Map<string, Set<string>>();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONC }, async () => {
        while (next < CALLS) {
          const k = sequence[next++]!;
          const s = performance.now();
          const res = await fetch(`${gw.base}/functions/m${k}/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          const j = (await res.json()) as { coldStart?: boolean; node?: string };
          lat.push(performance.now() - s);
          if (res.status !== 200) errors++;
          if (j.coldStart) cold++;
          if (j.node) (copies.get(`m${k}`) ?? copies.set(`m${k}`, new Set()).get(`m${k}`)!).add(j.node);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const after = await commandstats(redis);
    const cmds = (after.calls - before.calls) / CALLS;
    const usec = (after.usec - before.usec) / CALLS;
    const multi = [...copies.values()].filter((s) => s.size > 1).length;
    const top = [...after.by].map(([c, v]) => [c, (v - (before.by.get(c) ?? 0)) / CALLS] as const).filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1]);
    console.log(`  ${workers} worker(s), Redis commands per call: ${top.map(([c, v]) => `${c} ${v.toFixed(2)}`).join(', ')}`);
    return { workers, throughput: CALLS / secs, p50: pct(lat, 50), p99: pct(lat, 99), cold, errors, modelsOnManyNodes: multi, cmdsPerCall: cmds, redisUsecPerCall: usec };
  } finally {
    await stopAll(procs);
    rmSync(store, { recursive: true, force: true });
    let cursor = '0';
    do {
      const [nextCursor, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (found.length > 0) await redis.unlink(...found);
      cursor = nextCursor;
    } while (cursor !== '0');
  }
}

const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-redis-'));
const server = await startRedisServer({ dir, persist: false });
const redis = createRedis(server.url, { name: 'bench-cluster' });
try {
  await waitForRedis(redis);
    console.log(`${M} models, ${(total / 1e6).toFixed(0)} MB charged in all, node budget ${(budget / 1e6).toFixed(0)} MB (total = ${args.pressure}× budget), Zipf s=${S}, ${CALLS} calls, ${CONC} at a time`);
  const rawTput = await raw();
  console.log(`raw onnxruntime, one process, all sessions loaded, sequential: ${rawTput.toFixed(0)} calls/s`);
  const rows = [];
  for (const n of CONFIGS) {
    const r = await run(n, server.url, redis);
    rows.push(r);
    console.log(JSON.stringify(r));
  }
  console.log('\n| workers | calls/s | vs 1 worker | p50 ms | p99 ms | cold starts | models served by >1 node | errors | Redis cmds/call | Redis µs/call | one-Redis ceiling (calls/s) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.workers} | ${r.throughput.toFixed(0)} | ${(r.throughput / rows[0]!.throughput).toFixed(2)}× | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.cold} | ${r.modelsOnManyNodes} | ${r.errors} | ${r.cmdsPerCall.toFixed(1)} | ${r.redisUsecPerCall.toFixed(0)} | ${(1e6 / r.redisUsecPerCall).toFixed(0)} |`,
    );
  }
} finally {
  await closeRedis(redis);
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
