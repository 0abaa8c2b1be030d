/**
 * What crosses the queue: invocation jobs and their results. Tensors travel as base64 of their
 * little-endian bytes, so values arrive bit for bit as sent (no float formatting, no int64
 * precision loss) and a large tensor costs a third more than its bytes, not ten times.
 */

export const ELEMENT_TYPES = ['float32', 'float64', 'float16', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'bool'] as const;
export type ElementType = (typeof ELEMENT_TYPES)[number];

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** The typed array that holds each element type (bool as one byte, float16 as its 16-bit pattern, as onnxruntime does). */
export const ARRAY_OF: Record<ElementType, { new (n: number): TypedArray; BYTES_PER_ELEMENT: number }> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array, bool: Uint8Array,
};

export interface Tensor {
  type: ElementType;
  dims: number[];
  data: TypedArray;
}

export interface WireTensor {
  type: ElementType;
  dims: number[];
  b64: string;
}

export function toWire(t: Tensor): WireTensor {
  const d = t.data;
  return { type: t.type, dims: t.dims, b64: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
}

export function fromWire(w: WireTensor): Tensor {
  const buf = Buffer.from(w.b64, 'base64');
  const Ctor = ARRAY_OF[w.type];
  // Copy into a fresh, aligned buffer: Buffer pools are not aligned for 8-byte element types.
  const data = new Ctor(buf.byteLength / Ctor.BYTES_PER_ELEMENT);
  new Uint8Array(data.buffer).set(buf);
  return { type: w.type, dims: w.dims, data };
}

export function mapValues<A, B>(o: Record<string, A>, f: (a: A) => B): Record<string, B> {
  const out: Record<string, B> = {};
  for (const [k, v] of Object.entries(o)) out[k] = f(v);
  return out;
}

/** What a node needs to load and account for a model. */
export interface ModelRef {
  fn: string;
  /** sha256 of the ONNX bytes: the content-addressed store key and the cache key's version. */
  sha256: string;
  version: number;
  sizeBytes: number;
  loadMs: number;
  execMs: number;
  pinned: boolean;
}

export interface InvokeJob {
  model: ModelRef;
  inputs: Record<string, WireTensor>;
  /** Output names to compute; all when absent. */
  outputs?: string[];
  /** When the gateway accepted the request (epoch ms), for queue time. */
  acceptedAt: number;
  /** When the caller stops waiting (epoch ms): a node skips a job it reaches later. */
  deadline: number;
  /** How long a large result parked in Redis is kept, s (see `InvokeResult.outputsKey`). */
  resultTtlS: number;
}

export interface Timings {
  queueMs: number;
  loadMs: number;
  execMs: number;
}

export interface InvokeResult {
  /** Inline outputs; empty when they were parked under `outputsKey`. */
  outputs: Record<string, WireTensor>;
  /**
   * Large outputs are parked under this Redis key (with a TTL) instead: a job's return value is
   * copied into the queue's event stream, which keeps thousands of entries.
   */
  outputsKey?: string;
  coldStart: boolean;
  node: string;
  timings: Timings;
}

/** Node commands that travel on the node's queue, beside invocations. */
export interface LoadJob {
  model: ModelRef;
}
export interface UnloadJob {
  fn: string;
  /** Drop only versions older than this one (retiring after a new version). */
  belowVersion?: number;
  cause: 'unload' | 'retired';
  reason: string;
}

export const JOB = { invoke: 'invoke', load: 'load', unload: 'unload' } as const;
