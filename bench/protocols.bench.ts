/**
 * The same warm invocation through every protocol brulee speaks, beside raw onnxruntime, in one
 * run (never part of `npm test`): v1 JSON, v2 JSON, v2 binary REST (the binary tensor extension),
 * and v2 gRPC with raw contents. p50 and p99 of sequential calls, throughput at `--concurrency`.
 *
 *   npm run bench:protocols                      # PP-OCR cls, input 1x3x48x192 float32
 *   npm run bench:protocols -- --model mlp       # small MLP 64-64-16, input 1x64
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as ort from 'onnxruntime-node';
import { mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { latencies, median, pct, startServer, throughput } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'ocr-cls' },
    n: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
  },
}).values;
const N = Number(args.n);
const CONC = Number(args.concurrency);
const SECONDS = Number(args.seconds);

const MODELS: Record<string, () => { bytes: Uint8Array; input: string; dims: number[] }> = {
  'ocr-cls': () => ({ bytes: readModel(REAL_MODELS.ocrCls), input: 'x', dims: [1, 3, 48, 192] }),
  mlp: () => ({ bytes: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }), input: 'x', dims: [1, 64] }),
};

async function main() {
  const pick = MODELS[args.model!];
  if (!pick) throw new Error(`--model takes ${Object.keys(MODELS).join(', ')}`);
  const { bytes, input, dims } = pick();
  const count = dims.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: count }, (_, i) => Math.sin(i) / 2);

  const rows: Array<{ name: string; lat: number[]; tput: number }> = [];
  const session = await ort.InferenceSession.create(bytes);
  const raw = () => session.run({ [input]: new ort.Tensor('float32', x, dims) });
  rows.push({ name: 'raw onnxruntime', lat: await latencies(N, raw), tput: await throughput(CONC, SECONDS, raw) });
  await session.release();

  const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-'));
  const server = await startServer(dir, { WORKER_CONCURRENCY: String(Math.min(CONC, 64)) });
  const proto = fileURLToPath(new URL('../functions/grpc/inference.proto', import.meta.url));
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, longs: String, defaults: true })) as any;
  const client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  try {
    const put = await fetch(`${server.url}/functions/bench`, { method: 'PUT', body: bytes });
    if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
    const post = async (path: string, body: string | Buffer, headers: Record<string, string>) => {
      const r = await fetch(`${server.url}${path}`, { method: 'POST', body, headers });
      if (r.status !== 200) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
    };
    const v1 = JSON.stringify({ inputs: { [input]: { type: 'float32', dims, data: Array.from(x) } } });
    const v2 = JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', data: Array.from(x) }] });
    const header = JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], parameters: { binary_data_output: true } });
    const binary = Buffer.concat([Buffer.from(header), Buffer.from(x.buffer)]);
    const rawX = Buffer.from(x.buffer);
    const gcall = () =>
      new Promise<void>((resolve, reject) =>
        client.ModelInfer({ model_name: 'bench', inputs: [{ name: input, datatype: 'FP32', shape: dims }], raw_input_contents: [rawX] }, (e: Error | null) => (e ? reject(e) : resolve())),
      );
    const protocols: Array<[string, () => Promise<void>]> = [
      ['v1 JSON (HTTP)', () => post('/functions/bench/invoke', v1, { 'content-type': 'application/json' })],
      ['v2 JSON (HTTP)', () => post('/v2/models/bench/infer', v2, { 'content-type': 'application/json' })],
      ['v2 binary (HTTP)', () => post('/v2/models/bench/infer', binary, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(Buffer.byteLength(header)) })],
      ['v2 gRPC (raw)', gcall],
    ];
    for (const [name, f] of protocols) {
      try {
        await f();
      } catch (e) {
        console.log(`${name}: not measured (${e instanceof Error ? e.message.slice(0, 120) : String(e)})`);
        continue;
      }
      rows.push({ name, lat: await latencies(N, f), tput: await throughput(CONC, SECONDS, f) });
    }
  } finally {
    client.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const base = rows[0]!;
  console.log(`\nmodel: ${args.model} (${bytes.byteLength} bytes), input ${input} float32 ${JSON.stringify(dims)} (${x.byteLength} bytes); node ${process.version}; ${N} sequential calls, ${CONC} concurrent for ${SECONDS} s\n`);
  console.log(`${'protocol'.padEnd(20)}${'p50 ms'.padStart(9)}${'p50 - raw'.padStart(11)}${'p99 ms'.padStart(9)}${'calls/s'.padStart(10)}${'vs raw'.padStart(8)}`);
  for (const r of rows) {
    const p50 = median(r.lat);
    console.log(`${r.name.padEnd(20)}${p50.toFixed(3).padStart(9)}${(p50 - median(base.lat)).toFixed(3).padStart(11)}${pct(r.lat, 99).toFixed(3).padStart(9)}${r.tput.toFixed(0).padStart(10)}${(r.tput / base.tput).toFixed(3).padStart(8)}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
