import { tensorBytes, tensorFromBytes, type ElementType, type Tensor } from './tensor';

/**
 * What crosses the queue: invocation jobs and their results. Tensors travel as base64 of their
 * little-endian bytes (`tensorBytes`: strings length-prefixed), so values arrive bit for bit as
 * sent (no float formatting, no int64 precision loss) and a large tensor costs a third more than
 * its bytes, not ten times.
 */

export { ARRAY_OF, ELEMENT_TYPES, NUMERIC_TYPES, type ElementType, type NumericTensor, type NumericType, type StringTensor, type Tensor, type TypedArray } from './tensor';

export interface WireTensor {
  type: ElementType;
  dims: number[];
  b64: string;
}

export function toWire(t: Tensor): WireTensor {
  const b = tensorBytes(t);
  return { type: t.type, dims: t.dims, b64: Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64') };
}

export function fromWire(w: WireTensor): Tensor {
  // tensorFromBytes copies when the bytes are not aligned for the type (Buffer pools are not).
  return tensorFromBytes(w.type, w.dims, Buffer.from(w.b64, 'base64'), 'a queued tensor');
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
  /** When the gateway accepted the request, for queue time (epoch ms; on the Redis clock once enqueued, see `queue/clock.ts`). */
  acceptedAt: number;
  /** When the caller stops waiting (epoch ms on the Redis clock): a node skips a job it reaches later. */
  deadline: number;
}

export interface Timings {
  queueMs: number;
  loadMs: number;
  execMs: number;
}

export interface InvokeResult {
  outputs: Record<string, WireTensor>;
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
