import { BruleeError } from '../errors';

/**
 * brulee's one tensor type, and tensors as raw bytes. A numeric tensor holds a typed array (bool as
 * one byte per element, float16 as its 16-bit patterns, as onnxruntime-node does); a string tensor
 * (onnxruntime's `string`, the protocol's BYTES) holds JavaScript strings. Every protocol and the
 * queue use the same byte form: little-endian elements, and for strings each element as a 4-byte
 * little-endian length followed by its UTF-8 bytes (the KServe/Triton BYTES serialization).
 */

export const NUMERIC_TYPES = ['float32', 'float64', 'float16', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'bool'] as const;
export type NumericType = (typeof NUMERIC_TYPES)[number];
export const ELEMENT_TYPES = [...NUMERIC_TYPES, 'string'] as const;
export type ElementType = (typeof ELEMENT_TYPES)[number];

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

export interface TypedArrayCtor {
  new (n: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
}

/** The typed array that holds each numeric element type. */
export const ARRAY_OF: Record<NumericType, TypedArrayCtor> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array, bool: Uint8Array,
};

export interface NumericTensor {
  type: NumericType;
  dims: number[];
  data: TypedArray;
}

export interface StringTensor {
  type: 'string';
  dims: number[];
  data: string[];
}

export type Tensor = NumericTensor | StringTensor;

export function isNumericType(t: string): t is NumericType {
  return (NUMERIC_TYPES as readonly string[]).includes(t);
}

export function isElementType(t: string): t is ElementType {
  return (ELEMENT_TYPES as readonly string[]).includes(t);
}

/** Elements a shape holds. */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('brulee needs a little-endian host: tensor bytes are little-endian on the wire');
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function invalid(message: string): BruleeError {
  return new BruleeError('INVALID_INPUT', message);
}

/** Strings as BYTES elements: each a 4-byte little-endian length, then its UTF-8 bytes. */
export function encodeStrings(strings: readonly string[]): Uint8Array {
  const parts = strings.map((s) => utf8.encode(s));
  let total = 0;
  for (const p of parts) total += 4 + p.byteLength;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setUint32(at, p.byteLength, true);
    out.set(p, at + 4);
    at += 4 + p.byteLength;
  }
  return out;
}

/**
 * BYTES elements back to strings. `count`, when given, is how many elements there must be.
 * @throws BruleeError INVALID_INPUT naming `what` when a length runs past the end, the count is
 * wrong, or an element is not UTF-8 (onnxruntime-node holds string tensors as JavaScript strings).
 */
export function decodeStrings(bytes: Uint8Array, count?: number, what = 'BYTES data'): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  let at = 0;
  while (at < bytes.byteLength) {
    if (at + 4 > bytes.byteLength) throw invalid(`${what}: element ${out.length} has a truncated 4-byte length prefix (${bytes.byteLength - at} bytes left)`);
    const len = view.getUint32(at, true);
    at += 4;
    if (at + len > bytes.byteLength) throw invalid(`${what}: element ${out.length} says ${len} bytes, but only ${bytes.byteLength - at} remain`);
    try {
      out.push(strictUtf8.decode(bytes.subarray(at, at + len)));
    } catch {
      throw invalid(`${what}: element ${out.length} is not valid UTF-8; brulee carries BYTES as text (onnxruntime string tensors)`);
    }
    at += len;
    if (count !== undefined && out.length > count) break;
  }
  if (count !== undefined && out.length !== count) {
    throw invalid(`${what}: holds ${out.length > count ? `more than ${count}` : out.length} elements, but the shape needs ${count}`);
  }
  return out;
}

/**
 * A tensor's elements as little-endian bytes. Numeric tensors are not copied: the result views
 * the tensor's own memory.
 */
export function tensorBytes(t: Tensor): Uint8Array {
  if (t.type === 'string') return encodeStrings(t.data);
  const d = t.data;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** The bytes of `tensorBytes` of each tensor, summed, without encoding any (strings: a 4-byte length and UTF-8 each). */
export function tensorsByteLength(ts: Iterable<Tensor>): number {
  let n = 0;
  for (const t of ts) n += t.type === 'string' ? t.data.reduce((a, x) => a + 4 + Buffer.byteLength(x), 0) : t.data.byteLength;
  return n;
}

/**
 * A tensor from little-endian bytes. The bytes are viewed, not copied, when they are aligned for
 * the element type (else copied into a fresh buffer).
 * @throws BruleeError INVALID_INPUT naming `what` when the byte count does not fit the dims.
 */
export function tensorFromBytes(type: ElementType, dims: number[], bytes: Uint8Array, what = 'tensor data'): Tensor {
  const count = elementCount(dims);
  if (type === 'string') return { type, dims, data: decodeStrings(bytes, count, what) };
  const Ctor = ARRAY_OF[type];
  const size = Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength !== count * size) {
    throw invalid(`${what}: ${bytes.byteLength} bytes, but ${type} of dims ${JSON.stringify(dims)} takes ${count} × ${size} = ${count * size} bytes`);
  }
  if (bytes.byteOffset % size === 0) return { type, dims, data: new Ctor(bytes.buffer, bytes.byteOffset, count) };
  const data = new Ctor(count);
  new Uint8Array(data.buffer).set(bytes);
  return { type, dims, data };
}
