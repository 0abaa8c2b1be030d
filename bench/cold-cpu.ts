/**
 * A node's main-thread CPU per cold start and per warm call (never part of `npm test`): the servers
 * of several checkouts side by side (`label=DIR`, each as its own `npm start` runs it, with its
 * node arguments and GLIBC_TUNABLES: `npmStart`; each with a private redis-server), one model
 * registered on each, rounds interleaved across them: unload, 60 ms, a cold invoke, a warm one,
 * 60 ms, a warm invoke timed like the cold one. CPU is the server's main thread's time on a CPU
 * (/proc/PID/schedstat, ns), which a shared machine's load moves far less than wall time. Cold
 * wall time and the node's load ms are reported beside it.
 *
 *   npx tsx bench/cold-cpu.ts mlp 60 before=/tmp/cold-before now=$PWD
 *   npx tsx bench/cold-cpu.ts mlp-20MB 20 before=/tmp/cold-before now=$PWD
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisServer } from '../queue/redis-server';
import { mlpForBytes, mlpModel } from '../models/generate';
import { readModel, REAL_MODELS } from '../test/support/models';
import { npmStart, readyPort } from './support';
const which = process.argv[2] ?? 'mlp';
const N = Number(process.argv[3] ?? 60);
const cwds = process.argv.slice(4); // label=dir
const f32 = (dims: number[]) => ({ type: 'float32', dims, data: Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * 0.5) });
const M: Record<string, () => { bytes: Uint8Array; input: Record<string, unknown> }> = {
  mlp: () => ({ bytes: mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }), input: { x: f32([1, 64]) } }),
  'mlp-20MB': () => ({ bytes: mlpForBytes(20e6, 1), input: { x: f32([1, 64]) } }),
  'ocr-cls': () => ({ bytes: readModel(REAL_MODELS.ocrCls), input: { x: f32([1, 3, 48, 192]) } }),
};
const { bytes, input } = M[which]!();
// The main thread's time on a CPU, ns precision (/proc/PID/schedstat: the thread group leader only).
const cpuOf = (pid: number) => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
const servers: Array<{ label: string; url: string; proc: ChildProcess; stop: () => Promise<void> }> = [];
for (const lc of cwds) {
  const [label, cwd] = lc.split('=') as [string, string];
  const dir = mkdtempSync(join(tmpdir(), `cpu-cold-${label}-`));
  const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
  const start = npmStart(cwd);
  const proc = spawn(process.execPath, start.nodeArgs, { cwd, env: { ...start.env, PORT: '0', GRPC_PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'warn', NODE_ID: 'bench', MEMORY_BUDGET: '4GiB' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = `http://127.0.0.1:${await readyPort(proc, label)}`;
  const put = await fetch(`${url}/functions/m`, { method: 'PUT', body: bytes });
  if (put.status >= 300) throw new Error(await put.text());
  servers.push({ label, url, proc, stop: async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.once('exit', r)); await redis.stop(); } });
}
const body = JSON.stringify({ inputs: input });
const invoke = async (url: string) => { const r = await fetch(`${url}/functions/m/invoke`, { method: 'POST', body, headers: { 'content-type': 'application/json' } }); return (await r.json()) as { coldStart: boolean; timings: { loadMs: number } }; };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const acc: Record<string, { cold: number; unload: number; warm: number; coldWall: number[]; loadMs: number[] }> = {};
for (const s of servers) { await invoke(s.url); acc[s.label] = { cold: 0, unload: 0, warm: 0, coldWall: [], loadMs: [] }; }
const pid = (s: (typeof servers)[0]) => s.proc.pid!;
for (let i = 0; i < N; i++) for (const s of servers) {
  const a = acc[s.label]!;
  let c0 = cpuOf(pid(s));
  await fetch(`${s.url}/v2/repository/models/m/unload`, { method: 'POST' });
  await sleep(60);
  let c1 = cpuOf(pid(s)); a.unload += c1 - c0;
  const t = performance.now();
  const r = await invoke(s.url);
  a.coldWall.push(performance.now() - t); a.loadMs.push(r.timings.loadMs);
  if (!r.coldStart) throw new Error('not cold');
  await sleep(30);
  const c2 = cpuOf(pid(s)); a.cold += c2 - c1;
  // one warm call after the same kind of pause, as the cold one had
  await invoke(s.url); await sleep(60);
  c0 = cpuOf(pid(s));
  const w = await invoke(s.url);
  if (w.coldStart) throw new Error('not warm');
  await sleep(30);
  a.warm += cpuOf(pid(s)) - c0;
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`${which}, ${N} rounds; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const [k, a] of Object.entries(acc)) console.log(`${k.padEnd(8)} server CPU per cold call ${(a.cold / N).toFixed(2)} ms, per warm call ${(a.warm / N).toFixed(2)} ms, cold - warm ${((a.cold - a.warm) / N).toFixed(2)} ms; per unload ${(a.unload / N).toFixed(2)} ms | cold wall median ${med(a.coldWall).toFixed(2)} ms, load ${med(a.loadMs).toFixed(2)} ms`);
for (const s of servers) await s.stop();
