/**
 * Dynamic batching at `--concurrency` callers (default 64), beside raw onnxruntime in one run:
 * throughput and p99 of single-row calls to PP-OCR cls (1x3x48x192) and a generated MLP, through
 * brulee (v1 JSON) with batching off and on (`?maxBatch=&maxDelayMs=`). Never part of `npm test`.
 *
 *   npx tsx bench/batching.bench.ts [-- --seconds 5 --concurrency 64 --maxBatch 32 --maxDelayMs 2]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { pct, startServer } from './support';

const args = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '64' }, maxBatch: { type: 'string', default: '32' }, maxDelayMs: { type: 'string', default: '2' } } }).values;
const SECONDS = Number(args.seconds);
const CONC = Number(args.concurrency);

/** `conc` callers in a loop for `seconds`: calls/s and every call's latency, ms. */
async function load(conc: number, seconds: number, f: () => Promise<unknown>): Promise<{ tput: number; lat: number[] }> {
  for (let i = 0; i < 50; i++) await f();
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await f();
      lat.push(performance.now() - t);
    }
  }));
  return { tput: lat.length / ((performance.now() - t0) / 1000), lat };
}

const MODELS = [
  { name: 'PP-OCR cls', bytes: readModel(REAL_MODELS.ocrCls), dims: [1, 3, 48, 192] },
  { name: 'MLP 64-256-256-16', bytes: mlpModel({ inputSize: 64, hidden: [256, 256], outputSize: 16, seed: 1 }), dims: [1, 64] },
];

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-'));
  const server = await startServer(dir, { WORKER_CONCURRENCY: String(CONC) });
  const rows: string[] = [];
  try {
    for (const m of MODELS) {
      const count = m.dims.reduce((a, b) => a * b, 1);
      const x = Float32Array.from({ length: count }, (_, i) => Math.sin(i) / 2);
      const session = await ort.InferenceSession.create(m.bytes);
      const raw = await load(CONC, SECONDS, () => session.run({ x: new ort.Tensor('float32', x, m.dims) }));
      await session.release();
      const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: m.dims, data: Array.from(x) } } });
      const call = (fn: string) => async () => {
        const r = await fetch(`${server.url}/functions/${fn}/invoke`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
        if (r.status !== 200) throw new Error(`${fn}: ${r.status} ${await r.text()}`);
        await r.arrayBuffer();
      };
      const results: Array<[string, { tput: number; lat: number[] }]> = [['raw onnxruntime', raw]];
      for (const [label, q] of [['brulee, batching off', ''], [`brulee, maxBatch=${args.maxBatch} maxDelayMs=${args.maxDelayMs}`, `?maxBatch=${args.maxBatch}&maxDelayMs=${args.maxDelayMs}`]] as const) {
        const fn = `b${results.length}${m.dims.length}`;
        const put = await fetch(`${server.url}/functions/${fn}${q}`, { method: 'PUT', body: m.bytes });
        if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
        results.push([label, await load(CONC, SECONDS, call(fn))]);
      }
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const sum = Number(/brulee_batch_size_sum\{function="b2\d"\} (\d+)/.exec(metrics.split('\n').filter((l) => l.includes(`b2${m.dims.length}`)).join('\n'))?.[1] ?? 0);
      const cnt = Number(/brulee_batch_size_count\{function="b2\d"\} (\d+)/.exec(metrics.split('\n').filter((l) => l.includes(`b2${m.dims.length}`)).join('\n'))?.[1] ?? 0);
      for (const [label, r] of results) {
        rows.push(`| ${m.name} | ${label} | ${r.tput.toFixed(0)} | ${(r.tput / raw.tput).toFixed(2)} | ${pct(r.lat, 50).toFixed(1)} | ${pct(r.lat, 99).toFixed(1)} |`);
      }
      rows.push(`| ${m.name} | mean calls per run with batching (brulee_batch_size) | ${cnt ? (sum / cnt).toFixed(1) : '-'} | | | |`);
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\n${CONC} concurrent single-row callers, ${SECONDS} s each; node ${process.version}\n`);
  console.log('| model | path | calls/s | vs raw | p50 ms | p99 ms |\n|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
