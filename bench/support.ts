/** What every benchmark needs: timing loops, percentiles, and a brulee server as its own process. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLOW_CONTROL_WINDOW } from '../functions/grpc/server';
import { startRedisServer } from '../queue/redis-server';
import { READY_LINE } from '../test/support/procs';

export const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
export const median = (xs: number[]) => pct(xs, 50);

/** Latency of `n` sequential calls, ms, after a short warm-up; less `untimedMs` of each call's result (a client's parse of its answer, say). */
export async function latencies<T>(n: number, f: () => Promise<T>, untimedMs: (r: T) => number = () => 0): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < Math.min(200, n / 10); i++) await f();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await f();
    out.push(performance.now() - t - untimedMs(r));
  }
  return out;
}

/**
 * `latencies` of several callers, taken in alternating blocks of `block` sequential calls each
 * (every other round in reverse order), so that a shared machine's load drifts over all of them
 * alike instead of over one caller's whole run after another's. One slow call a block (the first
 * after another process's calls) is 1 in `block`: the median does not see it.
 */
export async function interleavedLatencies<T>(n: number, fs: ReadonlyArray<() => Promise<T>>, untimedMs: (r: T) => number = () => 0, block = 10): Promise<number[][]> {
  const out = fs.map(() => [] as number[]);
  for (const f of fs) for (let i = 0; i < Math.min(200, n / 10); i++) await f();
  for (let round = 0; out[0]!.length < n; round++) {
    const order = fs.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) {
      for (let k = 0; k < block && out[i]!.length < n; k++) {
        const t = performance.now();
        const r = await fs[i]!();
        out[i]!.push(performance.now() - t - untimedMs(r));
      }
    }
  }
  return out;
}

/** Calls per second with `conc` callers for `seconds`. */
export async function throughput(conc: number, seconds: number, f: () => Promise<unknown>): Promise<number> {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (performance.now() < end) {
        await f();
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

export interface BenchServer {
  url: string;
  /** The server's Redis (for INFO commandstats). */
  redisUrl: string;
  grpcPort: number;
  /** The server's process id. */
  pid: number;
  stop(): Promise<void>;
}

/**
 * A lean HTTP client: node:http over kept-alive sockets, not fetch. fetch (undici) costs the
 * calling process ~0.5 ms more CPU a call on these cores (more on its first call after a pause):
 * that is the client's, not the server's, and raw onnxruntime pays none of it. A kept-alive socket
 * the server closed while idle resets: one retry (every call the benches make is idempotent).
 */
export function leanClient(base: string, agent: http.AgentOptions = {}) {
  const a = new http.Agent({ keepAlive: true, ...agent });
  const once = (method: string, path: string, body: string | Buffer, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const req = http.request(`${base}${path}`, { method, agent: a, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  const call = (method: string, path: string, body: string | Buffer = '', headers: Record<string, string> = {}) =>
    once(method, path, body, headers).catch((e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? once(method, path, body, headers) : Promise.reject(e)));
  return { call, close: () => a.destroy() };
}

/** CPU time a process has used so far, ms (user + system, from /proc; Linux only). */
export function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  // After "pid (comm) ": state is field 3, utime 14 and stime 15 (proc(5)); ticks of 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * Waits until process `pid` is idle: it used at most 10 ms of CPU over 200 ms (one clock tick more
 * than nothing), or `maxMs` passed (then it says so: the next window starts on a busy server).
 * For a load generator that leaves calls in flight when it stops.
 */
export async function untilIdle(pid: number, maxMs = 10_000): Promise<void> {
  const end = performance.now() + maxMs;
  let before = cpuMsOf(pid);
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    const now = cpuMsOf(pid);
    if (now - before <= 10) return;
    before = now;
  }
  console.warn(`(process ${pid} still busy after ${maxMs} ms: the next window starts beside its work)`);
}

/** This checkout's root. */
const HERE = fileURLToPath(new URL('..', import.meta.url));

/**
 * How a checkout's `npm start` runs its server (this checkout's by default): the node arguments
 * (`start.mjs`, or `--import tsx server.ts` in checkouts from before it) and the environment,
 * from this process's without its GLIBC_TUNABLES: the checkout's own start script, run by sh with
 * a `node` (and `tsx`) of ours first on PATH that reports the GLIBC_TUNABLES it was given, or none,
 * and its arguments. So each arm of a before/after runs as its own checkout's npm start runs it,
 * with its own tunables (another checkout, `--today`, may predate a change of either), and
 * tunables exported where the bench runs (a shell, a test process) reach neither; an arm's `env`
 * given to `startServer` still overrides them.
 */
export function npmStart(cwd: string = HERE): { env: NodeJS.ProcessEnv; nodeArgs: string[] } {
  const { GLIBC_TUNABLES: _, ...env } = process.env;
  const script = (JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8')) as { scripts?: { start?: string } }).scripts?.start;
  if (!script) throw new Error(`${cwd}/package.json has no start script`);
  const bin = mkdtempSync(join(tmpdir(), 'brulee-start-env-'));
  try {
    const fake = '#!/bin/sh\nif [ "${GLIBC_TUNABLES+set}" = set ]; then printf "set:%s" "$GLIBC_TUNABLES"; fi\nprintf "\\0%s" "${0##*/}" "$@"\nexit 0\n';
    for (const name of ['node', 'tsx']) writeFileSync(join(bin, name), fake, { mode: 0o755 });
    const [tunables = '', command, ...args] = execFileSync('sh', ['-c', script], { cwd, env: { ...env, PATH: `${bin}:${env.PATH ?? ''}` }, encoding: 'utf8' }).split('\0');
    return {
      env: tunables.startsWith('set:') ? { ...env, GLIBC_TUNABLES: tunables.slice(4) } : env,
      nodeArgs: command === 'tsx' ? ['--import', 'tsx', ...args] : args,
    };
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
}

/** The environment a checkout's `npm start` gives its server (`npmStart`). */
export const npmStartEnv = (cwd: string = HERE): NodeJS.ProcessEnv => npmStart(cwd).env;

/**
 * The HTTP port a brulee server (`server.ts`, started with PORT=0: it binds a free one) says it is
 * ready on, once it does. Its stdout is read to the end (a pipe nobody reads would fill and block it).
 */
export function readyPort(child: ChildProcess, name = 'server'): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    let port: number | undefined;
    child.stdout!.on('data', (d: Buffer) => {
      if (port !== undefined) return;
      const m = READY_LINE.exec((out += d.toString()));
      if (m) resolve((port = Number(m[1])));
      else out = out.slice(-4096);
    });
    child.once('exit', (c) => reject(new Error(`${name} exited ${c} before it was ready`)));
  });
}

/**
 * The TCP ports process `pid` listens on (Linux: its sockets' inodes in /proc/PID/fd, found among
 * the listening sockets of /proc/PID/net/tcp and tcp6). A server started with GRPC_PORT=0 says
 * only its HTTP port; this finds its gRPC one, in any checkout.
 */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed since the listing
    }
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    for (const row of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      // Columns: sl, local_address (hex address:port), rem_address, st (0A: LISTEN), ..., inode (the tenth).
      const c = row.trim().split(/\s+/);
      if (c[3] === '0A' && inodes.has(c[9] ?? '')) ports.add(parseInt(c[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports];
}

/**
 * `npm start`'s server as its own process (`node start.mjs`, or what the checkout's npm start
 * runs: `npmStart`), on ports it binds itself (PORT=0, GRPC_PORT=0: none picked here first that
 * another process could take before it binds), with a private redis-server unless REDIS_URL is
 * set, and with the glibc tunables of its checkout's `npm start`. `nodeArgs` go to node before the
 * script (`--cpu-prof`, say).
 */
export async function startServer(dir: string, env: Record<string, string> = {}, cwd?: string, nodeArgs: string[] = []): Promise<BenchServer> {
  const redis = process.env.REDIS_URL ? undefined : await startRedisServer({ dir: join(dir, 'redis'), persist: false });
  const start = npmStart(cwd);
  const server: ChildProcess = spawn(process.execPath, [...nodeArgs, ...start.nodeArgs], {
    env: { ...start.env, PORT: '0', GRPC_PORT: '0', HOST: '127.0.0.1', REDIS_URL: process.env.REDIS_URL ?? redis!.url, DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'warn', NODE_ID: 'bench', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: cwd ?? HERE,
  });
  let port: number;
  try {
    port = await readyPort(server);
  } catch (e) {
    // The server exited (or never said it was ready): its private Redis goes with it.
    server.kill('SIGKILL');
    await redis?.stop();
    throw e;
  }
  // The gRPC server is bound before the HTTP one says it is ready; a worker (ROLE=worker) has none.
  const others = listeningPorts(server.pid!).filter((p) => p !== port);
  if (others.length > 1) {
    server.kill('SIGKILL');
    await redis?.stop();
    throw new Error(`the server listens on ${others.join(', ')} besides HTTP ${port}: which is gRPC? (a node inspector? set GRPC_PORT)`);
  }
  const grpcPort = env.GRPC_PORT && env.GRPC_PORT !== '0' ? Number(env.GRPC_PORT) : (others[0] ?? 0);
  return {
    url: `http://127.0.0.1:${port}`,
    redisUrl: process.env.REDIS_URL ?? redis!.url,
    grpcPort,
    pid: server.pid!,
    async stop() {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
      await redis?.stop();
    },
  };
}

/**
 * A floor server: `code` run by node in a process of its own (cwd: the project), once it prints
 * 'ready PORT' (the port it bound: it listens on port 0, a free one, none picked here first).
 */
async function startFloorProcess(name: string, code: string): Promise<{ pid: number; port: number; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'], cwd: join(import.meta.dirname, '..') });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      const m = /ready (\d+)/.exec((out += d.toString()));
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (c) => reject(new Error(`${name} exited ${c}`)));
  });
  return {
    pid: child.pid!,
    port,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * The transport alone: a bare node:http server in a process of its own that reads each request's
 * body and answers 200 with `answerBytes` bytes (no routing, no parsing, no Redis, no model), to
 * show what any HTTP server costs on these cores next to brulee's rows.
 */
export async function startHttpFloor(answerBytes: number): Promise<{ url: string; stop(): Promise<void> }> {
  const floor = await startFloorProcess(
    'http floor',
    `const out = Buffer.alloc(${answerBytes}, 1);
const server = require('node:http').createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': out.length }); res.end(out); });
});
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));`,
  );
  return { url: `http://127.0.0.1:${floor.port}`, stop: () => floor.stop() };
}

/**
 * The same for gRPC: a bare @grpc/grpc-js server (brulee's proto, loader and server options, its
 * flow-control window: functions/grpc/server.ts FLOW_CONTROL_WINDOW) whose
 * ModelInfer decodes the request and answers one output of `outputBytes` raw bytes, nothing else.
 */
export async function startGrpcFloor(outputBytes: number): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const floor = await startFloorProcess(
    'grpc floor',
    `const grpc = require('@grpc/grpc-js');
const def = require('@grpc/proto-loader').loadSync('functions/grpc/inference.proto', { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const out = Buffer.alloc(${outputBytes}, 1);
const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20, 'grpc.enable_channelz': 0 });
server.addService(grpc.loadPackageDefinition(def).inference.GRPCInferenceService.service, {
  ModelInfer: (call, cb) => cb(null, { model_name: call.request.model_name, model_version: '1', outputs: [{ name: 'y', datatype: 'UINT8', shape: ['${outputBytes}'] }], raw_output_contents: [out] }),
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  for (const s of server.http2Servers.keys()) s.on('session', (session) => { session.settings({ initialWindowSize: ${FLOW_CONTROL_WINDOW} }); session.setLocalWindowSize(${FLOW_CONTROL_WINDOW}); });
  console.log('ready ' + port);
});`,
  );
  return { port: floor.port, pid: floor.pid, stop: () => floor.stop() };
}

/**
 * The grpc floor's ModelInfer without @grpc/grpc-js: a bare node:http2 server (the same window)
 * answering with gRPC's framing by hand, for bench/grpc-floors.ts. Node's public API sends the
 * trailers (grpc-status) in a second socket write one event-loop turn after the message
 * (`respond({ waitForTrailers })`, `end(message)`, `sendTrailers` on 'wantTrailers', which Node
 * defers to a setImmediate). `oneWrite` sends headers, message and trailers in one write by
 * reaching into Node's internals (Node 20: the stream's `Symbol(state)` flags, so that `end`
 * shuts the stream at once, and its native handle's `trailers`, called inside nghttp2's read
 * callback): a measurement, not something to serve with.
 */
export async function startH2GrpcFloor(outputBytes: number, oneWrite: boolean): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const floor = await startFloorProcess(
    oneWrite ? 'node:http2 grpc floor, one write' : 'node:http2 grpc floor',
    `const def = require('@grpc/proto-loader').loadSync('functions/grpc/inference.proto', { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const m = def['inference.GRPCInferenceService'].ModelInfer;
const out = Buffer.alloc(${outputBytes}, 1);
const server = require('node:http2').createServer({ settings: { initialWindowSize: ${FLOW_CONTROL_WINDOW} } });
server.on('session', (session) => session.setLocalWindowSize(${FLOW_CONTROL_WINDOW}));
server.on('stream', (stream) => {
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const buf = Buffer.concat(chunks);
    const req = m.requestDeserialize(buf.subarray(5, 5 + buf.readUInt32BE(1)));
    const res = m.responseSerialize({ model_name: req.model_name, model_version: '1', outputs: [{ name: 'y', datatype: 'UINT8', shape: ['${outputBytes}'] }], raw_output_contents: [out] });
    const msg = Buffer.allocUnsafe(5 + res.length);
    msg[0] = 0;
    msg.writeUInt32BE(res.length, 1);
    res.copy(msg, 5);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    if (${oneWrite}) {
      const sym = (d) => Object.getOwnPropertySymbols(stream).find((s) => s.description === d);
      stream[sym('state')].flags &= ~0x20; // STREAM_FLAGS_HAS_TRAILERS: end() then shuts the stream before the first send
      stream.once('wantTrailers', () => stream[sym('kHandle')].trailers(['grpc-status\\x000\\x000', 1]));
    } else stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(msg);
  });
});
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));`,
  );
  return { port: floor.port, pid: floor.pid, stop: () => floor.stop() };
}

/** A row measured by a client in a process of its own: wrk for HTTP, grpcio for gRPC. */
export interface ExternalRow {
  name: string;
  /** One window at `conc` concurrent callers for `seconds`; `calls`: every call the server answered in it (warm-ups too). */
  window(conc: number, seconds: number): { p50: number; p99: number; perS: number; calls: number };
}

/**
 * wrk (a C load generator, one thread) posting `body` to `url` for one window: any answer of 400
 * or above (wrk's `errors.status`) or any socket error fails the bench, so a fast error never
 * passes for a fast answer.
 */
export function wrkRow(dir: string, name: string, url: string, body: Buffer, headers: Record<string, string>): ExternalRow {
  const bodyFile = join(dir, `${name.replace(/\W+/g, '-')}.body`);
  const script = join(dir, `${name.replace(/\W+/g, '-')}.lua`);
  writeFileSync(bodyFile, body);
  writeFileSync(
    script,
    `local f = io.open(${JSON.stringify(bodyFile)}, "rb"); wrk.method = "POST"; wrk.body = f:read("*all"); f:close()
${Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join('\n')}
done = function(s, latency)
  io.write(string.format("RESULT %d %d %d %d %d\\n", latency:percentile(50), latency:percentile(99), s.requests, s.duration,
    s.errors.status + s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end`,
  );
  return {
    name,
    window(conc, seconds) {
      const out = execFileSync('wrk', ['-t1', `-c${conc}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, url], { encoding: 'utf8' });
      const [p50, p99, n, us, errors] = out.split('\n').find((l) => l.startsWith('RESULT'))!.split(' ').slice(1).map(Number) as [number, number, number, number, number];
      if (errors > 0) throw new Error(`${name}: ${errors} socket errors or answers of 400 or above under wrk:\n${out}`);
      return { p50: p50 / 1000, p99: p99 / 1000, perS: n / (us / 1e6), calls: n };
    },
  };
}

/** grpcio (bench/grpc-load.py: blocking stub at 1 caller, asyncio at more) calling ModelInfer with raw_input_contents for one window. */
export function grpcRow(dir: string, name: string, port: number, input: string, dims: number[], x: Float32Array): ExternalRow {
  const inputFile = join(dir, `${name.replace(/\W+/g, '-')}.raw`);
  writeFileSync(inputFile, Buffer.from(x.buffer, x.byteOffset, x.byteLength));
  const protoDir = fileURLToPath(new URL('../functions/grpc/', import.meta.url));
  const script = fileURLToPath(new URL('./grpc-load.py', import.meta.url));
  return {
    name,
    window(conc, seconds) {
      const r = spawnSync('/usr/bin/python3', [script, protoDir, `127.0.0.1:${port}`, 'bench', input, dims.join(','), inputFile, String(conc), String(seconds)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${name}: grpc-load.py exited ${r.status}: ${r.stderr}`);
      const o = JSON.parse(r.stdout) as { calls: number; seconds: number; p50_ms: number; p99_ms: number; errors: number };
      if (o.errors > 0) throw new Error(`${name}: ${o.errors} failed calls under grpcio`);
      // grpc-load.py makes 20 warm-up calls before its timed ones.
      return { p50: o.p50_ms, p99: o.p99_ms, perS: o.calls / o.seconds, calls: o.calls + 20 };
    },
  };
}

/**
 * What tritonclient.http sends by default for one FP32 input: binary input, every output binary.
 * `header` is the JSON part, `body` that and the input's bytes after it, `headers` what says where
 * the JSON ends (no Content-Type, as the client sends none).
 */
export function v2Binary(input: string, dims: number[], x: Float32Array): { header: string; body: Buffer; headers: Record<string, string> } {
  const header = JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], parameters: { binary_data_output: true } });
  return { header, body: Buffer.concat([Buffer.from(header), Buffer.from(x.buffer, x.byteOffset, x.byteLength)]), headers: { 'Inference-Header-Content-Length': String(Buffer.byteLength(header)) } };
}

export const hasWrk = () => spawnSync('wrk', ['--version']).error === undefined;
export const hasGrpcio = () => spawnSync('/usr/bin/python3', ['-c', 'import grpc, grpc_tools']).status === 0;
