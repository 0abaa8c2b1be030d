/**
 * REST's binary tensor extension against REST JSON, gRPC and raw onnxruntime, interleaved, in one
 * run (never part of `npm test`). On a shared machine the load drifts from second to second, so
 * no protocol gets a quiet or a busy stretch of its own: sequential latencies go in rounds (one
 * call of each protocol per round, each round in a shuffled order), and throughput alternates
 * short windows of each protocol at `--concurrency` callers for `--rounds` rounds.
 *
 *   npm run bench:rest                               # PP-OCR cls, input 1x3x48x192 float32
 *   npm run bench:rest -- --model mlp --n 2000       # small MLP 64-64-16, input 1x64
 *   npm run bench:rest -- --today /tmp/brulee-today  # also another checkout's server, interleaved with this one
 *   npm run bench:rest -- --threads 2                # both sessions (raw, brulee's ?threads=) on 2 intra-op threads (default 1, brulee's default)
 *
 * With `--today DIR` a second server runs from that checkout (its own node_modules and private
 * redis-server) and its rows go round-robin with this one's, so "today" and "now" see the same
 * load. Rows: raw onnxruntime; "http floor" (a bare node:http server in its own process that
 * reads the v2 binary request and answers as many bytes as brulee does: the transport alone, no
 * routing, no Redis, no model); "bullmq floor" (BullMQ alone: add -> worker -> reply stream on a
 * raw session, no HTTP, no brulee code: `bench/bullmq-floor.ts`; `--no-floor` leaves both out);
 * then per server v1 JSON, v2 JSON, v2 binary and gRPC. Then the same rows (but raw and bullmq;
 * with a "grpc floor": a bare @grpc/grpc-js server answering as many output bytes)
 * from clients in processes of their own, written in C: wrk (Debian's package) for HTTP, grpcio
 * (bench/grpc-load.py, Debian's python3-grpcio: its blocking stub at 1 caller, its asyncio stub at
 * more) for gRPC, in windows of `--seconds`
 * at 1 caller (latency) and at `--concurrency` (throughput), round-robin; the node:http client's
 * own cost (~0.5 ms a call on these cores) is in every row of the first table, the floor's too
 * (`--no-external` leaves them out). After the timed part, Redis commands per
 * call of each server (INFO commandstats over `--count` sequential v2 binary calls, background
 * work included).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as ort from 'onnxruntime-node';
import { startRedisServer } from '../queue/redis-server';
import { mlpModel } from '../models/generate';
import { seededRandom } from '../runtime/policies/random';
import { readModel, REAL_MODELS } from '../test/support/models';
import { commandCount, startFloor, type Floor } from './bullmq-floor';
import { grpcRow, hasGrpcio, hasWrk, leanClient, median, pct, startGrpcFloor, startHttpFloor, startServer, untilIdle, v2Binary, wrkRow, type BenchServer, type ExternalRow } from './support';

const args = parseArgs({
  options: {
    model: { type: 'string', default: 'ocr-cls' },
    n: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '5' },
    count: { type: 'string', default: '300' },
    today: { type: 'string' },
    'no-floor': { type: 'boolean', default: false },
    'no-external': { type: 'boolean', default: false },
    threads: { type: 'string', default: '1' },
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

/** One server's four protocols, over a lean keep-alive client (`leanClient`; gRPC's own). */
function protocolsOf(label: string, server: BenchServer, input: string, dims: number[], b: Bodies): { rows: Array<[string, () => Promise<unknown>]>; close(): void; binary: () => Promise<unknown> } {
  const proto = fileURLToPath(new URL('../functions/grpc/inference.proto', import.meta.url));
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, longs: String, defaults: true })) as any;
  const client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  // Not fetch: a lean client (as tritonclient's geventhttpclient is), so the client's own cost on
  // these shared cores does not stand in for the server's.
  const web = leanClient(server.url, { maxSockets: CONC, timeout: 3000 });
  const post = async (path: string, body: string | Buffer, headers: Record<string, string>): Promise<void> => {
    const r = await web.call('POST', path, body, headers);
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.body.toString().slice(0, 200)}`);
  };
  const { v1json, v2json, binary: v2, rawX } = b;
  const binary = () => post('/v2/models/bench/infer', v2.body, v2.headers);
  return {
    binary,
    rows: [
      [`${label} v1 JSON`, () => post('/functions/bench/invoke', v1json, { 'content-type': 'application/json' })],
      [`${label} v2 JSON`, () => post('/v2/models/bench/infer', v2json, { 'content-type': 'application/json' })],
      [`${label} v2 binary`, binary],
      [
        `${label} gRPC (raw)`,
        () =>
          new Promise<void>((resolve, reject) =>
            client.ModelInfer({ model_name: 'bench', inputs: [{ name: input, datatype: 'FP32', shape: dims }], raw_input_contents: [rawX] }, (e: Error | null) => (e ? reject(e) : resolve())),
          ),
      ],
    ],
    close() {
      web.close();
      client.close();
    },
  };
}

/** The request bodies of each protocol, the same for every client. */
type Bodies = ReturnType<typeof bodiesOf>;
function bodiesOf(input: string, dims: number[], x: Float32Array) {
  return {
    v1json: JSON.stringify({ inputs: { [input]: { type: 'float32', dims, data: Array.from(x) } } }),
    v2json: JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', data: Array.from(x) }] }),
    /** What tritonclient.http sends by default. */
    binary: v2Binary(input, dims, x),
    rawX: Buffer.from(x.buffer),
  };
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

async function main() {
  const pick = MODELS[args.model!];
  if (!pick) throw new Error(`--model takes ${Object.keys(MODELS).join(', ')}`);
  const { bytes, input, dims } = pick();
  const count = dims.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: count }, (_, i) => Math.sin(i) / 2);

  // Like with like: the raw session and brulee's (registered with ?threads=) run each operator on
  // the same number of threads, so "p50 - raw" is what brulee adds, not a session option.
  const threads = Number(args.threads);
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-'));
  const env = { WORKER_CONCURRENCY: String(Math.min(CONC, 64)) };
  const servers: Array<[string, BenchServer]> = [];
  const clients: Array<ReturnType<typeof protocolsOf>> = [];
  let floor: Floor | undefined;
  let httpFloor: Awaited<ReturnType<typeof startHttpFloor>> | undefined;
  let grpcFloor: Awaited<ReturnType<typeof startGrpcFloor>> | undefined;
  let floorRedis: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  try {
    if (args.today) servers.push(['today', await startServer(join(dir, 'today'), env, args.today)]);
    servers.push([args.today ? 'now' : 'brulee', await startServer(join(dir, 'now'), env)]);
    for (const [, server] of servers) {
      const put = await fetch(`${server.url}/functions/bench?threads=${threads}`, { method: 'PUT', body: bytes });
      if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
    }
    const protocols: Array<[string, () => Promise<unknown>]> = [['raw onnxruntime', () => session.run({ [input]: new ort.Tensor('float32', x, dims) })]];
    const b = bodiesOf(input, dims, x);
    const binHeaders = b.binary.headers;
    if (!args['no-floor']) {
      // As many bytes as brulee's v2 binary answer (its JSON header, then the outputs).
      const answer = await fetch(`${servers.at(-1)![1].url}/v2/models/bench/infer`, { method: 'POST', body: b.binary.body, headers: binHeaders });
      const answerBytes = (await answer.arrayBuffer()).byteLength;
      httpFloor = await startHttpFloor(answerBytes);
      grpcFloor = await startGrpcFloor(answerBytes - Number(answer.headers.get('inference-header-content-length')));
      const floorClient = protocolsOf('http floor', { url: httpFloor.url, redisUrl: '', grpcPort: 0, pid: 0, stop: async () => undefined }, input, dims, b);
      clients.push(floorClient);
      protocols.push(['http floor', floorClient.binary]);
      floorRedis = await startRedisServer({ dir: join(dir, 'floor'), persist: false });
      floor = await startFloor(floorRedis.url, session, () => ({ [input]: new ort.Tensor('float32', x, dims) }), CONC);
      protocols.push(['bullmq floor', floor.call]);
    }
    for (const [label, server] of servers) {
      const c = protocolsOf(label, server, input, dims, b);
      clients.push(c);
      protocols.push(...c.rows);
    }
    for (const [, f] of protocols) for (let i = 0; i < 20; i++) await f(); // warm: sessions, connections, JIT
    const loadBefore = loadavg();

    const lat = protocols.map(() => [] as number[]);
    // Each round in its own order (a seeded shuffle): the first call to a server after calls to
    // other processes is the slow one of a round (its process, its redis-server and their caches
    // woken again), and in a fixed order it was always v1 JSON's: 0.3-0.5 ms more p50 than v2 JSON
    // of the same server, and nothing between them when the rows took turns at coming first.
    const order = protocols.map((_, p) => p);
    const random = seededRandom(1);
    for (let i = 0; i < N; i++) {
      for (let j = order.length - 1; j > 0; j--) {
        const k = Math.floor(random() * (j + 1));
        [order[j], order[k]] = [order[k]!, order[j]!];
      }
      for (const p of order) {
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
    const loadAfter = loadavg();

    // The same rows again from clients in processes of their own, written in C (wrk; grpcio's
    // core), as the windows above: the node:http client's own cost (~0.5 ms a call here) is in
    // every row above, server and floor alike.
    const external: ExternalRow[] = [];
    if (!args['no-external'] && hasWrk() && hasGrpcio()) {
      const json = { 'Content-Type': 'application/json' };
      if (httpFloor) external.push(wrkRow(dir, 'http floor', `${httpFloor.url}/v2/models/bench/infer`, b.binary.body, binHeaders));
      if (grpcFloor) external.push(grpcRow(dir, 'grpc floor', grpcFloor.port, input, dims, x));
      for (const [label, server] of servers) {
        external.push(
          wrkRow(dir, `${label} v1 JSON`, `${server.url}/functions/bench/invoke`, Buffer.from(b.v1json), json),
          wrkRow(dir, `${label} v2 JSON`, `${server.url}/v2/models/bench/infer`, Buffer.from(b.v2json), json),
          wrkRow(dir, `${label} v2 binary`, `${server.url}/v2/models/bench/infer`, b.binary.body, binHeaders),
          grpcRow(dir, `${label} gRPC (raw)`, server.grpcPort, input, dims, x),
        );
      }
    } else if (!args['no-external']) console.log('(no external-client rows: wrk or /usr/bin/python3 with grpcio and grpc_tools missing)');
    const ext = external.map(() => ({ p50: [] as number[], p99: [] as number[], perS: [] as number[] }));
    // wrk leaves the calls it had in flight when its window ends, and the server still answers
    // them (64 JSON calls of PP-OCR cls are ~0.5 s of work): the next window waits until every
    // server is idle, so none starts with the last one's backlog.
    const settle = () => Promise.all(servers.map(([, s]) => untilIdle(s.pid)));
    for (let r = 0; r < ROUNDS; r++) {
      for (const [i, row] of external.entries()) {
        const one = row.window(1, SECONDS);
        ext[i]!.p50.push(one.p50);
        ext[i]!.p99.push(one.p99);
        ext[i]!.perS.push(row.window(CONC, SECONDS).perS);
        await settle();
      }
    }
    const loadAfterExternal = loadavg();
    // Redis commands per call, per server (its own redis-server), over sequential v2 binary calls.
    const cmds: string[] = [];
    const serverClients = clients.slice(-servers.length);
    for (let i = 0; i < servers.length; i++) {
      const [label, server] = servers[i]!;
      const before = await commandCount(server.redisUrl);
      for (let k = 0; k < Number(args.count); k++) await serverClients[i]!.binary();
      cmds.push(`${label}: ${((await commandCount(server.redisUrl) - before) / Number(args.count)).toFixed(1)}`);
    }
    if (floor && floorRedis) {
      const before = await commandCount(floorRedis.url);
      for (let k = 0; k < Number(args.count); k++) await floor.call();
      cmds.push(`bullmq floor: ${((await commandCount(floorRedis.url) - before) / Number(args.count)).toFixed(1)}`);
    }

    const base = median(lat[0]!);
    const baseT = calls[0]! / time[0]!;
    console.log(`\nmodel: ${args.model} (${bytes.byteLength} bytes), input ${input} float32 ${JSON.stringify(dims)} (${x.byteLength} bytes), ${threads} intra-op thread(s) raw and in brulee; node ${process.version}; load average ${loadBefore} before, ${loadAfter} after`);
    console.log(`${N} rounds of one sequential call per row; throughput: ${ROUNDS} rounds of ${SECONDS} s per row at ${CONC} concurrent\n`);
    const heading = () => console.log(`${'row'.padEnd(22)}${'p50 ms'.padStart(9)}${'p50 - raw'.padStart(11)}${'p99 ms'.padStart(9)}${'calls/s'.padStart(10)}${'vs raw'.padStart(8)}`);
    const row = (name: string, p50: number, p99: number, tput: number) =>
      console.log(`${name.padEnd(22)}${p50.toFixed(3).padStart(9)}${(p50 - base).toFixed(3).padStart(11)}${p99.toFixed(3).padStart(9)}${tput.toFixed(0).padStart(10)}${(tput / (baseT * 1000)).toFixed(3).padStart(8)}`);
    heading();
    protocols.forEach(([name], p) => row(name, median(lat[p]!), pct(lat[p]!, 99), (calls[p]! / time[p]!) * 1000));
    if (external.length > 0) {
      console.log(`\nThe same, from clients in processes of their own: wrk 1 thread (HTTP), grpcio (gRPC: its blocking stub at 1 caller, asyncio at more). ${ROUNDS} rounds of ${SECONDS} s per row at 1 caller (p50, p99: medians of the rounds') and at ${CONC} (calls/s: mean); raw as above; load average ${loadAfterExternal} after\n`);
      heading();
      external.forEach(({ name }, i) => row(name, median(ext[i]!.p50), median(ext[i]!.p99), ext[i]!.perS.reduce((a, v) => a + v, 0) / ext[i]!.perS.length));
    }
    console.log(`\nRedis commands per call (INFO commandstats over ${args.count} sequential calls): ${cmds.join(', ')}`);
  } finally {
    for (const c of clients) c.close();
    await floor?.stop();
    await httpFloor?.stop();
    await grpcFloor?.stop();
    await floorRedis?.stop();
    await session.release();
    for (const [, s] of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
