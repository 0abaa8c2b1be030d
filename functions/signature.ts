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
