/**
 * What one large answer costs the gateway (issue 12 §1): a gateway and a worker (`server.ts` as
 * `npm start` runs them, each its own process); an 81-byte ConstantOfShape model returns
 * `--values` float32 zeros (10 000 000: 40 MB). For each form of answer (v1 JSON, v2 JSON, v2
 * binary) a fresh gateway is started, its RSS let settle, then `--calls` calls are made one after
 * another, each body read to its end and dropped; it reports the gateway's RSS above its idle RSS
 * at its peak (the kernel's VmHWM, reset once idle) and once settled after the calls.
 *
 *   npx tsx bench/large-answer.bench.ts [--values 10000000] [--calls 3] [--root DIR]
 *
 * `--root` runs another checkout's server.ts (with its own node_modules), for a before/after; the
 * processes get the GLIBC_TUNABLES that checkout's `npm start` sets, not the shell's.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { encodeModel } from '../models/onnx-builder';
import { startRedisServer } from '../queue/redis-server';
import { startProc, stopAll, type Proc } from '../test/support/procs';
import { npmStartEnv } from './support';

const MiB = 1024 ** 2;
const { values: args } = parseArgs({ options: { values: { type: 'string', default: '10000000' }, calls: { type: 'string', default: '3' }, root: { type: 'string' } } });
const n = Number(args.values);

const cosbomb = encodeModel({
  inputs: [{ name: 'shape', type: 'int64', shape: [1] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['n'] }],
  nodes: [{ op: 'ConstantOfShape', inputs: ['shape'], outputs: ['y'] }],
  graphName: 'cosbomb',
});

const status = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function settled(pid: number): Promise<number> {
  await sleep(1500);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    xs.push(status(pid, 'VmRSS'));
    await sleep(300);
  }
  return xs.sort((a, b) => a - b)[2]!;
}

const FORMS = {
  'v1 JSON': { path: '/functions/cosbomb/invoke', body: { inputs: { shape: { type: 'int64', dims: [1], data: [n] } } } },
  'v2 JSON': { path: '/v2/models/cosbomb/infer', body: { inputs: [{ name: 'shape', shape: [1], datatype: 'INT64', data: [n] }] } },
  'v2 binary': { path: '/v2/models/cosbomb/infer', body: { inputs: [{ name: 'shape', shape: [1], datatype: 'INT64', data: [n] }], parameters: { binary_data_output: true } } },
} as const;

const dir = mkdtempSync(join(tmpdir(), 'brulee-answerbench-'));
const redis = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
const procs: Proc[] = [];
const opts = args.root ? { cwd: args.root } : {};
const shared = { REDIS_URL: redis.url, KEY_PREFIX: 'ab', MODEL_STORE: pathToFileURL(join(dir, 'store')).href, LOG_LEVEL: 'warn', GLIBC_TUNABLES: npmStartEnv(args.root).GLIBC_TUNABLES ?? '' };
const rows: Record<string, unknown>[] = [];
try {
  const worker = await startProc('w1', 'worker', { ...shared, NODE_ID: 'w1', MAX_OUTPUT_BYTES: String(Math.max(64 * MiB, 2 * n * 4)) }, opts);
  procs.push(worker);
  for (const [form, f] of Object.entries(FORMS)) {
    const gw = await startProc('gw', 'gateway', shared, opts);
    if (rows.length === 0) {
      const r = await fetch(`${gw.base}/functions/cosbomb`, { method: 'PUT', body: cosbomb, headers: { 'content-type': 'application/octet-stream' } });
      if (r.status !== 201) throw new Error(`register: ${r.status} ${await r.text()}`);
    }
    const pid = gw.child.pid!;
    const idle = await settled(pid);
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS: the peak is this form's
    let bytes = 0;
    const ms: number[] = [];
    for (let i = 0; i < Number(args.calls); i++) {
      const t0 = performance.now();
      const r = await fetch(`${gw.base}${f.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(f.body) });
      if (r.status !== 200) throw new Error(`${form}: ${r.status} ${await r.text()}`);
      bytes = 0;
      for await (const p of r.body as unknown as AsyncIterable<Uint8Array>) bytes += p.byteLength;
      ms.push(performance.now() - t0);
    }
    const peak = status(pid, 'VmHWM');
    const end = await settled(pid);
    rows.push({ form, answerMiB: +(bytes / MiB).toFixed(1), idleMiB: +(idle / MiB).toFixed(1), peakAboveIdleMiB: +((peak - idle) / MiB).toFixed(1), endAboveIdleMiB: +((end - idle) / MiB).toFixed(1), msPerCall: ms.map((x) => Math.round(x)) });
    await gw.stop();
  }
  console.log(JSON.stringify({ when: new Date().toISOString(), loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), root: args.root ?? '.', values: n, calls: Number(args.calls) }));
  console.table(rows);
} finally {
  await stopAll(procs);
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

