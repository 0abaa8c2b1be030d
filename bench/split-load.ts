/**
 * Would splitting a large model in two and creating the parts at once cut its load? (issue 10 §1;
 * never part of `npm test`.) onnxruntime 1.30 packs every weight again at each session create,
 * single-threaded (bench/README.md, "Models of 5 MB and more"); two sessions of half the weights each,
 * created on two threads, could pack on two cores.
 *
 * For each generated MLP: the chain is cut after the Relu that leaves the two parts' weight bytes
 * closest to half, and the whole and both parts get the mapped artifact registration writes
 * (`deriveOptimized`). The parts run in sequence (the first's output fed to the second) must give
 * the whole's output bits, checked before timing. Then, rounds interleaved, as a node loads
 * (`loadModel`, one thread, optimization off, brulee's glibc tunables):
 *
 * - `whole`: the whole model on the main thread;
 * - `parts, main`: both parts on the main thread, started together (onnxruntime-node creates a
 *   session synchronously on the calling thread, so they take turns);
 * - `parts, main + host`: the first on the main thread while the second is created in a session
 *   host's thread (runtime/session-host.ts), the only way to have two creates overlap in a node.
 *
 * Each is reported as wall ms and, per thread, ms on a CPU and ms waiting for one
 * (/proc/self/task/TID/schedstat): the split pays only if the second thread finds a free core.
 * Then warm runs, interleaved: the whole on the main thread against the parts (first on the main
 * thread, second in the host).
 *
 *   npx tsx bench/split-load.ts --models mlp-20MB,mlp-100MB --reps 11 --warm 400
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mlpOptionsForBytes, mlpSpec } from '../models/generate';
import { encodeModel, type ModelSpec } from '../models/onnx-builder';
import { withMallocTunables } from '../runtime/malloc';
import { deriveOptimized, loadModel, type LoadedModel } from '../runtime/onnx';
import { SessionHost } from '../runtime/session-host';
import type { Tensor } from '../queue/wire';

// glibc reads its tunables at process start: run again under the node's.
if (process.env.GLIBC_TUNABLES === undefined) {
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: withMallocTunables(process.env) });
  process.exit(r.status ?? 1);
}

const args = parseArgs({ options: { models: { type: 'string', default: 'mlp-20MB,mlp-100MB' }, reps: { type: 'string', default: '11' }, warm: { type: 'string', default: '400' } } }).values;
const SIZES: Record<string, number> = { 'mlp-20MB': 20e6, 'mlp-100MB': 100e6 };

/** The MLP cut after a Relu: its two parts and the tensor crossing the cut. */
function split(spec: ModelSpec): { parts: [ModelSpec, ModelSpec]; crossing: string; bytes: [number, number] } {
  const inits = spec.initializers ?? [];
  const bytesOf = (name: string) => (inits.find((t) => t.name === name)?.data as Float32Array | undefined)?.byteLength ?? 0;
  const total = spec.nodes.reduce((s, n) => s + n.inputs.reduce((a, i) => a + bytesOf(i), 0), 0);
  let best = -1;
  let bestGap = Infinity;
  let acc = 0;
  spec.nodes.forEach((n, i) => {
    acc += n.inputs.reduce((a, x) => a + bytesOf(x), 0);
    if (n.op === 'Relu' && Math.abs(total / 2 - acc) < bestGap) [best, bestGap] = [i + 1, Math.abs(total / 2 - acc)];
  });
  const a = spec.nodes.slice(0, best);
  const b = spec.nodes.slice(best);
  const crossing = a[a.length - 1]!.outputs[0]!;
  const width = inits.find((t) => t.name === b.find((n) => n.op === 'MatMul')!.inputs[1])!.dims[0]!;
  const cross = [{ name: crossing, type: 'float32' as const, shape: ['batch', width] }];
  const used = (ns: typeof a) => inits.filter((t) => ns.some((n) => n.inputs.includes(t.name)));
  const partBytes = (ns: typeof a) => used(ns).reduce((s, t) => s + bytesOf(t.name), 0);
  return {
    parts: [
      { ...spec, nodes: a, initializers: used(a), outputs: cross },
      { ...spec, nodes: b, initializers: used(b), inputs: cross },
    ],
    crossing,
    bytes: [partBytes(a), partBytes(b)],
  };
}

const ms = (t: number) => performance.now() - t;
const med = (x: number[]) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)]!;
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));
const bits = (t: Tensor) => Buffer.from((t.data as Float32Array).buffer, (t.data as Float32Array).byteOffset, (t.data as Float32Array).byteLength);

type Sched = Map<string, { run: number; wait: number }>;
const sched = (): Sched =>
  new Map(
    readdirSync('/proc/self/task').map((tid) => {
      const [run, wait] = readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      return [tid, { run: run! / 1e6, wait: wait! / 1e6 }];
    }),
  );
/** ms on a CPU and waiting for one, of the main thread and of the busiest other thread, between two snapshots. */
function threads(a: Sched, b: Sched): { main: { run: number; wait: number }; other: { run: number; wait: number } } {
  const d = [...b].map(([tid, v]) => ({ tid, run: v.run - (a.get(tid)?.run ?? 0), wait: v.wait - (a.get(tid)?.wait ?? 0) }));
  const main = d.find((x) => x.tid === String(process.pid))!;
  const other = d.filter((x) => x.tid !== String(process.pid)).sort((x, y) => y.run - x.run)[0]!;
  return { main, other };
}

const host = new SessionHost(1);
await host.start();
const dir = mkdtempSync(join(tmpdir(), 'brulee-split-'));
const load = (p: string, inHost = false) => loadModel(p, { preOptimized: true, ...(inHost ? { host } : {}) });
try {
  for (const name of args.models.split(',')) {
    const spec = mlpSpec(mlpOptionsForBytes(SIZES[name]!, 1));
    const { parts, crossing, bytes } = split(spec);
    const paths: string[] = [];
    for (const [k, s] of [spec, ...parts].entries()) {
      mkdirSync(join(dir, name, String(k)), { recursive: true });
      writeFileSync(join(dir, name, String(k), 'src.onnx'), encodeModel(s));
      const d = await deriveOptimized(join(dir, name, String(k), 'src.onnx'), join(dir, name, String(k), 'model.onnx'));
      if (d.form !== 'mapped') throw new Error(`${name} part ${k}: ${d.form} (${d.note})`);
      paths.push(join(dir, name, String(k), 'model.onnx'));
    }
    const [pw, pa, pb] = paths as [string, string, string];
    const x = { x: { type: 'float32', dims: [1, 64], data: Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.37) * 0.5) } as Tensor };
    const run2 = async (a: LoadedModel, b: LoadedModel) => (await b.run(await a.run(x)))['y']!;
    {
      const [w, a, b] = [await load(pw), await load(pa), await load(pb, true)];
      const equal = bits((await w.run(x))['y']!).equals(bits(await run2(a, b)));
      for (const m of [w, a, b]) await m.dispose();
      if (!equal) throw new Error(`${name}: the parts in sequence do not give the whole's bits`);
    }
    const r: Record<string, number[]> = {};
    const push = (k: string, v: number) => (r[k] ??= []).push(v);
    for (let i = 0; i < Number(args.reps); i++) {
      let s = sched();
      let t = performance.now();
      const w = await load(pw);
      push('whole wall', ms(t));
      let th = threads(s, sched());
      push('whole main cpu', th.main.run);
      push('whole main wait', th.main.wait);
      await w.dispose();
      await sleep(30);
      t = performance.now();
      const [a1, b1] = await Promise.all([load(pa), load(pb)]);
      push('parts, main: wall', ms(t));
      await a1.dispose();
      await b1.dispose();
      await sleep(30);
      s = sched();
      t = performance.now();
      const [a2, b2] = await Promise.all([load(pa), load(pb, true)]);
      push('parts, main + host: wall', ms(t));
      th = threads(s, sched());
      push('  main cpu', th.main.run);
      push('  main wait', th.main.wait);
      push('  host cpu', th.other.run);
      push('  host wait', th.other.wait);
      await a2.dispose();
      await b2.dispose();
      await sleep(30);
    }
    const [w, a, b] = [await load(pw), await load(pa), await load(pb, true)];
    const ww: number[] = [];
    const ws: number[] = [];
    for (let i = 0; i < Number(args.warm); i++) {
      let t = performance.now();
      await w.run(x);
      ww.push(ms(t));
      t = performance.now();
      await run2(a, b);
      ws.push(ms(t));
    }
    for (const m of [w, a, b]) await m.dispose();
    console.log(`${name}: cut at ${crossing} (weights ${(bytes[0] / 1e6).toFixed(1)} + ${(bytes[1] / 1e6).toFixed(1)} MB), outputs bit-equal; medians of ${args.reps}, ms:`);
    for (const [k, v] of Object.entries(r)) console.log(`  ${k.padEnd(26)} ${med(v).toFixed(1).padStart(7)}   [${v.map((y) => y.toFixed(1)).join(' ')}]`);
    console.log(`  warm p50: whole ${med(ww.slice(20)).toFixed(3)}, parts (main, then host) ${med(ws.slice(20)).toFixed(3)}`);
  }
} finally {
  await host.close();
  rmSync(dir, { recursive: true, force: true });
}
