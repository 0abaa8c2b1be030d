/**
 * Per model, what onnxruntime's session options and brulee's pre-optimized artifacts cost and
 * save, side by side in one run (never part of `npm test`):
 *   load ms (session create) and cold ms (create + first run), resident bytes (RSS growth of a
 *   fresh process after the create and a first run), warm p50 of `session.run`, threads.
 * Each measurement runs in its own child process, so memory and thread counts are the model's own.
 *
 *   npm run bench:models                       # PP-OCR det/rec/cls, Silero VAD, MLPs of 21 KB, 1/20/100 MB
 *   npm run bench:models -- --models cls,vad --reps 5
 *   npm run bench:models -- --resident 16      # also: 16 models resident in one process, today vs now
 *   npm run bench:models -- --tunables glibc.malloc.mmap_threshold=131072   # the malloc configurations' GLIBC_TUNABLES
 *                                              # (default: what this checkout's npm start sets; the shell's reaches no child)
 *
 * Configurations: `today` is onnxruntime's defaults on the original file (what brulee did before);
 * `now` is brulee's defaults (runtime/onnx.ts DEFAULT_SESSION) on the pre-optimized artifact,
 * which is what a node loads; the others isolate one option each.
 */
import { execFileSync, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SESSION, deriveOptimized, loadModel, ORT_DEFAULT_SESSION, ORT_VERSION, type LoadedModel, type SessionConfig } from '../runtime/onnx';
import type { Tensor } from '../queue/wire';
import { REAL_MODELS } from '../test/support/models';
import { mlpForBytes, mlpModel } from '../models/generate';
import { WARMUP_MODEL_B64 } from '../runtime/warmup-model';
import { MAPPED_FILE_NAME } from '../runtime/mapped';

type Inputs = Record<string, Tensor>;
/** An input as the parent describes it to a child, which fills it (so no big JSON crosses, and no garbage skews the child's RSS). */
type InputSpec = Record<string, { type: 'float32' | 'int64'; dims: number[] }>;
const f32 = (dims: number[]) => ({ type: 'float32' as const, dims });
function fill(spec: InputSpec): Inputs {
  const out: Inputs = {};
  for (const [k, { type, dims }] of Object.entries(spec)) {
    const n = dims.reduce((a, b) => a * b, 1);
    out[k] = type === 'int64' ? { type, dims, data: new BigInt64Array(n).fill(16000n) } : { type, dims, data: Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 0.5) };
  }
  return out;
}

/** The models and a realistic input for each. */
function models(dir: string): Record<string, { path: string; inputs: () => InputSpec }> {
  const mlp = (name: string, bytes: Uint8Array) => {
    const path = join(dir, `${name}.onnx`);
    writeFileSync(path, bytes);
    return { path, inputs: () => ({ x: f32([1, 64]) }) };
  };
  return {
    'ocr-det': { path: REAL_MODELS.ocrDet, inputs: () => ({ x: f32([1, 3, 320, 320]) }) },
    'ocr-rec': { path: REAL_MODELS.ocrRec, inputs: () => ({ x: f32([1, 3, 48, 320]) }) },
    'ocr-cls': { path: REAL_MODELS.ocrCls, inputs: () => ({ x: f32([1, 3, 48, 192]) }) },
    vad: {
      path: REAL_MODELS.sileroVad,
      inputs: () => ({ input: f32([1, 512]), state: f32([2, 1, 128]), sr: { type: 'int64', dims: [] } }),
    },
    'mlp-21KB': mlp('mlp-21KB', mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 })),
    'mlp-1MB': mlp('mlp-1MB', mlpForBytes(1e6, 1)),
    'mlp-20MB': mlp('mlp-20MB', mlpForBytes(20e6, 1)),
    'mlp-100MB': mlp('mlp-100MB', mlpForBytes(100e6, 1)),
  };
}

/**
 * `artifact`: load the pre-optimized artifact (in the best form `deriveOptimized` gives the model:
 * mapped, else ORT format; `plain`: the optimized ONNX model, as before). `malloc`: run under the GLIBC_TUNABLES this checkout's `npm start` sets (not the shell's), as every node runs
 * (runtime/malloc.ts); `today` runs as brulee ran before, without it.
 */
interface Config { session: SessionConfig; artifact: boolean; plain?: boolean; malloc?: boolean }
const CONFIGS: Record<string, Config> = {
  today: { session: ORT_DEFAULT_SESSION, artifact: false },
  'threads=1': { session: { ...ORT_DEFAULT_SESSION, threads: 1 }, artifact: false },
  'threads=1 arena=off': { session: { ...ORT_DEFAULT_SESSION, threads: 1, arena: false }, artifact: false },
  'threads=1 arena=off memPattern=off': { session: { ...ORT_DEFAULT_SESSION, threads: 1, arena: false, memPattern: false }, artifact: false },
  'threads=1 parallel': { session: { ...ORT_DEFAULT_SESSION, threads: 1, executionMode: 'parallel' }, artifact: false },
  'threads=1 memPattern=off': { session: { ...ORT_DEFAULT_SESSION, threads: 1, memPattern: false }, artifact: false },
  'threads=1 prepacking=off': { session: { ...ORT_DEFAULT_SESSION, threads: 1, prepacking: false }, artifact: false },
  'now prepacking=off': { session: { ...DEFAULT_SESSION, prepacking: false }, artifact: true, malloc: true },
  'now arena=off': { session: { ...DEFAULT_SESSION, arena: false }, artifact: true, malloc: true },
  'now memPattern=off': { session: { ...DEFAULT_SESSION, memPattern: false }, artifact: true, malloc: true },
  'now arena=off memPattern=off': { session: { ...DEFAULT_SESSION, arena: false, memPattern: false }, artifact: true, malloc: true },
  'now initializers=device': { session: { ...DEFAULT_SESSION, extra: { use_device_allocator_for_initializers: '1' } }, artifact: true, malloc: true },
  'now initializers=device arena=off': { session: { ...DEFAULT_SESSION, arena: false, extra: { use_device_allocator_for_initializers: '1' } }, artifact: true, malloc: true },
  'today + artifact': { session: ORT_DEFAULT_SESSION, artifact: true },
  'now plain': { session: DEFAULT_SESSION, artifact: true, plain: true, malloc: true },
  'now no-malloc-threshold': { session: DEFAULT_SESSION, artifact: true },
  now: { session: DEFAULT_SESSION, artifact: true, malloc: true },
  'now threads=2': { session: { ...DEFAULT_SESSION, threads: 2 }, artifact: true, malloc: true },
  'now plain threads=2': { session: { ...DEFAULT_SESSION, threads: 2 }, artifact: true, plain: true, malloc: true },
};

interface ChildRequest { models: Array<{ path: string; inputs: InputSpec }>; session: SessionConfig; artifact: boolean; warmRuns: number }
interface ChildReply { loadMs: number; coldMs: number; rssDelta: number; anonDelta: number; fileDelta: number; warmP50: number; warmP99: number; threads: number; threads0: number; outHash: string }

/** A field of /proc/self/status in bytes (RssAnon: the process's own memory; RssFile: mapped files, such as onnxruntime's code pages a model's kernels touch first). */
const status = (field: string) => 1024 * Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
const threads = () => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** sha256 of a run's outputs, bit for bit (a configuration whose hash differs from `today`'s computes other bits). */
function hashOutputs(out: Record<string, Tensor>): string {
  const h = createHash('sha256');
  for (const [k, t] of Object.entries(out).sort((a, b) => a[0].localeCompare(b[0]))) {
    h.update(k).update(JSON.stringify(t.dims));
    if (ArrayBuffer.isView(t.data)) h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    else h.update(JSON.stringify(t.data));
  }
  return h.digest('hex');
}

/** Child: loads every model of the request (keeps them all resident), runs each once, then warm runs of the first. */
async function child(req: ChildRequest): Promise<ChildReply> {
  const inputs = req.models.map((m) => fill(m.inputs));
  await (await loadModel(Buffer.from(WARMUP_MODEL_B64, 'base64'), { session: req.session })).dispose();
  gc();
  const rss0 = process.memoryUsage().rss;
  const [anon0, file0] = [status('RssAnon'), status('RssFile') + status('RssShmem')];
  const threads0 = threads();
  const held: LoadedModel[] = [];
  let loadMs = 0;
  let coldMs = 0;
  let outHash = '';
  for (const [i, m] of req.models.entries()) {
    const t0 = performance.now();
    const model = await loadModel(m.path, { session: req.session, preOptimized: req.artifact });
    const t1 = performance.now();
    const out = await model.run(inputs[i]!);
    if (i === 0) [loadMs, coldMs] = [t1 - t0, performance.now() - t0];
    if (i === 0) outHash = hashOutputs(out);
    held.push(model);
  }
  gc();
  const rssDelta = process.memoryUsage().rss - rss0;
  const [anonDelta, fileDelta] = [status('RssAnon') - anon0, status('RssFile') + status('RssShmem') - file0];
  const samples: number[] = [];
  for (let i = 0; i < req.warmRuns; i++) {
    const t = performance.now();
    await held[0]!.run(inputs[0]!);
    samples.push(performance.now() - t);
  }
  return { loadMs, coldMs, rssDelta, anonDelta, fileDelta, warmP50: pct(samples, 50), warmP99: pct(samples, 99), threads: threads(), threads0, outHash };
}


/**
 * The environment this checkout's `npm start` gives a node (bench/support.ts `npmStartEnv`), found
 * once by the parent: imported here, not at the top, so that no child loads support.ts's imports
 * (grpc-js) beside the model it measures.
 */
let startEnv: Promise<NodeJS.ProcessEnv> | undefined;
/** `--tunables`: the malloc configurations' GLIBC_TUNABLES instead of `npm start`'s (one exported in the shell reaches no child). */
let tunables: string | undefined;

async function runChild(req: ChildRequest, malloc = false): Promise<ChildReply> {
  const env = malloc
    ? tunables !== undefined
      ? { ...process.env, GLIBC_TUNABLES: tunables }
      : await (startEnv ??= import('./support').then((m) => m.npmStartEnv()))
    : { ...process.env, GLIBC_TUNABLES: '' };
  return new Promise((resolve, reject) => {
    const c = fork(fileURLToPath(import.meta.url), ['--child'], { env, execArgv: ['--import', 'tsx', '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    c.once('message', (m: ChildReply) => resolve(m));
    c.once('exit', (code) => code !== 0 && reject(new Error(`child exited ${code}`)));
    c.send(req);
  });
}

async function main() {
  const args = parseArgs({ options: { models: { type: 'string' }, reps: { type: 'string', default: '3' }, 'warm-runs': { type: 'string', default: '50' }, resident: { type: 'string', default: '0' }, configs: { type: 'string' }, tunables: { type: 'string' } } }).values;
  tunables = args.tunables;
  const dir = mkdtempSync(join(tmpdir(), 'brulee-bench-models-'));
  const all = models(dir);
  const names = args.models ? args.models.split(',') : Object.keys(all);
  const configs = args.configs ? args.configs.split(',') : Object.keys(CONFIGS);
  const reps = Number(args.reps);
  const warmRuns = Number(args['warm-runs']);
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const cpu = execFileSync('nproc').toString().trim();
  console.log(`onnxruntime-node ${ORT_VERSION}, node ${process.version}, ${cpu} cores, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (a shared machine: compare ratios within this run)`);
  console.log(`medians of ${reps} fresh processes per cell; warm p50 over ${warmRuns} runs\n`);
  const sums: Record<string, { file: number; rss: number }> = {};
  try {
    for (const name of names) {
      const m = all[name];
      if (!m) throw new Error(`unknown model ${name}; known: ${Object.keys(all).join(', ')}`);
      // Each artifact in a folder of its own, named as a node's cache names it (a mapped one reads its weights from that file).
      const artifact = join(dir, `${name}-artifact`, MAPPED_FILE_NAME);
      const plain = join(dir, `${name}-plain`, MAPPED_FILE_NAME);
      mkdirSync(dirname(artifact));
      mkdirSync(dirname(plain));
      const t0 = performance.now();
      const derived = await deriveOptimized(m.path, artifact);
      const deriveMs = performance.now() - t0;
      await deriveOptimized(m.path, plain, { form: 'onnx' });
      const fileBytes = readFileSync(m.path).byteLength;
      console.log(`${name}: ${fileBytes} bytes, artifact ${readFileSync(artifact).byteLength} bytes, form ${derived.form}${derived.note ? ` (${derived.note})` : ''} (derived in ${deriveMs.toFixed(0)} ms)`);
      console.log(`  ${'config'.padEnd(36)}${'load ms'.padStart(9)}${'cold ms'.padStart(9)}${'resident MiB'.padStart(14)}${'x file'.padStart(8)}${'anon'.padStart(8)}${'file'.padStart(8)}${'warm p50'.padStart(10)}${'warm p99'.padStart(10)}${'threads+'.padStart(10)}`);
      let today: ChildReply | undefined;
      for (const c of configs) {
        const cfg = CONFIGS[c]!;
        const rs: ChildReply[] = [];
        for (let i = 0; i < reps; i++) rs.push(await runChild({ models: [{ path: cfg.artifact ? (cfg.plain ? plain : artifact) : m.path, inputs: (m.inputs()) }], session: cfg.session, artifact: cfg.artifact, warmRuns }, cfg.malloc));
        const med = (k: Exclude<keyof ChildReply, 'outHash'>) => pct(rs.map((r) => r[k]), 50);
        const r: ChildReply = { loadMs: med('loadMs'), coldMs: med('coldMs'), rssDelta: Math.max(med('rssDelta'), 0), anonDelta: med('anonDelta'), fileDelta: med('fileDelta'), warmP50: med('warmP50'), warmP99: med('warmP99'), threads: med('threads'), threads0: med('threads0'), outHash: rs[0]!.outHash };
        today ??= r;
        (sums[c] ??= { file: 0, rss: 0 }).rss += r.rssDelta;
        sums[c]!.file += fileBytes;
        const ratio = (a: number, b: number) => (c === 'today' ? '' : ` (${(a / b).toFixed(2)}x)`);
        console.log(
          `  ${c.padEnd(36)}${r.loadMs.toFixed(1).padStart(9)}${r.coldMs.toFixed(1).padStart(9)}${mb(r.rssDelta).padStart(14)}${(r.rssDelta / fileBytes).toFixed(2).padStart(8)}${mb(r.anonDelta).padStart(8)}${mb(r.fileDelta).padStart(8)}${r.warmP50.toFixed(3).padStart(10)}${r.warmP99.toFixed(3).padStart(10)}${String(r.threads - r.threads0).padStart(10)}` +
            `   cold${ratio(r.coldMs, today.coldMs)} resident${ratio(r.rssDelta, today.rssDelta)} p50${ratio(r.warmP50, today.warmP50)} outputs ${r.outHash === today.outHash ? 'same bits' : 'OTHER BITS'}`,
        );
      }
    }
    const real = names.filter((n) => !n.startsWith('mlp'));
    if (real.length === names.length || names.length > 0) {
      console.log(`\nsum of resident bytes over ${names.join(', ')}:`);
      for (const c of configs) console.log(`  ${c.padEnd(36)}${mb(sums[c]!.rss).padStart(9)} MiB${sums.today ? `  (${(sums.today.rss / sums[c]!.rss).toFixed(2)}x less than today)` : ''}`);
    }
    const n = Number(args.resident);
    if (n > 0) {
      // n models resident in one process: the four real ones, then small MLPs with other seeds.
      const list: Array<{ path: string; inputs: InputSpec }> = [];
      const real4 = ['ocr-det', 'ocr-rec', 'ocr-cls', 'vad'];
      for (let i = 0; i < n; i++) {
        if (i < real4.length) list.push({ path: all[real4[i]!]!.path, inputs: (all[real4[i]!]!.inputs()) });
        else {
          const p = join(dir, `res-${i}.onnx`);
          writeFileSync(p, mlpForBytes(1e6, i));
          list.push({ path: p, inputs: ({ x: f32([1, 64]) }) });
        }
      }
      console.log(`\n${n} models resident in one process (the 4 real ones, then 1 MB MLPs), each run once:`);
      for (const c of ['today', 'now']) {
        const cfg = CONFIGS[c]!;
        const paths = cfg.artifact
          ? await Promise.all(list.map(async (m, i) => { const a = join(dir, `res-art-${i}`, MAPPED_FILE_NAME); mkdirSync(dirname(a)); await deriveOptimized(m.path, a); return { ...m, path: a }; }))
          : list;
        const r = await runChild({ models: paths, session: cfg.session, artifact: cfg.artifact, warmRuns: 5 }, cfg.malloc);
        console.log(`  ${c.padEnd(8)} threads added ${r.threads - r.threads0}, resident ${mb(r.rssDelta)} MiB`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--child')) {
  process.once('message', (req: ChildRequest) => {
    child(req).then(
      (r) => process.send!(r, () => process.exit(0)),
      (e: unknown) => {
        console.error(e);
        process.exit(1);
      },
    );
  });
} else {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
