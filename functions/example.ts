import type { Signature } from '../runtime/onnx';

/** A tensor in the HTTP API's JSON form. */
export interface ExampleTensor {
  type: string;
  dims: number[];
  data: Array<number | boolean | string>;
}

const FLOATS = new Set(['float16', 'float32', 'float64']);

/**
 * A valid input for a signature, as the HTTP API writes it: dynamic dims take the dims the
 * profiler ran with (`profiledDims`, known to work) or 1; floats are a fixed ramp in [-0.5, 0.5),
 * integers 0, bools false. Used by `brulee invoke --example` and the dashboard's "try it" form.
 */
export function exampleInputs(signature: Signature, profiledDims: Record<string, number[]> = {}): Record<string, ExampleTensor> {
  const out: Record<string, ExampleTensor> = {};
  for (const spec of signature.inputs) {
    const dims = profiledDims[spec.name] ?? spec.dims.map((d) => (typeof d === 'number' ? d : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    const data: Array<number | boolean | string> = new Array<number | boolean | string>(n);
    for (let i = 0; i < n; i++) {
      data[i] = FLOATS.has(spec.type) ? ((i * 7919) % 1000) / 1000 - 0.5 : spec.type === 'bool' ? false : spec.type === 'string' ? '' : 0;
    }
    out[spec.name] = { type: spec.type, dims, data };
  }
  return out;
}
