import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tensor } from '../../queue/wire';
import { artifactLayout, MAPPED_FILE_NAME } from '../../runtime/mapped';
import { deriveOptimized, loadModel, type ArtifactForm, type LoadedModel } from '../../runtime/onnx';
import { SessionHost } from '../../runtime/session-host';
import { floats, ort, readModel, REAL_MODELS } from '../support/models';

const dir = mkdtempSync(join(tmpdir(), 'brulee-forms-'));
const host = new SessionHost(1);
beforeAll(() => host.start());
afterAll(async () => {
  await host.close();
  rmSync(dir, { recursive: true, force: true });
});

const image = (h: number, w: number, seed: number): Record<string, Tensor> => ({ x: { type: 'float32', dims: [1, 3, h, w], data: Float32Array.from(floats(3 * h * w, seed)) } });
/** Each real model and inputs of it (two sizes where its axes are dynamic). */
const MODELS: Array<{ name: keyof typeof REAL_MODELS; inputs: Array<Record<string, Tensor>> }> = [
  { name: 'ocrCls', inputs: [image(48, 192, 1), image(48, 192, 2)] },
  { name: 'ocrDet', inputs: [image(64, 64, 1), image(160, 320, 2)] },
  { name: 'ocrRec', inputs: [image(48, 96, 1), image(48, 320, 2)] },
  {
    name: 'sileroVad',
    inputs: [1, 2].map((s) => ({
      input: { type: 'float32', dims: [1, 512], data: Float32Array.from(floats(512, s)) },
      state: { type: 'float32', dims: [2, 1, 128], data: Float32Array.from(floats(256, s + 1)) },
      sr: { type: 'int64', dims: [], data: BigInt64Array.of(16000n) },
    })),
  },
];

const bits = (t: { data: unknown }) => Buffer.from((t.data as Float32Array).buffer, (t.data as Float32Array).byteOffset, (t.data as Float32Array).byteLength).toString('hex');

/**
 * Registration writes a model's artifact in the best form that loads and computes the original's
 * bits (runtime/onnx.ts `deriveOptimized`, checked in a fresh process by functions/profile.ts):
 * mapped, else onnxruntime's ORT format, else optimized ONNX. Each form it can fall back to must
 * load from its path as a node loads it (its own file, on the main thread or in the session host):
 * a note in the README had PP-OCR rec's ORT format failing onnxruntime's "ORT model verification"
 * there, which is what onnxruntime says of an ORT file that is not whole.
 */
describe('every artifact form of the real models loads from its path and gives the original bits', () => {
  for (const m of MODELS) {
    it(m.name, async () => {
      const original = await ort.InferenceSession.create(readModel(REAL_MODELS[m.name]));
      const want = [];
      for (const inputs of m.inputs) {
        const feeds = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, new ort.Tensor(t.type, t.data as Float32Array, t.dims)]));
        want.push(Object.fromEntries(Object.entries(await original.run(feeds)).map(([k, t]) => [k, bits(t)])));
      }
      await original.release();
      const written: ArtifactForm[] = [];
      for (const form of ['mapped', 'ort', 'onnx'] as const) {
        mkdirSync(join(dir, `${m.name}-${form}`));
        const path = join(dir, `${m.name}-${form}`, MAPPED_FILE_NAME);
        const derived = await deriveOptimized(REAL_MODELS[m.name], path, { form });
        if (form !== 'mapped') expect(derived.form).toBe(form);
        written.push(derived.form);
        expect(artifactLayout(path).form).toBe(derived.form);
        for (const where of ['main thread', 'session host'] as const) {
          const model: LoadedModel = await loadModel(path, { preOptimized: true, ...(where === 'session host' ? { host } : {}) });
          try {
            for (const [i, inputs] of m.inputs.entries()) {
              const got = await model.run(inputs);
              expect(Object.fromEntries(Object.entries(got).map(([k, t]) => [k, bits(t)])), `${derived.form} form, ${where}, input ${i}`).toEqual(want[i]);
            }
          } finally {
            await model.dispose();
          }
        }
      }
      // PP-OCR rec has weights over 1 MiB, det 4.6 MB in tensors of a page or more (`worthMapping`):
      // mapped; the others fall back to the ORT format at once.
      expect(written).toEqual([m.name === 'ocrRec' || m.name === 'ocrDet' ? 'mapped' : 'ort', 'ort', 'onnx']);
    });
  }
});
