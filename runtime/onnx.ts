import * as ort from 'onnxruntime-node';
import { BruleeError } from '../errors';
import type { Tensor } from '../queue/wire';

/**
 * The one small interface brulee has to ONNX (as onnxruntime's js packages split interface from
 * backend): load a model, run it, dispose it. Nothing else in brulee imports onnxruntime.
 */

/** One input or output of a model: its name, element type and dims (a string for a dynamic axis). */
export interface TensorSpec {
  name: string;
  /** onnxruntime's element type name (`float32`, `int64`, `bool`, `string`, `float16`, ...). */
  type: string;
  dims: Array<number | string>;
}

export interface Signature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface LoadedModel {
  readonly signature: Signature;
  /** Runs the model; `outputs` selects output names (all when absent). */
  run(inputs: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>>;
  dispose(): Promise<void>;
}

function specs(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => {
    if (!m.isTensor) return { name: m.name, type: 'non-tensor', dims: [] };
    return { name: m.name, type: m.type, dims: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : typeof d === 'string' && d !== '' ? d : '?')) };
  });
}

/**
 * Loads a model from a file path or bytes.
 * @throws BruleeError INVALID_MODEL with onnxruntime's own message when it cannot be loaded.
 */
export async function loadModel(source: string | Uint8Array): Promise<LoadedModel> {
  let session: ort.InferenceSession;
  try {
    session = typeof source === 'string' ? await ort.InferenceSession.create(source) : await ort.InferenceSession.create(source);
  } catch (e) {
    throw new BruleeError('INVALID_MODEL', `onnxruntime cannot load this model: ${withoutPaths(e instanceof Error ? e.message : String(e))}`);
  }
  const signature: Signature = { inputs: specs(session.inputMetadata), outputs: specs(session.outputMetadata) };
  return {
    signature,
    async run(inputs, outputs) {
      const feeds: Record<string, ort.Tensor> = {};
      let result: ort.InferenceSession.ReturnType;
      try {
        // Inside the try: a tensor onnxruntime refuses (a dim it cannot take) is bad input, not a bug.
        for (const [name, t] of Object.entries(inputs)) {
          feeds[name] = new ort.Tensor(t.type, t.data as ort.Tensor.DataType, t.dims);
        }
        result = outputs ? await session.run(feeds, outputs) : await session.run(feeds);
      } catch (e) {
        throw new BruleeError('INFERENCE_FAILED', `onnxruntime could not run the model on these inputs: ${withoutPaths(e instanceof Error ? e.message : String(e))}`);
      }
      const out: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(result)) {
        // A string tensor's data is string[], every other type's a typed array: the same shapes as Tensor.
        out[name] = { type: t.type, dims: [...t.dims], data: t.data } as Tensor;
      }
      return out;
    },
    async dispose() {
      await session.release();
    },
  };
}

/**
 * onnxruntime's message without the server's file paths (`Load model from /srv/data/…/model.onnx
 * failed: …` would tell a client where the data lives): every absolute path becomes `<file>`.
 */
export function withoutPaths(message: string): string {
  return message.replace(/(^|[\s'"(=])\/[^\s'"):,]+/g, '$1<file>');
}
