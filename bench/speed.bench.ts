/**
 * Issue 10's numbers, today against now, beside raw onnxruntime, in one run (never part of
 * `npm test`). "today" is any other checkout of brulee (`--today DIR`, e.g. a worktree of the commit
 * before the speed work); "now" is this one. Each runs as `npm start` does, one at a time, with its
 * own private redis-server; the machine is the same, so compare ratios within one run.
 *
 *   git worktree add /tmp/brulee-today 60928a7 && ln -s $PWD/node_modules /tmp/brulee-today/
 *   npm run bench:speed -- --today /tmp/brulee-today                          # all models
 *   npm run bench:speed -- --today /tmp/brulee-today --models mlp,ocr-cls --cold 9
 *
 * Per model: cold (unload, then one invoke; median) against raw onnxruntime's default
 * `InferenceSession.create(path)` + first run, taking turns (raw, today, now, raw, ...) so that a
 * shared machine's load drifts over all three alike; "load ms" is the session create alone (raw)
 * or the node's own load time (fetch + create); warm p50/p99 of sequential calls (v1 JSON); for the
 * small MLP also throughput at `--concurrency` and Redis commands per warm invocation (INFO
 * commandstats over `--count` calls, heartbeats and all), and a second baseline, "bullmq": BullMQ
 * alone (add -> worker -> reply stream, the same model on a raw session, no HTTP and no brulee
 * code; `bench/bullmq-floor.ts`), on a private redis-server of its own.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { createRedis } from '../queue/connection';
import { startRedisServer } from '../queue/redis-server';
import { mlpForBytes, mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { bullmqFloor } from './bullmq-floor';
import { latencies, median, pct, startServer, throughput, type BenchServer } from './support';

const args = parseArgs({
  options: {
    today: { type: 'string' },
    models: { type: 'string', default: 'mlp,ocr-cls,vad,ocr-det,ocr-rec,mlp-1MB,mlp-20MB,mlp-100MB' },
    n: { type: 'string', default: '500' },
    cold: { type: 'string', default: '7' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    count: { type: 'string', default: '500' },
  },
}).values;
const N = Number(args.n);
const COLD = Number(args.cold);

type JsonInput = Record<string, { type: string; dims: number[]; data: number[] }>;
const f32 = (dims: number[]) => ({ type: 'float32', dims, data: Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * 0.5) });
const MODELS: Record<string, () => { bytes: Uint8Array; input: JsonInput }> = {
  mlp: () => ({ bytes: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }), input: { x: f32([1, 64]) } }),
  'ocr-cls': () => ({ bytes: readModel(REAL_MODELS.ocrCls), input: { x: f32([1, 3, 48, 192]) } }),
  'ocr-det': () => ({ bytes: readModel(REAL_MODELS.ocrDet), input: { x: f32([1, 3, 96, 96]) } }),
  'ocr-rec': () => ({ bytes: readModel(REAL_MODELS.ocrRec), input: { x: f32([1, 3, 48, 96]) } }),
  vad: () => ({ bytes: readModel(REAL_MODELS.sileroVad), input: { input: f32([1, 512]), state: f32([2, 1, 128]), sr: { type: 'int64', dims: [], data: [16000] } } }),
  'mlp-1MB': () => ({ bytes: mlpForBytes(1e6, 1), input: { x: f32([1, 64]) } }),
  'mlp-20MB': () => ({ bytes: mlpForBytes(20e6, 1), input: { x: f32([1, 64]) } }),
  'mlp-100MB': () => ({ bytes: mlpForBytes(100e6, 1), input: { x: f32([1, 64]) } }),
};

const feeds = (input: JsonInput) =>
  Object.fromEntries(Object.entries(input).map(([k, t]) => [k, t.type === 'int64' ? new ort.Tensor('int64', BigInt64Array.from(t.data.map(BigInt)), t.dims) : new ort.Tensor('float32', Float32Array.from(t.data), t.dims)]));

interface Row { coldMs: number; loadMs: number; warmP50: number; warmP99: number; tput?: number; cmds?: Record<string, number>; cmdTotal?: number }

async function commandstats(url: string): Promise<Record<string, number>> {
  const r = createRedis(url);
  try {
    const out: Record<string, number> = {};
    for (const line of (await r.info('commandstats')).split('\n')) {
      const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
      if (m) out[m[1]!] = Number(m[2]);
    }
    return out;
  } finally {
    r.disconnect();
  }
}

/** A function registered on a server, and its v1 JSON invoke. */
function client(s: BenchServer, name: string, input: JsonInput) {
  const body = JSON.stringify({ inputs: input });
  return async () => {
    const r = await fetch(`${s.url}/functions/${name}/invoke`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    if (r.status !== 200) throw new Error(`invoke failed: ${r.status} ${await r.text()}`);
    return (await r.json()) as { coldStart: boolean; timings: Record<string, number> };
  };
}

/** One cold invoke: unload, let the node settle, invoke; its time and the node's own load ms (session create + fetch). */
async function coldOnce(s: BenchServer, name: string, invoke: ReturnType<typeof client>): Promise<{ coldMs: number; loadMs: number }> {
  await fetch(`${s.url}/v2/repository/models/${name}/unload`, { method: 'POST' });
  await new Promise((r) => setTimeout(r, 150));
  const t = performance.now();
  const r = await invoke();
  const coldMs = performance.now() - t;
  if (!r.coldStart) throw new Error('expected a cold start after unload');
  return { coldMs, loadMs: r.timings.loadMs! };
}

/** One raw cold start: onnxruntime's defaults, as a user would write it; create and first run apart. */
async function rawColdOnce(path: string, input: JsonInput): Promise<{ coldMs: number; loadMs: number }> {
  const t = performance.now();
  const s = await ort.InferenceSession.create(path);
  const loadMs = performance.now() - t;
  await s.run(feeds(input));
  const coldMs = performance.now() - t;
  await s.release();
  return { coldMs, loadMs };
}

async function warm(s: BenchServer, invoke: ReturnType<typeof client>, small: boolean): Promise<Omit<Row, 'coldMs' | 'loadMs'>> {
  const w = await latencies(N, invoke);
  const row: Omit<Row, 'coldMs' | 'loadMs'> = { warmP50: median(w), warmP99: pct(w, 99) };
  if (small) {
    const count = Number(args.count);
    const before = await commandstats(s.redisUrl);
    for (let i = 0; i < count; i++) await invoke();
    const after = await commandstats(s.redisUrl);
    row.cmds = {};
    for (const [k, v] of Object.entries(after)) if (k !== 'info' && v - (before[k] ?? 0) > 0) row.cmds[k] = (v - (before[k] ?? 0)) / count;
    row.cmdTotal = Object.values(row.cmds).reduce((a, b) => a + b, 0);
    row.tput = await throughput(Number(args.concurrency), Number(args.seconds), invoke);
  }
  return row;
}

async function rawWarm(path: string, input: JsonInput, small: boolean): Promise<Omit<Row, 'coldMs' | 'loadMs'>> {
  const s = await ort.InferenceSession.create(path);
  const w = await latencies(N, () => s.run(feeds(input)));
  const row: Omit<Row, 'coldMs' | 'loadMs'> = { warmP50: median(w), warmP99: pct(w, 99) };
  if (small) row.tput = await throughput(Number(args.concurrency), Number(args.seconds), () => s.run(feeds(input)));
  await s.release();
  return row;
}

/** BullMQ alone, the same model and input (see `bench/bullmq-floor.ts`). */
async function floor(path: string, input: JsonInput): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-floor-'));
  const redis = await startRedisServer({ dir, persist: false });
  const s = await ort.InferenceSession.create(path);
  try {
    const r = await bullmqFloor(redis.url, s, () => feeds(input), { n: N, count: Number(args.count), concurrency: Number(args.concurrency), seconds: Number(args.seconds) });
    return { coldMs: NaN, loadMs: NaN, warmP50: r.warmP50, warmP99: r.warmP99, tput: r.tput, cmdTotal: r.cmdTotal };
  } finally {
    await s.release();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-speed-'));
  const names = args.models.split(',');
  const env = { WORKER_CONCURRENCY: String(Math.min(Number(args.concurrency), 64)), MEMORY_BUDGET: '4GiB' };
  const labels = [...(args.today ? [['today', args.today] as const] : []), ['now', undefined] as const];
  try {
    for (const name of names) {
      const m = MODELS[name];
      if (!m) throw new Error(`unknown model ${name}; known: ${Object.keys(MODELS).join(', ')}`);
      const { bytes, input } = m();
      const path = join(dir, `${name}.onnx`);
      writeFileSync(path, bytes);
      const small = name === 'mlp';
      // Every server is up and registered first; then the cold starts of raw, today and now take
      // turns, one of each per round, so the load of a shared machine drifts over all of them alike.
      const servers: Array<{ label: string; s: BenchServer; invoke: ReturnType<typeof client> }> = [];
      try {
        for (const [label, cwd] of labels) {
          const s = await startServer(join(dir, `${label}-${name}`), env, cwd);
          servers.push({ label, s, invoke: client(s, name, input) });
          const put = await fetch(`${s.url}/functions/${name}`, { method: 'PUT', body: bytes });
          if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
        }
        // Not counted: this process's first session pays onnxruntime's own start (a node paid it at its start).
        await rawColdOnce(path, input);
        const cold: Record<string, Array<{ coldMs: number; loadMs: number }>> = { raw: [] };
        for (let i = 0; i < COLD; i++) {
          cold.raw!.push(await rawColdOnce(path, input));
          for (const { label, s, invoke } of servers) (cold[label] ??= []).push(await coldOnce(s, name, invoke));
        }
        const pick = (label: string) => ({ coldMs: median(cold[label]!.map((c) => c.coldMs)), loadMs: median(cold[label]!.map((c) => c.loadMs)) });
        const results: Record<string, Row> = { raw: { ...pick('raw'), ...(await rawWarm(path, input, small)) } };
        if (small) results.bullmq = await floor(path, input);
        for (const { label, s, invoke } of servers) results[label] = { ...pick(label), ...(await warm(s, invoke, small)) };
        print(name, bytes.byteLength, results);
      } finally {
        for (const { s } of servers) await s.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function print(name: string, size: number, r: Record<string, Row>) {
  const f = (x: number | undefined, d = 2) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));
  console.log(`\n${name} (${size} bytes); load average ${(await0())}`);
  console.log(`  ${''.padEnd(8)}${'cold ms'.padStart(10)}${'x raw'.padStart(8)}${'load ms'.padStart(10)}${'warm p50'.padStart(10)}${'- raw'.padStart(8)}${'warm p99'.padStart(10)}${'tput /s'.padStart(10)}${'redis cmds/call'.padStart(17)}`);
  const rawRow = r.raw!;
  for (const [label, row] of Object.entries(r)) {
    console.log(
      `  ${label.padEnd(8)}${f(row.coldMs).padStart(10)}${(label === 'raw' ? '' : f(row.coldMs / rawRow.coldMs)).padStart(8)}${f(row.loadMs).padStart(10)}${f(row.warmP50, 3).padStart(10)}${(label === 'raw' ? '' : f(row.warmP50 - rawRow.warmP50, 3)).padStart(8)}${f(row.warmP99, 3).padStart(10)}${f(row.tput, 0).padStart(10)}${f(row.cmdTotal, 1).padStart(17)}`,
    );
    if (row.cmds) console.log(`           ${Object.entries(row.cmds).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  }
}
function await0(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') + ' (a shared machine)';
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
