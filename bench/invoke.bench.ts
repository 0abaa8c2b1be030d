/**
 * brulee against raw onnxruntime, side by side in one run (never part of `npm test`):
 *   warm: raw session.run vs. a brulee warm invoke over HTTP (p50, p99, throughput)
 *   cold: raw file read + session create vs. a brulee cold invoke (unload, then invoke)
 *
 *   npm run bench                        # small MLP (~20 KB)
 *   npm run bench -- --model-bytes 20MB  # a bigger MLP
 *   npm run bench -- --model FILE.onnx --input '{"x": {"type": "float32", "dims": [1, 64], "data": [...]}}'   (or --input @inputs.json)
 *
 * The server runs as its own process (`node --import tsx server.ts`), as `npm start` does, with
 * a private redis-server unless REDIS_URL is set.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { parseBytes } from '../config';
import { startRedisServer } from '../queue/redis-server';
import { mlpForBytes, mlpModel } from '../models/generate';
import { latencies, median, pct, readyPort, throughput } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string' },
    input: { type: 'string' },
    'model-bytes': { type: 'string' },
    n: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    cold: { type: 'string', default: '15' },
  },
}).values;
const N = Number(args.n);
const CONC = Number(args.concurrency);
const SECONDS = Number(args.seconds);
const COLD = Number(args.cold);


const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-'));
const modelPath = join(dir, 'model.onnx');
let bytes: Uint8Array;
let input: Record<string, { type: string; dims: number[]; data: number[] }>;
if (args.model) {
  bytes = new Uint8Array(readFileSync(args.model));
  if (!args.input) throw new Error('--model needs --input (JSON inputs as the invoke API takes them)');
  input = JSON.parse(args.input.startsWith('@') ? readFileSync(args.input.slice(1), 'utf8') : args.input);
} else {
  bytes = args['model-bytes'] ? mlpForBytes(parseBytes(args['model-bytes']), 1) : mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 });
  input = { x: { type: 'float32', dims: [1, 64], data: Array.from({ length: 64 }, (_, i) => Math.sin(i)) } };
}
writeFileSync(modelPath, bytes);
const feeds = () =>
  Object.fromEntries(Object.entries(input).map(([k, t]) => [k, new ort.Tensor(t.type as 'float32', t.type === 'int64' ? BigInt64Array.from(t.data.map(BigInt)) : t.type === 'float32' ? Float32Array.from(t.data) : Float64Array.from(t.data), t.dims)]));

async function main() {
  // Raw onnxruntime.
  const session = await ort.InferenceSession.create(modelPath);
  const rawWarm = await latencies(N, () => session.run(feeds()));
  const rawTput = await throughput(CONC, SECONDS, () => session.run(feeds()));
  const rawCold: number[] = [];
  for (let i = 0; i < COLD; i++) {
    const t = performance.now();
    const s = await ort.InferenceSession.create(modelPath); // onnxruntime reads the file itself, as brulee's node does
    await s.run(feeds());
    rawCold.push(performance.now() - t);
    await s.release();
  }
  await session.release();

  // brulee, as its own process.
  const redis = process.env.REDIS_URL ? undefined : await startRedisServer({ dir: join(dir, 'redis'), persist: false });
  const server: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
    env: { ...process.env, PORT: '0', GRPC_PORT: '0', REDIS_URL: process.env.REDIS_URL ?? redis!.url, DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'warn', NODE_ID: 'bench', WORKER_CONCURRENCY: String(Math.min(CONC, 64)) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = `http://127.0.0.1:${await readyPort(server)}`;
  try {
    const put = await fetch(`${base}/functions/bench`, { method: 'PUT', body: bytes });
    if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
    const body = JSON.stringify({ inputs: input });
    const invoke = async () => {
      const r = await fetch(`${base}/functions/bench/invoke`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      if (r.status !== 200) throw new Error(`invoke failed: ${r.status} ${await r.text()}`);
      return (await r.json()) as { coldStart: boolean; timings: Record<string, number> };
    };
    const bruleeWarm = await latencies(N, invoke);
    const bruleeTput = await throughput(CONC, SECONDS, invoke);
    const bruleeCold: number[] = [];
    const coldLoadMs: number[] = [];
    for (let i = 0; i < COLD; i++) {
      await fetch(`${base}/v2/repository/models/bench/unload`, { method: 'POST' });
      await new Promise((r) => setTimeout(r, 100)); // let the unload's session release finish first
      const t = performance.now();
      const r = await invoke();
      bruleeCold.push(performance.now() - t);
      coldLoadMs.push(r.timings.loadMs!);
      if (!r.coldStart) throw new Error('expected a cold start after unload');
    }

    const f = (x: number) => x.toFixed(3).padStart(9);
    console.log(`\nmodel: ${args.model ?? (args['model-bytes'] ? `MLP ~${args['model-bytes']}` : 'MLP 64-64-16')} (${bytes.byteLength} bytes); node ${process.version}; ${N} sequential calls, ${CONC} concurrent for ${SECONDS} s, ${COLD} cold starts\n`);
    console.log('                        raw onnxruntime   brulee (HTTP)   brulee - raw   ratio');
    const row = (name: string, raw: number, br: number, unit = 'ms') =>
      console.log(`${name.padEnd(24)}${f(raw)} ${unit}    ${f(br)} ${unit}  ${f(br - raw)} ${unit}  ${(br / raw).toFixed(2).padStart(6)}x`);
    row('warm p50', median(rawWarm), median(bruleeWarm));
    row('warm p99', pct(rawWarm, 99), pct(bruleeWarm, 99));
    console.log(`${'throughput'.padEnd(24)}${rawTput.toFixed(0).padStart(9)} /s    ${bruleeTput.toFixed(0).padStart(9)} /s  ${''.padStart(12)}  ${(bruleeTput / rawTput).toFixed(2).padStart(6)}x`);
    row('cold (median)', median(rawCold), median(bruleeCold));
    console.log(`\nraw cold = create the session from the file (onnxruntime reads it) + first run; brulee cold = HTTP invoke right after an unload (of which the node's session create: median ${median(coldLoadMs).toFixed(3)} ms).`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
