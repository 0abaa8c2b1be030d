import { BruleeError, preview } from '../errors';
import { ELEMENT_TYPES, isElementType, type Tensor } from '../queue/tensor';
import type { Signature, TensorSpec } from '../runtime/onnx';

export type { Signature, TensorSpec } from '../runtime/onnx';

/**
 * The signature check: do decoded tensors fit the model's inputs? It is one step, apart from
 * decoding, so every protocol (v1 JSON, v2 JSON and binary, gRPC) gets the same checks and
 * messages. A mismatch is a 422 INVALID_INPUT that names the input and says what was expected.
 */

export { isElementType } from '../queue/tensor';

function invalid(message: string): BruleeError {
  return new BruleeError('INVALID_INPUT', message);
}

/** An input named twice in one request (every front end: v1, v2 REST, gRPC). */
export function inputGivenTwice(name: string): BruleeError {
  return new BruleeError('DUPLICATE_INPUT', `input ${preview(name)} is given twice`);
}

/** `[1, "batch", 3]`, as messages show dims. */
export function describeDims(dims: ReadonlyArray<number | string>): string {
  return `[${dims.map((d) => (typeof d === 'number' ? d : `"${d}"`)).join(', ')}]`;
}

/** Dims a caller can send for a spec: its fixed dims, 1 for each dynamic one. */
export function exampleDims(spec: TensorSpec): number[] {
  return spec.dims.map((d) => (typeof d === 'number' && d >= 0 ? d : 1));
}

/** Checks one decoded tensor against its spec: element type, rank, fixed dims, element count. */
export function checkInput(spec: TensorSpec, t: Tensor): void {
  const name = spec.name;
  if (!isElementType(spec.type)) {
    throw invalid(`input "${name}" has element type ${spec.type}, which brulee cannot carry (supported: ${ELEMENT_TYPES.join(', ')})`);
  }
  if (t.type !== spec.type) {
    throw invalid(`input "${name}": type ${preview(t.type)} does not match the model, which expects ${spec.type}`);
  }
  const dims = t.dims;
  if (dims.length !== spec.dims.length) {
    throw invalid(`input "${name}": rank ${dims.length} (dims ${preview(dims)}) does not match the model, which expects rank ${spec.dims.length}: ${describeDims(spec.dims)}`);
  }
  spec.dims.forEach((want, i) => {
    if (typeof want === 'number' && want >= 0 && dims[i] !== want) {
      throw invalid(`input "${name}": dim ${i} is ${dims[i]}, but the model fixes it at ${want} (expected ${describeDims(spec.dims)})`);
    }
  });
  const count = dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) {
    throw invalid(`input "${name}": data has ${t.data.length} elements, but dims ${preview(dims)} need ${count}`);
  }
}

/** Checks a whole input set: every model input present, no unknown names, each input valid. */
export function checkInputs(sig: Signature, inputs: Record<string, Tensor>): void {
  const expected = sig.inputs.map((i) => i.name);
  const unknown = Object.keys(inputs).filter((k) => !expected.includes(k));
  if (unknown.length > 0) {
    const named = unknown.slice(0, 5).map((u) => preview(u, 60)).join(', ') + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : '');
    throw invalid(`unknown input ${named}: the model's inputs are ${expected.map((e) => `"${e}"`).join(', ')}`);
  }
  const missing = expected.filter((e) => !(e in inputs));
  if (missing.length > 0) {
    throw invalid(`missing input ${missing.map((m) => `"${m}"`).join(', ')}: the model needs ${sig.inputs.map((i) => `"${i.name}" (${i.type} ${describeDims(i.dims)})`).join(', ')}`);
  }
  for (const spec of sig.inputs) checkInput(spec, inputs[spec.name]!);
}

/**
 * What is wrong with dims asked to profile a model with (`?profileDims=`), or null: each must name
 * one of its inputs, with its rank and its fixed dims. Dims that cannot fit would only profile on
 * other dims than asked (an unknown name: the defaults) or fail the profiling run, with a 201.
 */
export function profileDimsError(sig: Signature, dims: Record<string, number[]>): string | null {
  for (const [name, d] of Object.entries(dims)) {
    const spec = sig.inputs.find((i) => i.name === name);
    const shown = `${name}:${d.join('x')}`;
    if (!spec) return `profileDims names input ${preview(name, 60)}, which the model does not have; its inputs are ${sig.inputs.map((i) => `"${i.name}" ${describeDims(i.dims)}`).join(', ')}`;
    if (d.length !== spec.dims.length) return `profileDims gives "${shown}" (rank ${d.length}), but input "${name}" has rank ${spec.dims.length}: ${describeDims(spec.dims)}`;
    const fixed = spec.dims.findIndex((want, i) => typeof want === 'number' && want >= 0 && d[i] !== want);
    if (fixed >= 0) return `profileDims gives "${shown}", but input "${name}" fixes dim ${fixed} at ${spec.dims[fixed]}: ${describeDims(spec.dims)}`;
  }
  return null;
}
