import type { AdmissionTicket } from './admission';
import { tensorBytes, tensorFromBytes, type ElementType, type Tensor } from './tensor';

/**
 * What crosses the queue: invocation jobs and their results. Tensors travel as their
 * little-endian bytes (see `WireTensors`; strings length-prefixed, `tensorBytes`), so values arrive bit for bit as sent (no float
 * formatting, no int64 precision loss), and a large tensor costs its bytes, no more.
 */

export { ARRAY_OF, ELEMENT_TYPES, NUMERIC_TYPES, type ElementType, type NumericTensor, type NumericType, type StringTensor, type Tensor, type TypedArray } from './tensor';

/** One tensor of a `WireTensors`: its bytes are `blob[offset, offset + byteLength)`. */
export interface WireTensor {
  type: ElementType;
  dims: number[];
  offset: number;
  byteLength: number;
}

/**
 * A job's input tensors as they cross Redis: their descriptions travel in the job's JSON, their
 * bytes in one blob of raw little-endian bytes, which is either inline (an inline blob costs no
 * extra round trip: raw after the JSON in a sync job's frame, `queue/lane.ts`; base64 in a BullMQ
 * job, whose data is JSON) or stored as bytes under its own Redis key (ioredis carries Buffers).
 * Outputs come back as raw bytes (`InvokeReply`).
 */
export interface WireTensors {
  tensors: Record<string, WireTensor>;
  /** The blob, base64, when it is at most `INLINE_BYTES` (BullMQ jobs). */
  b64?: string;
  /** Else the Redis key that holds the blob. */
  key?: string;
}

/**
 * Blobs up to this many bytes travel inline in a BullMQ job: below it, base64 in the job costs less
 * than the extra Redis command and round trip a key of its own costs (measured in bench/invoke.bench.ts).
 */
export const INLINE_BYTES = 4096;

/**
 * Blobs up to this many bytes travel inline in a sync job's frame, raw. The frame goes to Redis
 * twice (queued, then named again to leave the active list with the answer), against the node's
 * extra round trip to fetch a key of its own: PP-OCR cls's 110 KB input inline saves that round
 * trip on every call (`bench:rest`).
 */
export const LANE_INLINE_BYTES = 256 * 1024;

/**
 * JSON and raw bytes in one binary string, as answers and sync jobs cross Redis: a 4-byte
 * little-endian length, the JSON of `head`, spaces up to an 8-byte boundary (so the bytes after it
 * stay aligned for typed-array views), then `blob`.
 */
export function encodeFrame(head: unknown, blob?: Uint8Array | BlobWriter): Buffer {
  const json = Buffer.from(JSON.stringify(head));
  const start = (4 + json.byteLength + 7) & ~7;
  const out = Buffer.allocUnsafe(start + (blob?.byteLength ?? 0));
  out.writeUInt32LE(json.byteLength, 0);
  json.copy(out, 4);
  out.fill(0x20, 4 + json.byteLength, start);
  if (blob instanceof Uint8Array) out.set(blob, start);
  else blob?.writeTo(out, start);
  return out;
}

/** A blob not yet copied anywhere: `byteLength` bytes that `writeTo` writes into `out` at `at` (every byte of them). */
export interface BlobWriter {
  readonly byteLength: number;
  writeTo(out: Uint8Array, at: number): void;
}

/** The inverse of `encodeFrame`; the blob is a view of `buf`, absent when empty. */
export function decodeFrame<T>(buf: Buffer): { head: T; blob?: Buffer } {
  const len = buf.readUInt32LE(0);
  const head = JSON.parse(buf.toString('utf8', 4, 4 + len)) as T;
  const start = (4 + len + 7) & ~7;
  return buf.byteLength > start ? { head, blob: buf.subarray(start) } : { head };
}

/** Lays tensors out in one blob (each at an 8-byte aligned offset). */
export function packTensors(ts: Record<string, Tensor>): { tensors: Record<string, WireTensor>; blob: Buffer } {
  const { tensors, blob: layout } = layoutTensors(ts);
  const blob = Buffer.allocUnsafe(layout.byteLength);
  layout.writeTo(blob, 0);
  return { tensors, blob };
}

/**
 * `packTensors` without the copy: where each tensor lies, and a writer of the blob, so that an
 * answer's frame takes the tensors' bytes straight from them (`encodeFrame`), one copy less on
 * a node (issue 12 §4). The tensors must stay as they are until it has written.
 */
export function layoutTensors(ts: Record<string, Tensor>): { tensors: Record<string, WireTensor>; blob: BlobWriter } {
  const tensors: Record<string, WireTensor> = {};
  const bytes: Uint8Array[] = [];
  const at: number[] = [];
  let size = 0;
  for (const [name, t] of Object.entries(ts)) {
    const offset = (size + 7) & ~7;
    const b = tensorBytes(t);
    bytes.push(b);
    at.push(offset);
    tensors[name] = { type: t.type, dims: t.dims, offset, byteLength: b.byteLength };
    size = offset + b.byteLength;
  }
  return {
    tensors,
    blob: {
      byteLength: size,
      writeTo(out, start) {
        let end = 0;
        for (const [i, b] of bytes.entries()) {
          out.fill(0, start + end, start + at[i]!); // the alignment padding
          out.set(b, start + at[i]!);
          end = at[i]! + b.byteLength;
        }
      },
    },
  };
}

/** The tensors of a blob, bit for bit as packed (viewing the blob where aligned: `tensorFromBytes`). */
export function unpackTensors(tensors: Record<string, WireTensor>, blob: Uint8Array): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, w] of Object.entries(tensors)) {
    if (w.offset + w.byteLength > blob.byteLength) throw new RangeError(`tensor "${name}" lies past the end of its ${blob.byteLength}-byte blob`);
    out[name] = tensorFromBytes(w.type, w.dims, blob.subarray(w.offset, w.offset + w.byteLength), 'a queued tensor');
  }
  return out;
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
  /** `sizeBytes` is the operator's (`memoryBytes`): a node charges it as is, not what it measures. */
  sizeFixed?: boolean;
  loadMs: number;
  execMs: number;
  pinned: boolean;
  /** Session options the function asks for (brulee's defaults for the rest). */
  session?: { threads?: number; arena?: boolean };
  /**
   * Its pre-optimized artifact: `key` names what it was derived for (`artifactKey`: onnxruntime
   * version, CPU); a node whose own key differs loads the original.
   */
  artifact?: { key: string; sha256: string };
  /** Dynamic batching (`runtime/batcher.ts`), when the function turned it on. */
  batch?: { maxBatch: number; maxDelayMs: number };
  /**
   * When the function's registration was made (its `createdAt`, kept across versions): a name
   * deleted and registered again is a later one, whose counts start afresh on a node too.
   */
  registered?: string;
}

export interface InvokeJob {
  model: ModelRef;
  /** The inputs; a node deletes their key once the job has run. */
  inputs: WireTensors;
  /** Output names to compute; all when absent. */
  outputs?: string[];
  /** When the gateway accepted the request, for queue time (epoch ms; on the Redis clock once enqueued, see `queue/clock.ts`). */
  acceptedAt: number;
  /** When the caller stops waiting (epoch ms on the Redis clock): a node skips a job it reaches later. */
  deadline: number;
  /** Its place in admission's counts: the node gives it back with the answer (queue/admission.ts). */
  admission?: AdmissionTicket;
}

export interface Timings {
  queueMs: number;
  loadMs: number;
  execMs: number;
}

/**
 * A job's answer (see `queue/replies.ts`). The outputs' bytes travel as the answer's binary blob
 * (`encodeAnswer`), not in its JSON: an answer goes to its gateway's reply stream (trimmed as it
 * is read) or an async call's result key, raw bytes either way.
 */
export interface InvokeReply {
  /** Where each output lies in the answer's blob. */
  outputs: { tensors: Record<string, WireTensor> };
  coldStart: boolean;
  node: string;
  timings: Timings;
}

/** An invocation's result as the dispatcher hands it back: the outputs decoded. */
export interface InvokeResult {
  outputs: Record<string, Tensor>;
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
  /** `deleted`: the function is gone, and nodes keep nothing of it (an `unload` keeps what they measured of its models). */
  cause: 'unload' | 'retired' | 'deleted';
  reason: string;
  /** With `deleted`: the bytes (sha256) the registry removed from the model store, which nodes drop from their caches. */
  sha256s?: string[];
}

export const JOB = { invoke: 'invoke', load: 'load', unload: 'unload' } as const;
