/**
 * REST's binary tensor extension against REST JSON, gRPC and raw onnxruntime, interleaved, in one
 * run (never part of `npm test`). On a shared machine the load drifts from second to second, so
 * no protocol gets a quiet or a busy stretch of its own: sequential latencies go round-robin (one
 * call of each protocol per round), and throughput alternates short windows of each protocol at
 * `--concurrency` callers for `--rounds` rounds.
 *
 *   npm run bench:rest                               # PP-OCR cls, input 1x3x48x192 float32
 *   npm run bench:rest -- --model mlp --n 2000       # small MLP 64-64-16, input 1x64
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as ort from 'onnxruntime-node';
import { mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { median, pct, startServer } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'ocr-cls' },
    n: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '5' },
  },
}).values;
const N = Number(args.n);
const CONC = Number(args.concurrency);
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);

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

  const session = await ort.InferenceSession.create(bytes);
  const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-'));
  const server = await startServer(dir, { WORKER_CONCURRENCY: String(Math.min(CONC, 64)) });
  const proto = fileURLToPath(new URL('../functions/grpc/inference.proto', import.meta.url));
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, longs: String, defaults: true })) as any;
  const client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  try {
    const put = await fetch(`${server.url}/functions/bench`, { method: 'PUT', body: bytes });
    if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
    // node:http with keep-alive, not fetch: a lean client (as tritonclient's geventhttpclient is),
    // so the client's own cost on these shared cores does not stand in for the server's.
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONC, timeout: 3000 });
    // A kept-alive socket the server closed while idle resets: one retry (inference is idempotent).
    const post = (path: string, body: string | Buffer, headers: Record<string, string>): Promise<void> =>
      post1(path, body, headers).catch((e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? post1(path, body, headers) : Promise.reject(e)));
    const post1 = (path: string, body: string | Buffer, headers: Record<string, string>) =>
      new Promise<void>((resolve, reject) => {
        const req = http.request(`${server.url}${path}`, { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${path}: ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 200)}`))));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
    const v2json = JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', data: Array.from(x) }] });
    // What tritonclient.http sends by default: binary input, every output binary.
    const header = JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], parameters: { binary_data_output: true } });
    const binary = Buffer.concat([Buffer.from(header), Buffer.from(x.buffer)]);
    const rawX = Buffer.from(x.buffer);
    const protocols: Array<[string, () => Promise<unknown>]> = [
      ['raw onnxruntime', () => session.run({ [input]: new ort.Tensor('float32', x, dims) })],
      ['v2 JSON (HTTP)', () => post('/v2/models/bench/infer', v2json, { 'content-type': 'application/json' })],
      ['v2 binary (HTTP)', () => post('/v2/models/bench/infer', binary, { 'inference-header-content-length': String(Buffer.byteLength(header)) })],
      [
        'v2 gRPC (raw)',
        () =>
          new Promise<void>((resolve, reject) =>
            client.ModelInfer({ model_name: 'bench', inputs: [{ name: input, datatype: 'FP32', shape: dims }], raw_input_contents: [rawX] }, (e: Error | null) => (e ? reject(e) : resolve())),
          ),
      ],
    ];
    for (const [, f] of protocols) for (let i = 0; i < 20; i++) await f(); // warm: sessions, connections, JIT

    const lat = protocols.map(() => [] as number[]);
    for (let i = 0; i < N; i++) {
      for (let p = 0; p < protocols.length; p++) {
        const t = performance.now();
        await protocols[p]![1]();
        lat[p]!.push(performance.now() - t);
      }
    }
    const calls = protocols.map(() => 0);
    const time = protocols.map(() => 0);
    for (let r = 0; r < ROUNDS; r++) {
      for (let p = 0; p < protocols.length; p++) {
        const f = protocols[p]![1];
        const t0 = performance.now();
        const end = t0 + SECONDS * 1000;
        await Promise.all(
          Array.from({ length: CONC }, async () => {
            while (performance.now() < end) {
              await f();
              calls[p]!++;
            }
          }),
        );
        time[p]! += performance.now() - t0;
      }
    }

    const base = median(lat[0]!);
    const baseT = calls[0]! / time[0]!;
    console.log(`\nmodel: ${args.model} (${bytes.byteLength} bytes), input ${input} float32 ${JSON.stringify(dims)} (${x.byteLength} bytes); node ${process.version}`);
    console.log(`${N} rounds of one sequential call per protocol; throughput: ${ROUNDS} rounds of ${SECONDS} s per protocol at ${CONC} concurrent\n`);
    console.log(`${'protocol'.padEnd(20)}${'p50 ms'.padStart(9)}${'p50 - raw'.padStart(11)}${'p99 ms'.padStart(9)}${'calls/s'.padStart(10)}${'vs raw'.padStart(8)}`);
    protocols.forEach(([name], p) => {
      const p50 = median(lat[p]!);
      const tput = (calls[p]! / time[p]!) * 1000;
      console.log(`${name.padEnd(20)}${p50.toFixed(3).padStart(9)}${(p50 - base).toFixed(3).padStart(11)}${pct(lat[p]!, 99).toFixed(3).padStart(9)}${tput.toFixed(0).padStart(10)}${(tput / (baseT * 1000)).toFixed(3).padStart(8)}`);
    });
    agent.destroy();
  } finally {
    client.close();
    await session.release();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
