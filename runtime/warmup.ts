import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mlpModel } from '../models/generate';
import type { Tensor } from '../queue/wire';
import { Footprints } from './footprint';
import { artifactLayout, MAPPED_FILE_NAME } from './mapped';
import { deriveOptimized, loadModel, type LoadedModel } from './onnx';
import type { EvictionPolicy } from './policies';
import { WarmPool } from './warm-pool';

/** The warm-up model's function name and key: no registered function can have them (names are checked). */
export const WARMUP_KEY = ' warmup';

/** What a warm-up did, for its caller's log and for tests. */
export interface Warmed {
  /** The artifact's form (`ort` for a model this small, as registration derives it). */
  form: string;
  /** Sessions the pool loaded (its `load` called and resolved): 2, a first load and a reload. */
  loads: number;
  /** Runs done on them, one per load. */
  runs: number;
  ms: number;
}

/**
 * Warms a node's load path once at its start, as Triton's model warmup does: a ~1 KB MLP made in
 * this process (models/generate.ts, nothing read from anywhere) is derived to its pre-optimized
 * artifact as registration derives a model's, then loaded, run once and released twice (a first
 * load, measured as a model's first load in a process is, and a reload, as after an eviction),
 * through the classes a node's cold start goes through: a warm pool with the node's eviction policy
 * (`policy`, an instance of its own), footprints, `loadModel` on the artifact's path with its
 * layout, one thread, optimization off. So a node's first cold call does not pay onnxruntime's
 * first session of real kernels (MatMul, Add, Relu) nor V8's first compile of that code.
 *
 * Nothing of it is the node's: its pool, policy, footprints, counts, metrics and heartbeats never
 * see it, so no function is counted a load or a cold start, and nothing stays resident. Its files
 * live in a temporary folder, removed before it returns.
 */
export async function warmLoadPath(policy: EvictionPolicy): Promise<Warmed> {
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'brulee-warmup-'));
  let pool: WarmPool<LoadedModel> | undefined;
  try {
    const source = join(dir, 'source.onnx');
    await writeFile(source, mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }));
    // Named as a mapped artifact must be; a model this small gets the ORT form, as at registration.
    const path = join(dir, MAPPED_FILE_NAME);
    const { form } = await deriveOptimized(source, path);
    const layout = artifactLayout(path);
    const footprints = new Footprints();
    let loads = 0;
    let runs = 0;
    pool = new WarmPool<LoadedModel>({
      budgetBytes: 64 * 1024 ** 2,
      policy,
      load: async (spec) => {
        const m = await footprints.load(spec.key, () => loadModel(path, { session: {}, preOptimized: true, layout }));
        loads++;
        return m;
      },
      dispose: (m) => m.dispose(),
    });
    const spec = { key: WARMUP_KEY, fn: WARMUP_KEY, version: 1, sizeBytes: 1024 ** 2, loadMs: 1, execMs: 0.1 };
    const x: Tensor = { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) };
    for (let i = 0; i < 2; i++) {
      const lease = await pool.acquire(spec, undefined, { bytes: 64, growth: footprints.growthEstimate(spec.key, 16) });
      try {
        // Counted from what the run gave: an output tensor of the model's 2 values.
        const out = await footprints.run(spec.key, 16, () => lease.value.run({ x }));
        if (Object.values(out).some((t) => t.data.length === 2)) runs++;
      } finally {
        lease.release();
        lease.reservation.free();
      }
      pool.drop(spec.key, 'unload', 'warm-up');
    }
    return { form, loads, runs, ms: performance.now() - t0 };
  } finally {
    // Whatever happened (a run that threw after its load), no session of it stays.
    await pool?.clear();
    await rm(dir, { recursive: true, force: true });
  }
}
