import { BruleeError, preview } from '../errors';
import { ARRAY_OF, type ElementType, type Tensor } from '../queue/wire';
import type { TensorSpec } from '../runtime/onnx';

/**
 * The Open Inference Protocol's (KServe v2) tensor vocabulary, shared by its REST and gRPC front
 * ends: datatype names, tensor metadata, and the raw form (little-endian, row-major, no padding)
 * that binary REST bodies and gRPC `raw_*_contents` carry.
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

/** Checks a request's shape: non-negative safe integers. @throws BruleeError INVALID_INPUT. */
export function checkShape(input: string, shape: readonly number[]): number[] {
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: shape ${preview(shape)} must be a list of non-negative integers`);
  }
  return [...shape];
}

/**
 * A tensor from its raw bytes. The bytes are copied into a fresh, aligned buffer (a Buffer's may
 * not be aligned for 8-byte elements). @throws BruleeError INVALID_INPUT when the byte count does
 * not match the shape.
 */
export function tensorFromRaw(input: string, type: ElementType, dims: number[], raw: Uint8Array): Tensor {
  const Ctor = ARRAY_OF[type];
  const count = dims.reduce((a, b) => a * b, 1);
  const want = count * Ctor.BYTES_PER_ELEMENT;
  if (raw.byteLength !== want) {
    throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: ${raw.byteLength} bytes of raw data, but ${type} with shape ${JSON.stringify(dims)} needs ${want} (${count} elements of ${Ctor.BYTES_PER_ELEMENT} bytes)`);
  }
  const data = new Ctor(count);
  new Uint8Array(data.buffer).set(raw);
  if (type === 'bool') {
    for (const b of data as Uint8Array) {
      if (b > 1) throw new BruleeError('INVALID_INPUT', `input ${preview(input)}: BOOL bytes must be 0 or 1, got ${b}`);
    }
  }
  return { type, dims, data };
}

/** A tensor's raw bytes (a view, no copy). */
export function rawOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
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
