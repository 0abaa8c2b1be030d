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
  /** Loads and runs done, each with its release. */
  loads: number;
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
  try {
    const source = join(dir, 'source.onnx');
    await writeFile(source, mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 1 }));
    // Named as a mapped artifact must be; a model this small gets the ORT form, as at registration.
    const path = join(dir, MAPPED_FILE_NAME);
    const { form } = await deriveOptimized(source, path);
    const layout = artifactLayout(path);
    const footprints = new Footprints();
    const pool = new WarmPool<LoadedModel>({
      budgetBytes: 64 * 1024 ** 2,
      policy,
      load: (spec) => footprints.load(spec.key, () => loadModel(path, { session: {}, preOptimized: true, layout })),
      dispose: (m) => m.dispose(),
    });
    const spec = { key: WARMUP_KEY, fn: WARMUP_KEY, version: 1, sizeBytes: 1024 ** 2, loadMs: 1, execMs: 0.1 };
    const x: Tensor = { type: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 4]) };
    let loads = 0;
    for (let i = 0; i < 2; i++) {
      const lease = await pool.acquire(spec, undefined, { bytes: 64, growth: footprints.growthEstimate(spec.key, 16) });
      try {
        await footprints.run(spec.key, 16, () => lease.value.run({ x }));
      } finally {
        lease.release();
        lease.reservation.free();
      }
      pool.drop(spec.key, 'unload', 'warm-up');
      loads++;
    }
    await pool.clear();
    return { form, loads, ms: performance.now() - t0 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
