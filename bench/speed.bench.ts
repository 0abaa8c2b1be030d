/**
 * Issue 10's numbers, today against now, beside raw onnxruntime, in one run (never part of
 * `npm test`). "today" is any other checkout of brulee (`--today DIR`, e.g. a worktree of the commit
 * before the speed work); "now" is this one. Each runs as `npm start` does, one at a time, with its
 * own private redis-server; the machine is the same, so compare ratios within one run.
 *
 *   git worktree add --detach /tmp/brulee-today e609777 && ln -s $PWD/node_modules /tmp/brulee-today/
 *   npm run bench:speed -- --today /tmp/brulee-today                          # all models
 *   npm run bench:speed -- --today /tmp/brulee-today --models mlp,ocr-cls --cold 9
 *
 * Per model: cold (unload, a 150 ms pause, then one invoke; median) against raw onnxruntime's default
 * `InferenceSession.create(path)` + first run after the same pause, taking turns (raw, http floor,
 * today, now, raw, ...) so that a shared machine's load drifts over all of them alike; "load ms" is
 * the session create alone (raw) or the node's own load time (fetch + create). Every call goes
 * through one lean client (node:http, kept-alive sockets; the unload warms the socket the cold call
 * then uses), and the "http floor" row is that client and a bare node:http server answering as
 * many bytes, after the same pause: the transport's own cold call, which raw (in this process)
 * does not pay ("raw, no pause": raw right after its previous step, as this bench measured it
 * before); "raw, fresh proc" is raw's create + first run in a process of its own, with glibc's
 * defaults (a user's script run by hand). "paused" is a brulee warm call after the same pause, so
 * cold - paused is what a load adds. With `--binary`, each v2 binary cold call is checked to be one
 * by the server's count of cold starts (`/stats`), since its answer does not say. The unload parks a
 * mapped model's session (runtime/parked.ts), so now's cold call of such a model reuses it;
 * `--unparked-arm` adds "now unparked", the same code with `PARK_BUDGET=0`, whose every cold start
 * creates the session. `--first-arms` adds "now first" (`PREPARK=off`) and "now pre-parked"
 * (`PREPARK=on`), where every cold call is the model's first on the node: the function is deleted
 * and registered again before it, and with pre-parking the call waits until /stats shows the
 * node's pre-park, and must take it (runtime/prepark.ts). Then warm p50/p99 of sequential calls (v1 JSON; the floor's and each
 * server's in alternating blocks of 10 calls, `interleavedLatencies`); for the
 * small MLP also throughput at `--concurrency` and Redis commands per warm invocation (INFO
 * commandstats over `--count` calls, heartbeats and all), and a second baseline, "bullmq": BullMQ
 * alone (add -> worker -> reply stream, the same model on a raw session, no HTTP and no brulee
 * code; `bench/bullmq-floor.ts`), on a private redis-server of its own.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { createRedis } from '../queue/connection';
import { startRedisServer } from '../queue/redis-server';
import { mlpForBytes, mlpModel } from '../models/generate';
import { WARMUP_MODEL_B64 } from '../runtime/warmup-model';
import { readModel, REAL_MODELS } from '../test/support/models';
import { bullmqFloor } from './bullmq-floor';
import { interleavedLatencies, latencies, leanClient, median, pct, startHttpFloor, startServer, throughput, type BenchServer } from './support';

const JSON_TYPE = { 'content-type': 'application/json' };

const args = parseArgs({
  options: {
    today: { type: 'string' },
    models: { type: 'string', default: 'mlp,ocr-cls,vad,ocr-det,ocr-rec,mlp-1MB,mlp-20MB,mlp-100MB' },
    n: { type: 'string', default: '500' },
    cold: { type: 'string', default: '7' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    count: { type: 'string', default: '500' },
    binary: { type: 'boolean', default: false },
    'unparked-arm': { type: 'boolean', default: false },
    'first-arms': { type: 'boolean', default: false },
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

interface Row { coldMs: number; loadMs: number; parseMs?: number; pausedMs?: number; warmP50: number; warmP99: number; tput?: number; cmds?: Record<string, number>; cmdTotal?: number }

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

/** What one timed call says: whether it was cold and the node's load ms (v1 answers say; v2 ones do not), and the client's parse of it. */
interface CallResult { coldStart?: boolean; loadMs?: number; parseMs: number }

/**
 * A function registered on a server, and its invoke over a lean client: v1 JSON, or with `binary`
 * the Open Inference Protocol's binary form both ways (inputs and outputs as raw bytes beside a
 * JSON header), what a caller who wants a fast cold start of a model with large outputs sends.
 * A call's time ends at the answer's last byte; the client's JSON.parse of a v1 answer is timed
 * apart (`parseMs`: for PP-OCR rec's 1.78 MB answer, more than the server's encoding of it).
 */
function client(s: BenchServer, name: string, input: JsonInput, binary = false) {
  const c = leanClient(s.url, { maxSockets: Number(args.concurrency) });
  let call: () => Promise<{ status: number; body: Buffer }>;
  if (binary) {
    const raws = Object.values(input).map((t) => (t.type === 'int64' ? Buffer.from(BigInt64Array.from(t.data.map(BigInt)).buffer) : Buffer.from(Float32Array.from(t.data).buffer)));
    const header = Buffer.from(JSON.stringify({
      inputs: Object.entries(input).map(([n, t], i) => ({ name: n, datatype: t.type === 'int64' ? 'INT64' : 'FP32', shape: t.dims, parameters: { binary_data_size: raws[i]!.byteLength } })),
      parameters: { binary_data_output: true },
    }));
    const body = Buffer.concat([header, ...raws]);
    const headers = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) };
    call = () => c.call('POST', `/v2/models/${name}/infer`, body, headers);
  } else {
    const body = JSON.stringify({ inputs: input });
    call = () => c.call('POST', `/functions/${name}/invoke`, body, JSON_TYPE);
  }
  let last: Buffer = Buffer.alloc(0);
  const invoke = async (): Promise<CallResult> => {
    const r = await call();
    if (r.status !== 200) throw new Error(`invoke failed: ${r.status} ${r.body.toString()}`);
    last = r.body;
    if (binary) return { parseMs: 0 };
    const t = performance.now();
    const a = JSON.parse(r.body.toString()) as { coldStart: boolean; timings: Record<string, number> };
    return { coldStart: a.coldStart, loadMs: a.timings.loadMs, parseMs: performance.now() - t };
  };
  /** The function's cold starts so far, as the server counts them (`/stats`): a v2 answer does not say whether it was one. */
  const coldStarts = async () => {
    const r = await c.call('GET', '/stats');
    return (JSON.parse(r.body.toString()) as { functions: Record<string, { coldStarts: number }> }).functions[name]?.coldStarts ?? 0;
  };
  /** This node's parked sessions (`/stats` nodes[].parked; runtime/parked.ts, runtime/prepark.ts). */
  const parked = async () => {
    const r = await c.call('GET', '/stats');
    return (JSON.parse(r.body.toString()) as { nodes: Array<{ parked?: { pre: { held: number; taken: number } } }> }).nodes[0]?.parked;
  };
  /** Deletes the function and registers `bytes` again under its name: the node holds nothing of it, as before its first call. */
  const reregister = async (bytes: Uint8Array) => {
    const d = await c.call('DELETE', `/functions/${name}`);
    if (d.status !== 200) throw new Error(`delete failed: ${d.status} ${d.body.toString()}`);
    const p = await c.call('PUT', `/functions/${name}`, Buffer.from(bytes), { 'content-type': 'application/octet-stream' });
    if (p.status !== 201) throw new Error(`register failed: ${p.status} ${p.body.toString()}`);
  };
  return Object.assign(invoke, { binary, coldStarts, parked, reregister, unload: () => c.call('POST', `/v2/repository/models/${name}/unload`, '', JSON_TYPE), close: c.close, answerBytes: async () => {
    await invoke();
    return last.byteLength;
  } });
}

/** The pause before each timed cold call (after the unload; for raw and the floor, after their previous step). */
const PAUSE_MS = 150;
const pause = () => new Promise((r) => setTimeout(r, PAUSE_MS));

/** One cold invoke: unload, let the node settle, invoke (the unload warmed the client's socket); its time and the node's own load ms (session create + fetch). */
async function coldOnce(invoke: ReturnType<typeof client>): Promise<{ coldMs: number; loadMs: number; parseMs: number }> {
  await invoke.unload();
  return timedCold(invoke, 'after unload');
}

/**
 * The pause, then one timed invoke that must be a cold start: a v2 answer does not say it was one,
 * so the server's count must rise by one (asked before the pause, and after the call).
 */
async function timedCold(invoke: ReturnType<typeof client>, when: string): Promise<{ coldMs: number; loadMs: number; parseMs: number }> {
  const before = invoke.binary ? await invoke.coldStarts() : 0;
  await pause();
  const t = performance.now();
  const r = await invoke();
  const coldMs = performance.now() - t - r.parseMs;
  if (r.coldStart === false) throw new Error(`expected a cold start ${when}`);
  if (invoke.binary && (await invoke.coldStarts()) !== before + 1) throw new Error(`expected a cold start ${when} (v2 binary: /stats counted none)`);
  return { coldMs, loadMs: r.loadMs ?? NaN, parseMs: r.parseMs };
}

/**
 * A model's first call on the node: the function deleted and registered again (nothing of it held
 * on the node), then with `prePark` (PREPARK=on) a wait until the node has pre-parked it (/stats,
 * bounded), then the same pause as a cold call's and one timed invoke, which must be a cold start
 * (and with `prePark`, must take the pre-parked session).
 */
async function firstOnce(invoke: ReturnType<typeof client>, bytes: Uint8Array, prePark: boolean): Promise<{ coldMs: number; loadMs: number; parseMs: number }> {
  await invoke.reregister(bytes);
  if (prePark) {
    const end = Date.now() + 60_000;
    while (((await invoke.parked())?.pre.held ?? 0) < 1) {
      if (Date.now() > end) throw new Error('the node did not pre-park the model within 60 s');
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const taken = (await invoke.parked())?.pre.taken ?? 0;
  const r = await timedCold(invoke, 'at a first call');
  if (prePark) {
    const after = await invoke.parked();
    if ((after?.pre.taken ?? 0) !== taken + 1) throw new Error(`the first call did not take the pre-parked session (pre-parked sessions taken: ${taken} before it, after it ${JSON.stringify(after)})`);
  }
  return r;
}

/** A warm invoke after the same pause as a cold one (the call before it warmed the socket and loaded the model): what the pause costs brulee without a load. */
async function pausedWarmOnce(invoke: ReturnType<typeof client>): Promise<number> {
  await invoke();
  await pause();
  const t = performance.now();
  const r = await invoke();
  const ms = performance.now() - t - r.parseMs;
  if (r.coldStart === true) throw new Error('expected a warm call');
  return ms;
}

/**
 * The transport alone after the same pause: a bare node:http server in its own process answering
 * as many bytes as brulee's answer (`startHttpFloor`), called by the same lean client, its socket
 * warmed by a call just before the pause as the unload warms brulee's. What any HTTP server and
 * this client cost on these cores for one call after a pause, woken processes and all.
 */
async function floorOnce(call: () => Promise<unknown>): Promise<{ coldMs: number; loadMs: number }> {
  await call();
  await pause();
  const t = performance.now();
  await call();
  return { coldMs: performance.now() - t, loadMs: NaN };
}

/** One raw cold start: onnxruntime's defaults, as a user would write it; create and first run apart. */
async function rawColdOnce(path: string, input: JsonInput, paused = true): Promise<{ coldMs: number; loadMs: number }> {
  if (paused) await pause();
  const t = performance.now();
  const s = await ort.InferenceSession.create(path);
  const loadMs = performance.now() - t;
  await s.run(feeds(input));
  const coldMs = performance.now() - t;
  await s.release();
  return { coldMs, loadMs };
}

/**
 * The same raw cold start in a fresh process (a user's script run by hand): create + first run,
 * after a warm-up session of a one-node model (onnxruntime's own start, which a node pays once at
 * its start), with glibc's defaults. The in-process raw row runs in this bench's process, whose
 * heap holds the memory its previous creates freed, so its creates fault in few fresh pages.
 *
 * The fresh processes are spawned by a small process of their own, started before any timing: a
 * spawn forks the spawning process, which write-protects all its pages, and the bench's next raw
 * create then takes a fault on every heap page it reuses (the 20 MB MLP's create went from 14 to
 * 265 ms when this bench spawned them itself).
 */
function freshSpawner() {
  const child = `
    const ort = require('onnxruntime-node');
    const input = JSON.parse(require('node:fs').readFileSync(process.argv[2], 'utf8'));
    const feeds = Object.fromEntries(Object.entries(input).map(([k, t]) => [k, t.type === 'int64' ? new ort.Tensor('int64', BigInt64Array.from(t.data.map(BigInt)), t.dims) : new ort.Tensor('float32', Float32Array.from(t.data), t.dims)]));
    (async () => {
      await (await ort.InferenceSession.create(Buffer.from(${JSON.stringify(WARMUP_MODEL_B64)}, 'base64'))).release();
      const t = performance.now();
      const s = await ort.InferenceSession.create(process.argv[1]);
      const loadMs = performance.now() - t;
      await s.run(feeds);
      process.stdout.write(JSON.stringify({ coldMs: performance.now() - t, loadMs }));
    })();`;
  const spawner = `
    const { execFile } = require('node:child_process');
    require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
      const [path, inputPath] = JSON.parse(line);
      execFile(process.execPath, ['-e', ${JSON.stringify(child)}, path, inputPath], (e, out) => process.stdout.write((e ? JSON.stringify({ error: String(e) }) : out) + '\\n'));
    });`;
  const { GLIBC_TUNABLES: _, ...env } = process.env;
  const p = spawn(process.execPath, ['-e', spawner], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: Array<(line: string) => void> = [];
  createInterface({ input: p.stdout }).on('line', (line) => waiting.shift()?.(line));
  return {
    once: (path: string, inputPath: string) =>
      new Promise<{ coldMs: number; loadMs: number }>((resolve, reject) => {
        waiting.push((line) => {
          const r = JSON.parse(line) as { coldMs: number; loadMs: number; error?: string };
          if (r.error) reject(new Error(r.error));
          else resolve(r);
        });
        p.stdin.write(`${JSON.stringify([path, inputPath])}\n`);
      }),
    close: () => p.kill(),
  };
}

/** A server's warm row: `w`, its sequential latencies (to the answer's last byte: the client's parse left out), then commands per call and throughput. */
async function warm(s: BenchServer, invoke: ReturnType<typeof client>, small: boolean, w: number[]): Promise<Omit<Row, 'coldMs' | 'loadMs'>> {
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
  const fresh = freshSpawner();
  const names = args.models.split(',');
  const env = { WORKER_CONCURRENCY: String(Math.min(Number(args.concurrency), 64)), MEMORY_BUDGET: '4GiB' };
  // --unparked-arm: now's code again with parking off (PARK_BUDGET=0): every cold start a session create, as before parking.
  // --first-arms: each cold call is the model's first on the node (deleted and registered again
  // before it), with pre-parking off ("now first") and on ("now pre-parked": after the node pre-parked it).
  const labels: Array<readonly [string, string | undefined, Record<string, string>?, ('first' | 'pre-parked')?]> = [
    ...(args.today ? [['today', args.today] as const] : []),
    ['now', undefined] as const,
    ...(args['unparked-arm'] ? [['now unparked', undefined, { PARK_BUDGET: '0' }] as const] : []),
    ...(args['first-arms'] ? [['now first', undefined, { PREPARK: 'off' }, 'first'] as const, ['now pre-parked', undefined, { PREPARK: 'on' }, 'pre-parked'] as const] : []),
  ];
  try {
    for (const name of names) {
      const m = MODELS[name];
      if (!m) throw new Error(`unknown model ${name}; known: ${Object.keys(MODELS).join(', ')}`);
      const { bytes, input } = m();
      const path = join(dir, `${name}.onnx`);
      writeFileSync(path, bytes);
      const inputPath = join(dir, `${name}.input.json`);
      writeFileSync(inputPath, JSON.stringify(input));
      const small = name === 'mlp';
      // Every server is up and registered first; then the cold starts of raw, today and now take
      // turns, one of each per round, so the load of a shared machine drifts over all of them alike.
      const servers: Array<{ label: string; s: BenchServer; invoke: ReturnType<typeof client>; binary?: boolean; first?: 'first' | 'pre-parked' }> = [];
      let httpFloor: Awaited<ReturnType<typeof startHttpFloor>> | undefined;
      let floorClient: ReturnType<typeof leanClient> | undefined;
      try {
        for (const [label, cwd, own, first] of labels) {
          const s = await startServer(join(dir, `${label}-${name}`.replace(/ /g, '-')), { ...env, ...own }, cwd);
          servers.push({ label, s, invoke: client(s, name, input), ...(first ? { first } : {}) });
          const put = await fetch(`${s.url}/functions/${name}`, { method: 'PUT', body: bytes });
          if (put.status >= 300) throw new Error(`register failed: ${put.status} ${await put.text()}`);
        }
        // --binary: each server's cold and warm calls again over v2 binary (the same server and model).
        if (args.binary) for (const { label, s, first } of [...servers]) servers.push({ label: `${label} v2 bin`, s, invoke: client(s, name, input, true), binary: true, ...(first ? { first } : {}) });
        httpFloor = await startHttpFloor(await servers[0]!.invoke.answerBytes());
        const fc = (floorClient = leanClient(httpFloor.url, { maxSockets: Number(args.concurrency) }));
        const floorBody = JSON.stringify({ inputs: input });
        const floorCall = () => fc.call('POST', '/invoke', floorBody, JSON_TYPE);
        // Not counted: this process's first session pays onnxruntime's own start (a node paid it at its start).
        await rawColdOnce(path, input);
        const cold: Record<string, Array<{ coldMs: number; loadMs: number; parseMs?: number }>> = { raw: [], 'raw, no pause': [], 'raw, fresh proc': [], 'http floor': [] };
        const paused: Record<string, number[]> = {};
        for (let i = 0; i < COLD; i++) {
          cold.raw!.push(await rawColdOnce(path, input));
          cold['raw, no pause']!.push(await rawColdOnce(path, input, false));
          cold['raw, fresh proc']!.push(await fresh.once(path, inputPath));
          cold['http floor']!.push(await floorOnce(floorCall));
          for (const { label, invoke, first } of servers) {
            (cold[label] ??= []).push(first ? await firstOnce(invoke, bytes, first === 'pre-parked') : await coldOnce(invoke));
            (paused[label] ??= []).push(await pausedWarmOnce(invoke));
          }
        }
        const pick = (label: string) => ({ coldMs: median(cold[label]!.map((c) => c.coldMs)), loadMs: median(cold[label]!.map((c) => c.loadMs)), parseMs: median(cold[label]!.map((c) => c.parseMs ?? NaN)) });
        const results: Record<string, Row> = { raw: { ...pick('raw'), ...(await rawWarm(path, input, small)) } };
        results['raw, no pause'] = { ...pick('raw, no pause'), warmP50: NaN, warmP99: NaN };
        results['raw, fresh proc'] = { ...pick('raw, fresh proc'), warmP50: NaN, warmP99: NaN };
        // The floor's and every server's sequential warm calls in alternating blocks: today and now
        // (and the floor) see the same drift of a shared machine's load.
        const [fw, ...ws] = await interleavedLatencies<object>(N, [floorCall, ...servers.map((x) => x.invoke)], (r) => ('parseMs' in r ? (r as CallResult).parseMs : 0));
        results['http floor'] = { ...pick('http floor'), warmP50: median(fw!), warmP99: pct(fw!, 99) };
        if (small) results.bullmq = await floor(path, input);
        for (const [i, { label, s, invoke, binary }] of servers.entries()) results[label] = { ...pick(label), pausedMs: median(paused[label]!), ...(await warm(s, invoke, small && !binary, ws[i]!)) };
        print(name, bytes.byteLength, results);
      } finally {
        floorClient?.close();
        await httpFloor?.stop();
        for (const { s, invoke, binary } of servers) {
          invoke.close();
          if (!binary) await s.stop();
        }
      }
    }
  } finally {
    fresh.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function print(name: string, size: number, r: Record<string, Row>) {
  const f = (x: number | undefined, d = 2) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(d));
  console.log(`\n${name} (${size} bytes); load average ${(await0())}; cold calls after a ${PAUSE_MS} ms pause, node:http kept-alive client`);
  console.log(`  ${''.padEnd(22)}${'cold ms'.padStart(10)}${'x raw'.padStart(8)}${'- raw'.padStart(8)}${'- raw np'.padStart(9)}${'- floor'.padStart(9)}${'load ms'.padStart(10)}${'parse'.padStart(7)}${'paused'.padStart(8)}${'cold-paused'.padStart(12)}${'warm p50'.padStart(10)}${'- raw'.padStart(8)}${'warm p99'.padStart(10)}${'tput /s'.padStart(10)}${'redis cmds/call'.padStart(17)}`);
  const rawRow = r.raw!;
  const floorRow = r['http floor'];
  const rawNp = r['raw, no pause'];
  const brulee = (label: string) => !label.startsWith('raw') && label !== 'http floor' && label !== 'bullmq';
  for (const [label, row] of Object.entries(r)) {
    console.log(
      `  ${label.padEnd(22)}${f(row.coldMs).padStart(10)}${(label === 'raw' ? '' : f(row.coldMs / rawRow.coldMs)).padStart(8)}${(label === 'raw' ? '' : f(row.coldMs - rawRow.coldMs)).padStart(8)}${(brulee(label) && rawNp ? f(row.coldMs - rawNp.coldMs) : '').padStart(9)}${(brulee(label) && floorRow ? f(row.coldMs - rawRow.coldMs - floorRow.coldMs) : '').padStart(9)}${f(row.loadMs).padStart(10)}${f(row.parseMs).padStart(7)}${f(row.pausedMs).padStart(8)}${(row.pausedMs === undefined ? '' : f(row.coldMs - row.pausedMs)).padStart(12)}${f(row.warmP50, 3).padStart(10)}${(label === 'raw' ? '' : f(row.warmP50 - rawRow.warmP50, 3)).padStart(8)}${f(row.warmP99, 3).padStart(10)}${f(row.tput, 0).padStart(10)}${f(row.cmdTotal, 1).padStart(17)}`,
    );
    if (row.cmds) console.log(`              ${Object.entries(row.cmds).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  }
  console.log(`  (- raw: cold ms over raw create + first run after the pause; - raw np: over raw with no pause; - floor: that, less the http floor's cold call: what the server adds beyond an HTTP round trip after the same pause;`);
  console.log(`   paused: a warm call after the same ${PAUSE_MS} ms pause (median); cold-paused: what a cold start adds to it;`);
  console.log(`   brulee's calls are timed to the answer's last byte; parse: the client's JSON.parse of a cold v1 answer after that, not in cold ms; v2 bin: the same server over v2 binary both ways, load ms not in its answer; the http floor answers the v1 answer's bytes)`);
}
function await0(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') + ' (a shared machine)';
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
