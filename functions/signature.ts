import { BruleeError } from '../errors';
import { fromHalf, toHalf } from './float16';
import type { Signature, TensorSpec } from '../runtime/onnx';
import { ARRAY_OF, ELEMENT_TYPES, type ElementType, type Tensor, type TypedArray } from '../queue/wire';

export type { Signature, TensorSpec } from '../runtime/onnx';

/** A tensor as the HTTP API writes it: `{"type": "float32", "dims": [1, 3], "data": [...]}`. */
export interface JsonTensor {
  type: string;
  dims: number[];
  data: Array<number | boolean | string>;
}

export function isElementType(t: string): t is ElementType {
  return (ELEMENT_TYPES as readonly string[]).includes(t);
}

const INT_RANGE: Partial<Record<ElementType, [number, number]>> = {
  int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
  int32: [-2147483648, 2147483647], uint32: [0, 4294967295],
};

/**
 * The values of `data`, flat or nested (row-major), without recursion: nesting deeper than the
 * input's rank is an error, not a stack overflow.
 */
function flatten(name: string, data: unknown, rank: number): unknown[] {
  if (!Array.isArray(data)) return [data];
  const out: unknown[] = [];
  const stack: Array<{ items: unknown[]; i: number }> = [{ items: data, i: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.i >= top.items.length) {
      stack.pop();
      continue;
    }
    const v = top.items[top.i++];
    if (!Array.isArray(v)) {
      out.push(v);
      continue;
    }
    if (stack.length >= Math.max(rank, 1)) throw invalid(`input "${name}": data is nested deeper than the input's ${rank} dims`);
    stack.push({ items: v, i: 0 });
  }
  return out;
}

/** JSON has no NaN or infinities: they travel as these strings, both ways. */
const SPECIAL: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

function jsonFloat(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}

function invalid(message: string): BruleeError {
  return new BruleeError('INVALID_INPUT', message);
}

function describeDims(dims: Array<number | string>): string {
  return `[${dims.map((d) => (typeof d === 'number' ? d : `"${d}"`)).join(', ')}]`;
}

/** Fills a typed array from JSON values, checking each against the element type. */
const INT64_RANGE = { int64: [-(2n ** 63n), 2n ** 63n - 1n], uint64: [0n, 2n ** 64n - 1n] } as const;

/**
 * One element as the type's typed array stores it, or undefined when it is not a valid value of
 * the type (the caller says what was expected). Called once per element: no allocation here.
 */
function element(type: ElementType, v: unknown): number | bigint | undefined {
  switch (type) {
    case 'float32':
    case 'float64':
      return typeof v === 'number' ? v : typeof v === 'string' ? SPECIAL[v] : undefined;
    case 'float16': {
      const x = typeof v === 'number' ? v : typeof v === 'string' ? SPECIAL[v] : undefined;
      return x === undefined ? undefined : toHalf(x);
    }
    case 'bool':
      return v === true || v === 1 ? 1 : v === false || v === 0 ? 0 : undefined;
    case 'int64':
    case 'uint64': {
      const b = typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : typeof v === 'string' && /^-?\d+$/.test(v) ? BigInt(v) : undefined;
      const [lo, hi] = INT64_RANGE[type];
      return b !== undefined && b >= lo && b <= hi ? b : undefined;
    }
    default: {
      const [lo, hi] = INT_RANGE[type]!;
      return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : undefined;
    }
  }
}

const EXPECTED: Partial<Record<ElementType, string>> = {
  float32: 'a number (or "NaN", "Infinity", "-Infinity")',
  float64: 'a number (or "NaN", "Infinity", "-Infinity")',
  float16: 'a number (or "NaN", "Infinity", "-Infinity")',
  bool: 'true/false (or 1/0)',
  int64: 'an integer in int64 range (a number up to 2^53, or a decimal string)',
  uint64: 'an integer in uint64 range (a number up to 2^53, or a decimal string)',
};

/** Fills a typed array from JSON values, checking each against the element type. */
function fill(name: string, type: ElementType, values: unknown[]): TypedArray {
  const arr = new ARRAY_OF[type](values.length) as { [i: number]: number | bigint } & TypedArray;
  // The common case, finite numbers into a float tensor, needs no per-element checks beyond one.
  if (type === 'float32' || type === 'float64') {
    let i = 0;
    for (; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number') break;
      arr[i] = v;
    }
    if (i === values.length) return arr;
  }
  for (let i = 0; i < values.length; i++) {
    const x = element(type, values[i]);
    if (x === undefined) {
      const range = INT_RANGE[type];
      const want = EXPECTED[type] ?? `an integer from ${range![0]} to ${range![1]}`;
      throw invalid(`input "${name}": element ${i} is ${JSON.stringify(values[i])}, but ${type} needs ${want}`);
    }
    arr[i] = x;
  }
  return arr;
}

/**
 * Checks one input against its spec and builds the tensor. A mismatch is a 422 that names the
 * input and says what was expected.
 */
export function parseInput(spec: TensorSpec, raw: unknown): Tensor {
  const name = spec.name;
  const obj = (raw ?? {}) as { type?: unknown; dims?: unknown; data?: unknown };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid(`input "${name}" must be an object {"type", "dims", "data"}`);
  }
  if (!isElementType(spec.type)) {
    throw invalid(`input "${name}" has element type ${spec.type}, which JSON invocation does not support (supported: ${ELEMENT_TYPES.join(', ')})`);
  }
  const type = obj.type ?? spec.type;
  if (type !== spec.type) {
    throw invalid(`input "${name}": type ${JSON.stringify(type)} does not match the model, which expects ${spec.type}`);
  }
  const dims = obj.dims;
  if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw invalid(`input "${name}": dims must be a list of non-negative integers, for example ${describeDims(spec.dims.map((d) => (typeof d === 'number' ? d : 1)))}`);
  }
  if (dims.length !== spec.dims.length) {
    throw invalid(`input "${name}": rank ${dims.length} (dims ${JSON.stringify(dims)}) does not match the model, which expects rank ${spec.dims.length}: ${describeDims(spec.dims)}`);
  }
  spec.dims.forEach((want, i) => {
    if (typeof want === 'number' && want >= 0 && dims[i] !== want) {
      throw invalid(`input "${name}": dim ${i} is ${dims[i]}, but the model fixes it at ${want} (expected ${describeDims(spec.dims)})`);
    }
  });
  if (obj.data === undefined) throw invalid(`input "${name}": data is missing`);
  const values = flatten(name, obj.data, spec.dims.length);
  const count = (dims as number[]).reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw invalid(`input "${name}": data has ${values.length} elements, but dims ${JSON.stringify(dims)} need ${count}`);
  }
  return { type: spec.type, dims: dims as number[], data: fill(name, spec.type, values) };
}

/** Checks a whole input set: every model input present, no unknown names, each input valid. */
export function parseInputs(sig: Signature, raw: Record<string, unknown>): Record<string, Tensor> {
  const expected = sig.inputs.map((i) => i.name);
  const unknown = Object.keys(raw).filter((k) => !expected.includes(k));
  if (unknown.length > 0) {
    throw invalid(`unknown input ${unknown.map((u) => `"${u}"`).join(', ')}: the model's inputs are ${expected.map((e) => `"${e}"`).join(', ')}`);
  }
  const missing = expected.filter((e) => !(e in raw));
  if (missing.length > 0) {
    throw invalid(`missing input ${missing.map((m) => `"${m}"`).join(', ')}: the model needs ${sig.inputs.map((i) => `"${i.name}" (${i.type} ${describeDims(i.dims)})`).join(', ')}`);
  }
  const out: Record<string, Tensor> = {};
  for (const spec of sig.inputs) out[spec.name] = parseInput(spec, raw[spec.name]);
  return out;
}

/**
 * A tensor's values as JSON: bool as true/false; NaN and infinities as "NaN", "Infinity",
 * "-Infinity"; int64 beyond 2^53 as decimal strings, or with `bigint: 'raw'` as BigInts for a
 * caller that writes them as bare digits (the Open Inference Protocol wants numbers).
 */
export function jsonValues(t: Tensor, opts: { bigint?: 'string' | 'raw' } = {}): Array<number | boolean | string | bigint> {
  const d = t.data;
  if (t.type === 'bool') return Array.from(d as Uint8Array, (v) => v !== 0);
  if (t.type === 'float16') return Array.from(d as Uint16Array, (h) => jsonFloat(fromHalf(h)));
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    const safe = (v: bigint) => v >= -(2n ** 53n) && v <= 2n ** 53n;
    return Array.from(d, (v) => (safe(v) ? Number(v) : opts.bigint === 'raw' ? v : v.toString()));
  }
  if (d instanceof Float32Array || d instanceof Float64Array) return Array.from(d, jsonFloat);
  return Array.from(d as ArrayLike<number>);
}

export function toJsonTensor(t: Tensor): JsonTensor {
  return { type: t.type, dims: t.dims, data: jsonValues(t) as JsonTensor['data'] };
}

/**
 * JSON.stringify, but BigInts are written as bare digits (JSON numbers of any size), which
 * JSON.stringify itself refuses to do.
 */
export function stringifyWithBigInts(value: unknown): string {
  const marks: string[] = [];
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v !== 'bigint') return v;
    marks.push(v.toString());
    return `\u0000bigint${marks.length - 1}\u0000`;
  });
  return marks.length === 0 ? text : text.replace(/"\\u0000bigint(\d+)\\u0000"/g, (_m, i: string) => marks[Number(i)]!);
}
