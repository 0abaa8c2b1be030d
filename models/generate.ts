/**
 * Synthetic ONNX models for tests and benchmarks (no Python, no downloads).
 *
 * Every generator is deterministic: the same options give the same bytes.
 * Each `xxxModel()` has an `xxxSpec()` twin returning the ModelSpec (inputs,
 * outputs, nodes, initializers) for callers that want the signature or weights.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { encodeModel, type ModelSpec, type NodeSpec, type TensorSpec, type ValueInfo } from './onnx-builder';
import { seededRandom } from '../runtime/policies/random';

export const OPSET = 13;
export const IR_VERSION = 7;

// ---------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------

/** mulberry32, the same seeded generator the `random` eviction policy uses. */
export const mulberry32 = seededRandom;

function uniform(rand: () => number, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

// ---------------------------------------------------------------------------
// MLP
// ---------------------------------------------------------------------------

export interface MlpOptions {
  inputSize: number;
  hidden: number[];
  outputSize: number;
  /** PRNG seed for the weights. Default 0. */
  seed?: number;
  /** Fixed batch size, or 'dynamic' (dim_param "batch"). Default 'dynamic'. */
  batch?: number | 'dynamic';
}

export interface MlpLayer {
  /** Row-major [inSize, outSize]. */
  w: Float32Array;
  /** [outSize]. */
  b: Float32Array;
  inSize: number;
  outSize: number;
}

/** Weight magnitude: values are uniform in [-WEIGHT_SCALE, WEIGHT_SCALE]. */
export const WEIGHT_SCALE = 0.1;

function checkMlpOptions(opts: MlpOptions): number[] {
  const sizes = [opts.inputSize, ...opts.hidden, opts.outputSize];
  for (const s of sizes) {
    if (!Number.isInteger(s) || s < 1) throw new Error(`mlp: layer sizes must be positive integers, got ${s}`);
  }
  if (opts.batch !== undefined && opts.batch !== 'dynamic' && (!Number.isInteger(opts.batch) || opts.batch < 1)) {
    throw new Error(`mlp: batch must be a positive integer or 'dynamic', got ${opts.batch}`);
  }
  return sizes;
}

/** The MLP's weights, exactly as `mlpModel` stores them (W then b per layer, one PRNG stream). */
export function mlpWeights(opts: MlpOptions): MlpLayer[] {
  const sizes = checkMlpOptions(opts);
  const rand = mulberry32(opts.seed ?? 0);
  const layers: MlpLayer[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    const inSize = sizes[i]!;
    const outSize = sizes[i + 1]!;
    const w = uniform(rand, inSize * outSize, WEIGHT_SCALE);
    const b = uniform(rand, outSize, WEIGHT_SCALE);
    layers.push({ w, b, inSize, outSize });
  }
  return layers;
}

/**
 * y = relu(x W1 + b1) ... W_last + b_last, as MatMul/Add/Relu nodes.
 * Input `x` float32 [batch, inputSize], output `y` float32 [batch, outputSize].
 */
export function mlpSpec(opts: MlpOptions): ModelSpec {
  const layers = mlpWeights(opts);
  const batch: number | string = opts.batch === undefined || opts.batch === 'dynamic' ? 'batch' : opts.batch;
  const nodes: NodeSpec[] = [];
  const initializers: TensorSpec[] = [];
  let h = 'x';
  layers.forEach((layer, i) => {
    const last = i === layers.length - 1;
    initializers.push({ name: `W${i}`, type: 'float32', dims: [layer.inSize, layer.outSize], data: layer.w });
    initializers.push({ name: `b${i}`, type: 'float32', dims: [layer.outSize], data: layer.b });
    nodes.push({ op: 'MatMul', name: `matmul${i}`, inputs: [h, `W${i}`], outputs: [`mm${i}`] });
    const z = last ? 'y' : `z${i}`;
    nodes.push({ op: 'Add', name: `add${i}`, inputs: [`mm${i}`, `b${i}`], outputs: [z] });
    if (!last) {
      nodes.push({ op: 'Relu', name: `relu${i}`, inputs: [z], outputs: [`h${i}`] });
      h = `h${i}`;
    }
  });
  return {
    inputs: [{ name: 'x', type: 'float32', shape: [batch, opts.inputSize] }],
    outputs: [{ name: 'y', type: 'float32', shape: [batch, opts.outputSize] }],
    nodes,
    initializers,
    opset: OPSET,
    irVersion: IR_VERSION,
    graphName: 'mlp',
    docString: `mlp ${[opts.inputSize, ...opts.hidden, opts.outputSize].join('-')} seed=${opts.seed ?? 0}`,
  };
}

export function mlpModel(opts: MlpOptions): Uint8Array {
  return encodeModel(mlpSpec(opts));
}

/** Plain-JS forward pass of the MLP on a row-major [batch, inputSize] input (float64 accumulation). */
export function mlpForward(layers: readonly MlpLayer[], x: Float32Array, batch: number): Float32Array {
  let cur: Float32Array = x;
  layers.forEach((layer, li) => {
    const { w, b, inSize, outSize } = layer;
    if (cur.length !== batch * inSize) throw new Error(`mlpForward: layer ${li} expects ${batch}x${inSize} values`);
    const next = new Float32Array(batch * outSize);
    for (let r = 0; r < batch; r++) {
      for (let j = 0; j < outSize; j++) {
        let acc = 0;
        for (let k = 0; k < inSize; k++) acc += cur[r * inSize + k]! * w[k * outSize + j]!;
        acc += b[j]!;
        next[r * outSize + j] = li < layers.length - 1 ? Math.max(0, acc) : acc;
      }
    }
    cur = next;
  });
  return cur;
}

const MLP_SIZED_INPUT = 64;
const MLP_SIZED_OUTPUT = 16;
const MLP_SIZED_MAX_WIDTH = 1024;
/** Rough non-weight bytes: graph/value-info headers plus per-layer node/initializer records. */
const MLP_FIXED_OVERHEAD = 200;
const MLP_LAYER_OVERHEAD = 110;

/**
 * MLP options whose encoded model is roughly `targetBytes` (weights dominate: 4 bytes a parameter).
 * Input 64, output 16; one hidden layer while that suffices, then more hidden layers
 * of equal width (at most 1024) so big models have many moderate tensors rather than one huge one.
 */
export function mlpOptionsForBytes(targetBytes: number, seed = 0): MlpOptions {
  if (!Number.isFinite(targetBytes) || targetBytes <= 0) throw new Error(`mlpForBytes: bad target ${targetBytes}`);
  const inp = MLP_SIZED_INPUT;
  const out = MLP_SIZED_OUTPUT;
  const maxW = MLP_SIZED_MAX_WIDTH;
  // Parameters for n hidden layers of width h: in*h + h + (n-1)(h*h + h) + h*out + out.
  const params = (n: number, h: number) => inp * h + h + (n - 1) * (h * h + h) + h * out + out;
  const budget = (n: number) => (targetBytes - MLP_FIXED_OVERHEAD - (n + 1) * MLP_LAYER_OVERHEAD) / 4;
  let n = 1;
  let h: number;
  const h1 = (budget(1) - out) / (inp + 1 + out);
  if (h1 <= maxW) {
    h = Math.max(1, Math.round(h1));
  } else {
    n = 1 + Math.ceil((budget(1) - params(1, maxW)) / (maxW * maxW + maxW));
    // (n-1) h^2 + (in + out + n) h + (out - P) = 0
    const a = n - 1;
    const b = inp + out + n;
    const c = out - budget(n);
    h = Math.max(1, Math.min(maxW, Math.round((-b + Math.sqrt(b * b - 4 * a * c)) / (2 * a))));
  }
  return { inputSize: inp, hidden: Array.from({ length: n }, () => h), outputSize: out, seed };
}

/** An MLP model of roughly `targetBytes` bytes (see `mlpOptionsForBytes`). */
export function mlpForBytes(targetBytes: number, seed = 0): Uint8Array {
  return mlpModel(mlpOptionsForBytes(targetBytes, seed));
}

// ---------------------------------------------------------------------------
// Types model
// ---------------------------------------------------------------------------

/** One input per element type, each passed through Identity to `<name>_out`. */
export const TYPES_INPUTS: readonly ValueInfo[] = [
  { name: 'f32', type: 'float32', shape: [2, 3] },
  { name: 'f64', type: 'float64', shape: ['n'] },
  { name: 'i32', type: 'int32', shape: [1, 'n'] },
  { name: 'i64', type: 'int64', shape: [4] },
  { name: 'u8', type: 'uint8', shape: [2, 2] },
  { name: 'b', type: 'bool', shape: [3] },
];

export function typesSpec(): ModelSpec {
  return {
    inputs: TYPES_INPUTS,
    outputs: TYPES_INPUTS.map((v) => ({ ...v, name: `${v.name}_out` })),
    nodes: TYPES_INPUTS.map((v) => ({ op: 'Identity', name: `id_${v.name}`, inputs: [v.name], outputs: [`${v.name}_out`] })),
    opset: OPSET,
    irVersion: IR_VERSION,
    graphName: 'types',
  };
}

export function typesModel(): Uint8Array {
  return encodeModel(typesSpec());
}

/** float16 in (`h`, dynamic), float16 out (`h_out`, Identity) and float32 out (`f`, Cast). */
export function halfModel(): Uint8Array {
  return encodeModel({
    inputs: [{ name: 'h', type: 'float16', shape: ['n'] }],
    outputs: [{ name: 'h_out', type: 'float16', shape: ['n'] }, { name: 'f', type: 'float32', shape: ['n'] }],
    nodes: [{ op: 'Identity', inputs: ['h'], outputs: ['h_out'] }, { op: 'Cast', inputs: ['h'], outputs: ['f'], attrs: { to: 1 } }],
  });
}

/** string in (`s`, dynamic), string out (`u`, Identity) and the strings parsed as float32 (`f`, Cast). */
export function stringsModel(): Uint8Array {
  return encodeModel({
    inputs: [{ name: 's', type: 'string', shape: ['n'] }],
    outputs: [{ name: 'u', type: 'string', shape: ['n'] }, { name: 'f', type: 'float32', shape: ['n'] }],
    nodes: [{ op: 'Identity', inputs: ['s'], outputs: ['u'] }, { op: 'Cast', inputs: ['s'], outputs: ['f'], attrs: { to: 1 } }],
  });
}

// ---------------------------------------------------------------------------
// Conv model
// ---------------------------------------------------------------------------

/** The 3x3 kernel of `convModel`: (1..9)/45, row-major, so orientation mistakes show. */
export const CONV_KERNEL: Float32Array = Float32Array.from({ length: 9 }, (_, i) => (i + 1) / 45);
export const CONV_BIAS = 0.5;

/**
 * `img` float32 [1, 1, "h", "w"] → Conv(3x3, no padding, stride 1) + bias → `out` [1, 1, "oh", "ow"].
 * Valid only for h, w >= 3: a default profile that fills dynamic dims with 1 fails at run time.
 */
export function convSpec(): ModelSpec {
  return {
    inputs: [{ name: 'img', type: 'float32', shape: [1, 1, 'h', 'w'] }],
    outputs: [{ name: 'out', type: 'float32', shape: [1, 1, 'oh', 'ow'] }],
    nodes: [
      {
        op: 'Conv',
        name: 'conv',
        inputs: ['img', 'K', 'B'],
        outputs: ['out'],
        attrs: { kernel_shape: [3, 3], pads: [0, 0, 0, 0], strides: [1, 1] },
      },
    ],
    initializers: [
      { name: 'K', type: 'float32', dims: [1, 1, 3, 3], data: CONV_KERNEL },
      { name: 'B', type: 'float32', dims: [1], data: new Float32Array([CONV_BIAS]) },
    ],
    opset: OPSET,
    irVersion: IR_VERSION,
    graphName: 'conv',
  };
}

export function convModel(): Uint8Array {
  return encodeModel(convSpec());
}

// ---------------------------------------------------------------------------

/** Write model bytes to `path` (creating parent directories); returns the absolute path. */
export function writeModel(path: string, bytes: Uint8Array): string {
  const abs = resolve(path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, bytes);
  return abs;
}

// ---------------------------------------------------------------------------
// Slow model
// ---------------------------------------------------------------------------

export interface SlowOptions {
  /** Rows the input row is expanded to: the work grows with it. Default 1024. */
  rows?: number;
  /** Width of the row and of the square weight. Default 256. */
  width?: number;
  /** MatMuls in the chain, all with the same weight (a small file for much work). Default 8. */
  repeats?: number;
  seed?: number;
}

/**
 * A model that is small on disk but slow to run: `x` float32 [1, width] is expanded to
 * [rows, width], multiplied `repeats` times by one [width, width] weight, and averaged back to
 * `y` [1, width]. Work is 2·rows·width²·repeats flops (1024·256²·8·2 ≈ 1.1 GFLOP by default).
 */
export function slowSpec(opts: SlowOptions = {}): ModelSpec {
  const { rows = 1024, width = 256, repeats = 8, seed = 0 } = opts;
  const rand = mulberry32(seed);
  const nodes: NodeSpec[] = [{ op: 'Expand', name: 'expand', inputs: ['x', 'shape'], outputs: ['h0'] }];
  for (let i = 0; i < repeats; i++) nodes.push({ op: 'MatMul', name: `mm${i}`, inputs: [`h${i}`, 'W'], outputs: [`h${i + 1}`] });
  nodes.push({ op: 'ReduceMean', name: 'mean', inputs: [`h${repeats}`], outputs: ['y'], attrs: { axes: [0], keepdims: 1 } });
  return {
    inputs: [{ name: 'x', type: 'float32', shape: [1, width] }],
    outputs: [{ name: 'y', type: 'float32', shape: [1, width] }],
    nodes,
    initializers: [
      { name: 'shape', type: 'int64', dims: [2], data: BigInt64Array.from([BigInt(rows), BigInt(width)]) },
      { name: 'W', type: 'float32', dims: [width, width], data: keepingMagnitude(uniform(rand, width * width, 1), width) },
    ],
    opset: OPSET,
    irVersion: IR_VERSION,
    graphName: 'slow',
    docString: `slow rows=${rows} width=${width} repeats=${repeats} seed=${seed}`,
  };
}

/**
 * W (width x width, row-major) scaled so a row multiplied by it again and again keeps its
 * magnitude: divided by its growth a MatMul (the spectral radius, by power iteration in doubles),
 * so any number of repeats stays within a small factor of the input, far from 0 and from
 * Infinity. A chain that shrank (W uniform on ±1/sqrt(width): ~0.58x a MatMul) reached subnormal
 * floats past ~160 MatMuls, which some CPUs run ~100x slower: a 256-MatMul model took 6.7 s a run
 * on one Xeon against ~0.2-0.3 s elsewhere, and the tests sized on it timed out.
 */
function keepingMagnitude(w: Float32Array, width: number): Float32Array {
  let v = new Float64Array(width).fill(1);
  let next = new Float64Array(width);
  const STEPS = 200;
  let logGrowth = 0;
  for (let step = 0; step < STEPS; step++) {
    next.fill(0);
    for (let i = 0; i < width; i++) {
      const vi = v[i]!;
      for (let j = 0; j < width; j++) next[j]! += vi * w[i * width + j]!;
    }
    let norm = 0;
    for (let j = 0; j < width; j++) norm += next[j]! * next[j]!;
    norm = Math.sqrt(norm);
    // The first steps leave the start vector's own direction: counted from half way.
    if (step >= STEPS / 2) logGrowth += Math.log(norm);
    for (let j = 0; j < width; j++) next[j]! /= norm;
    [v, next] = [next, v];
  }
  const scale = Math.exp(-logGrowth / (STEPS / 2));
  return w.map((x) => x * scale);
}

export function slowModel(opts: SlowOptions = {}): Uint8Array {
  return encodeModel(slowSpec(opts));
}
