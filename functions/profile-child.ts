/**
 * Runs in a fresh child process (see profile.ts), so its RSS growth is the model's alone:
 * load time (median of a few session creates), one exec on a generated input, resident bytes,
 * and a hash of that exec's outputs. With `derive`, it first writes the pre-optimized artifact.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { tensorBytes } from '../queue/tensor';
import { deriveOptimized, loadModel, withoutPaths, type LoadedModel, type TensorSpec } from '../runtime/onnx';
import { ARRAY_OF, type NumericType, type Tensor } from '../queue/wire';
import { profileDimsError } from './signature';
import { MEMORY_FACTOR_MIN_FILE_BYTES, type ProfileRequest, type ProfileReply } from './profile';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

function sampleInput(spec: TensorSpec, dims: number[]): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  if (spec.type === 'string') return { type: 'string', dims, data: Array.from({ length: n }, (_, i) => `sample ${i}`) };
  const type = spec.type as NumericType;
  const Ctor = ARRAY_OF[type];
  if (!Ctor) throw new Error(`input "${spec.name}" has element type ${spec.type}, which the profiler cannot generate`);
  const data = new Ctor(n);
  if (data instanceof Float32Array || data instanceof Float64Array) for (let i = 0; i < n; i++) data[i] = ((i * 7919) % 1000) / 1000 - 0.5;
  return { type, dims, data };
}

/**
 * Dims asked (`profileDims`) whose sample inputs take more bytes than any call could send: refused
 * before they are generated (a typo of a few digits held a core, and the name, for the profiling
 * timeout of 120 s, then blamed the model).
 */
function tooLarge(specs: readonly TensorSpec[], asked: Record<string, number[]>, max: number | undefined): string | null {
  if (max === undefined || Object.keys(asked).length === 0) return null;
  let total = 0;
  for (const spec of specs) {
    const d = asked[spec.name] ?? spec.dims.map((x) => (typeof x === 'number' ? x : 1));
    total += d.reduce((a, b) => a * b, 1) * (ARRAY_OF[spec.type as NumericType]?.BYTES_PER_ELEMENT ?? 1);
  }
  if (total <= max) return null;
  const shown = Object.entries(asked).map(([k, d]) => `${k}:${d.join('x')}`).join(';');
  return `profileDims ${shown} asks for ${total} bytes of inputs, more than one call may send (MAX_REQUEST_BYTES, ${max} bytes): profile with the dims calls will send`;
}

async function profile(req: ProfileRequest): Promise<ProfileReply> {
  const load = () => loadModel(req.path, { session: req.session, preOptimized: req.preOptimized });
  // onnxruntime's own start-up (thread pools, allocators) is not the model's: pay it first.
  await (await loadModel(new Uint8Array(Buffer.from(req.warmupModelB64, 'base64')), { session: req.session })).dispose();
  const derived = req.derive ? await deriveOptimized(req.path, req.derive, { form: req.deriveForm ?? 'mapped' }) : null;
  let derivedAlt: string | undefined;
  if (derived?.form === 'ort' && req.deriveAlt && (await stat(req.path)).size >= MEMORY_FACTOR_MIN_FILE_BYTES) {
    await mkdir(dirname(req.deriveAlt), { recursive: true });
    await deriveOptimized(req.path, (derivedAlt = req.deriveAlt), { form: 'onnx' });
  }
  const bytes = await readFile(req.path);
  gc();
  const rss0 = process.memoryUsage().rss;

  const t0 = performance.now();
  const model: LoadedModel = await load();
  const loadSamples = [performance.now() - t0];
  const signature = model.signature;
  const badDims = profileDimsError(signature, req.dims) ?? tooLarge(signature.inputs, req.dims, req.maxInputBytes);
  if (badDims) {
    await model.dispose();
    return { ok: false, error: badDims, option: true };
  }

  const dims: Record<string, number[]> = {};
  let execMs: number | null = null;
  let execError: string | null = null;
  let outputsSha256: string | null = null;
  try {
    const inputs: Record<string, Tensor> = {};
    for (const spec of signature.inputs) {
      const d = req.dims[spec.name] ?? spec.dims.map((x) => (typeof x === 'number' ? x : 1));
      dims[spec.name] = d;
      inputs[spec.name] = sampleInput(spec, d);
    }
    // First run allocates the arena: part of resident memory. Its outputs' hash lets the parent
    // check that an artifact computes the very same bits as its original.
    const first = await model.run(inputs);
    const h = createHash('sha256');
    for (const name of Object.keys(first).sort()) h.update(name).update(tensorBytes(first[name]!));
    outputsSha256 = h.digest('hex');
    const samples: number[] = [];
    for (let i = 0; i < req.execRuns; i++) {
      const t = performance.now();
      await model.run(inputs);
      samples.push(performance.now() - t);
    }
    execMs = median(samples);
  } catch (e) {
    execError = withoutPaths(e instanceof Error ? e.message : String(e));
  }
  gc();
  const rssDelta = Math.max(0, process.memoryUsage().rss - rss0);

  for (let i = 1; i < req.loadRuns; i++) {
    const t = performance.now();
    const m = await load();
    loadSamples.push(performance.now() - t);
    await m.dispose();
  }
  await model.dispose();
  return {
    ok: true,
    signature,
    loadMs: median(loadSamples),
    loadSamplesMs: loadSamples,
    execMs,
    execError,
    outputsSha256,
    profiledDims: dims,
    rssDeltaBytes: rssDelta,
    fileBytes: bytes.byteLength,
    ...(derived ? { derived } : {}),
    ...(derivedAlt ? { derivedAlt } : {}),
  };
}

// The registering process is gone (killed): nobody will read the answer, so no work is left to do.
process.once('disconnect', () => process.exit(1));

process.once('message', (req: ProfileRequest) => {
  profile(req).then(
    (r) => process.send!(r, () => process.exit(0)),
    (e: unknown) => process.send!({ ok: false, error: e instanceof Error ? e.message : String(e) } satisfies ProfileReply, () => process.exit(0)),
  );
});
