import { BruleeError, preview } from '../errors';
import { ARRAY_OF, elementCount, tensorBytes, tensorFromBytes, type ElementType, type Tensor } from '../queue/tensor';
import type { TensorSpec } from '../runtime/onnx';

/**
 * The Open Inference Protocol's (KServe v2) tensor vocabulary, shared by its REST and gRPC front
 * ends: datatype names, tensor metadata, and the raw form (little-endian, row-major, no padding)
 * that binary REST bodies and gRPC `raw_*_contents` carry: BOOL one byte each, FP16 and BF16 two
 * bytes each, BYTES as elements each a 4-byte little-endian length then its bytes (UTF-8 text:
 * onnxruntime-node holds string tensors as JavaScript strings).
 *
 * onnxruntime-node has no bfloat16 tensors, so BF16 data is widened to float32 on the way in
 * (exactly: every bfloat16 value is a float32) and feeds a float32 model input, as tritonclient
 * itself holds BF16 in float32 numpy arrays. No model output is BF16.
 */

/** brulee's element type → the protocol's datatype. */
export const V2_DATATYPE: Record<string, string> = {
  bool: 'BOOL', uint8: 'UINT8', uint16: 'UINT16', uint32: 'UINT32', uint64: 'UINT64',
  int8: 'INT8', int16: 'INT16', int32: 'INT32', int64: 'INT64',
  float16: 'FP16', float32: 'FP32', float64: 'FP64', string: 'BYTES',
};

/** The protocol's datatype → brulee's element type, for the datatypes brulee carries. */
export const FROM_V2_DATATYPE: Record<string, ElementType> = {
  BOOL: 'bool', UINT8: 'uint8', UINT16: 'uint16', UINT32: 'uint32', UINT64: 'uint64',
  INT8: 'int8', INT16: 'int16', INT32: 'int32', INT64: 'int64', FP16: 'float16', FP32: 'float32', FP64: 'float64',
  BYTES: 'string',
};

/** Bytes per element of each datatype the raw form carries; BYTES elements vary. */
const RAW_SIZE: Record<string, number> = {
  BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8,
  FP16: 2, FP32: 4, FP64: 8, BF16: 2,
};

/** The element type of a request's datatype. @throws BruleeError INVALID_INPUT naming the input. */
export function elementTypeOf(input: string, datatype: string): ElementType {
  const type = FROM_V2_DATATYPE[datatype];
  if (!type) {
    throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: datatype ${preview(datatype)} is not supported; use one of ${Object.keys(FROM_V2_DATATYPE).join(', ')}`);
  }
  return type;
}

/** A model input or output as the protocol describes it: dynamic dims are -1. */
export function v2TensorMetadata(t: TensorSpec): { name: string; datatype: string; shape: number[] } {
  return {
    name: t.name,
    datatype: V2_DATATYPE[t.type] ?? t.type.toUpperCase(),
    shape: t.dims.map((d) => (typeof d === 'number' ? d : -1)),
  };
}

/**
 * Checks a request's shape: non-negative safe integers whose product (zero dims aside) is a safe
 * integer too (onnxruntime sizes tensors in int64). @throws BruleeError INVALID_INPUT.
 */
export function checkShape(input: string, shape: readonly number[]): number[] {
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: shape ${preview(shape)} must be a list of non-negative integers`);
  }
  if (!Number.isSafeInteger(shape.reduce((a, b) => (b === 0 ? a : a * b), 1))) {
    throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: shape ${preview(shape)} describes more than 2^53 elements`);
  }
  return [...shape];
}

/**
 * A tensor from its raw bytes, for an element type (BYTES: `string`). Numeric bytes are viewed,
 * not copied, when aligned for the type, else copied into a fresh buffer.
 * @throws BruleeError INVALID_INPUT when the byte count does not match the shape, a BOOL byte is
 * not 0 or 1, or BYTES elements are malformed or not UTF-8.
 */
export function tensorFromRaw(input: string, type: ElementType, dims: number[], raw: Uint8Array): Tensor {
  if (type !== 'string') {
    const size = ARRAY_OF[type].BYTES_PER_ELEMENT;
    const count = elementCount(dims);
    if (raw.byteLength !== count * size) {
      throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: ${raw.byteLength} bytes of raw data, but ${type} with shape ${JSON.stringify(dims)} needs ${count * size} (${count} elements of ${size} bytes)`);
    }
  }
  // The name for tensorFromBytes's errors, which only strings can still hit (the length was checked
  // above): built per call, it was ~1 % of a loaded server's CPU.
  const t = tensorFromBytes(type, dims, raw, type === 'string' ? `input ${preview(input)} (${V2_DATATYPE[type] ?? type} ${JSON.stringify(dims)})` : undefined);
  if (t.type === 'bool') {
    for (const b of t.data as Uint8Array) {
      if (b > 1) throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: BOOL bytes must be 0 or 1, got ${b}`);
    }
  }
  return t;
}

/**
 * A tensor from its raw bytes, by the request's datatype: what binary REST bodies and gRPC
 * `raw_input_contents` carry. BF16 is widened to float32.
 * @throws BruleeError INVALID_INPUT as `tensorFromRaw`, or for an unknown datatype.
 */
export function decodeRaw(input: string, datatype: string, shape: readonly number[], raw: Uint8Array): Tensor {
  const dims = checkShape(input, shape);
  if (datatype === 'BF16') {
    const want = elementCount(dims) * 2;
    if (raw.byteLength !== want) {
      throw new BruleeError('INVALID_INPUT', `input ${preview(input)} (BF16 ${JSON.stringify(dims)}): ${raw.byteLength} bytes of data, but the shape takes ${want}`);
    }
    return { type: 'float32', dims, data: bf16ToFloat32(tensorFromBytes('uint16', dims, raw).data as Uint16Array) };
  }
  return tensorFromRaw(input, elementTypeOf(input, datatype), dims, raw);
}

/** Requested-output parameters of the protocol that change what an output holds, which brulee does not do. */
const UNSUPPORTED_OUTPUT_PARAMETERS: Record<string, string> = {
  classification: "classification (Triton's top-k class labels) is not supported; ask for the output itself and take the top classes from it",
  shared_memory_region: 'shared memory outputs are not supported; ask for the output without shared_memory_region and read it from the answer',
};

/**
 * Refuses a requested output whose parameters ask for what brulee does not do (REST and gRPC
 * alike): answered as if they were not there, a client that asked for top-k labels or for an
 * output in shared memory got the plain tensor in the answer instead, with a 200.
 */
export function checkRequestedOutput(name: string, parameters: Record<string, unknown> | null | undefined): void {
  for (const key of Object.keys(parameters ?? {})) {
    const why = UNSUPPORTED_OUTPUT_PARAMETERS[key];
    if (why) throw new BruleeError('BAD_REQUEST', `output ${preview(name)}: ${why}`);
  }
}

/**
 * The outputs a v2 request asks for (REST JSON, binary, gRPC), each checked (checkRequestedOutput)
 * and each named once: a name asked twice is answered once, at its first place and with its first
 * parameters, as Triton does (its requested outputs are a set: InferenceRequest::
 * AddOriginalRequestedOutput in triton-inference-server/core). Answered twice, a tritonclient
 * reading outputs by position would take the second copy for the next output.
 */
export function requestedOutputs<O extends { name: string; parameters?: Record<string, unknown> | null | undefined }>(outputs: readonly O[]): O[] {
  const seen = new Set<string>();
  return outputs.filter((o) => {
    checkRequestedOutput(o.name, o.parameters);
    if (seen.has(o.name)) return false;
    seen.add(o.name);
    return true;
  });
}

/** A tensor's raw bytes: a view of its memory (no copy), or the length-prefixed form for strings. */
export function rawOf(t: Tensor): Uint8Array {
  return tensorBytes(t);
}

/** Bytes per element of a datatype in the raw form; undefined for BYTES (elements vary) and unknown names. */
export function rawElementSize(datatype: string): number | undefined {
  return RAW_SIZE[datatype];
}

/** bfloat16 bit patterns to float32, exactly (a bfloat16 is the high half of a float32). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}

/** float32 to bfloat16 bit patterns, rounding to nearest even (NaN stays NaN). */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = u[i]!;
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Triton's `DataType` enum name of each element type. */
const TRITON_TYPE: Record<string, string> = {
  bool: 'TYPE_BOOL', uint8: 'TYPE_UINT8', uint16: 'TYPE_UINT16', uint32: 'TYPE_UINT32', uint64: 'TYPE_UINT64',
  int8: 'TYPE_INT8', int16: 'TYPE_INT16', int32: 'TYPE_INT32', int64: 'TYPE_INT64',
  float16: 'TYPE_FP16', float32: 'TYPE_FP32', float64: 'TYPE_FP64', string: 'TYPE_STRING',
};

/**
 * A model's configuration in Triton's shape (what tritonclient's `get_model_config` and
 * perf_analyzer read), derived from its signature. `max_batch_size` is 0: dims are the model's
 * full dims, batch axis included, as onnxruntime reports them (-1 for dynamic).
 */
export function tritonModelConfig(name: string, sig: { inputs: TensorSpec[]; outputs: TensorSpec[] }) {
  const io = (t: TensorSpec) => ({
    name: t.name,
    data_type: TRITON_TYPE[t.type] ?? 'TYPE_INVALID',
    dims: t.dims.map((d) => (typeof d === 'number' ? d : -1)),
  });
  return { name, platform: 'onnxruntime_onnx', backend: 'onnxruntime', max_batch_size: 0, input: sig.inputs.map(io), output: sig.outputs.map(io) };
}
