import { BruleeError, preview } from '../../errors';
import { ARRAY_OF, ELEMENT_TYPES, type NumericType, type Tensor, type TypedArray } from '../../queue/wire';
import { fromHalf, toHalf } from '../float16';
import { describeDims, exampleDims, isElementType, type TensorSpec } from '../signature';

/**
 * Tensors as JSON, both ways, for the HTTP front ends: v1's `{"type", "dims", "data"}` and the
 * v2 JSON form. Decoding only builds typed tensors (checking each value against its element
 * type); whether they fit the model is the data plane's signature check.
 */

/** A tensor as the v1 HTTP API writes it: `{"type": "float32", "dims": [1, 3], "data": [...]}`. */
export interface JsonTensor {
  type: string;
  dims: number[];
  data: Array<number | boolean | string>;
}

const INT_RANGE: Partial<Record<NumericType, [number, number]>> = {
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
    if (stack.length >= Math.max(rank, 1)) throw invalid(`input ${preview(name, 60)}: data is nested deeper than the input's ${rank} dims`);
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

const INT64_RANGE = { int64: [-(2n ** 63n), 2n ** 63n - 1n], uint64: [0n, 2n ** 64n - 1n] } as const;

/** A JSON value as a float: numbers, integers past 2^53 (parsed exactly, as BigInts), "NaN" and the infinities. */
function float(v: unknown): number | undefined {
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'string' ? SPECIAL[v] : undefined;
}

/**
 * One element as the type's typed array stores it, or undefined when it is not a valid value of
 * the type (the caller says what was expected). Called once per element: no allocation here.
 * Integers past 2^53 arrive as BigInts from `parseJsonExact`, so INT64/UINT64 keep every digit.
 */
function element(type: NumericType, v: unknown): number | bigint | undefined {
  switch (type) {
    case 'float32':
    case 'float64':
      return float(v);
    case 'float16': {
      const x = float(v);
      return x === undefined ? undefined : toHalf(x);
    }
    case 'bool':
      return v === true || v === 1 ? 1 : v === false || v === 0 ? 0 : undefined;
    case 'int64':
    case 'uint64': {
      const b =
        typeof v === 'bigint' ? v
        : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v)
        : typeof v === 'string' && /^-?\d+$/.test(v) ? BigInt(v)
        : undefined;
      const [lo, hi] = INT64_RANGE[type];
      return b !== undefined && b >= lo && b <= hi ? b : undefined;
    }
    default: {
      const [lo, hi] = INT_RANGE[type]!;
      return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : undefined;
    }
  }
}

const EXPECTED: Partial<Record<NumericType, string>> = {
  float32: 'a number (or "NaN", "Infinity", "-Infinity")',
  float64: 'a number (or "NaN", "Infinity", "-Infinity")',
  float16: 'a number (or "NaN", "Infinity", "-Infinity")',
  bool: 'true/false (or 1/0)',
  int64: 'an integer in int64 range (a number, or a decimal string)',
  uint64: 'an integer in uint64 range (a number, or a decimal string)',
};

/** The largest finite value of each float type, as messages write it. */
const FLOAT_MAX: Partial<Record<NumericType, string>> = { float16: '65504', float32: '3.4028234663852886e+38', float64: '1.7976931348623157e+308' };

/**
 * Whether a float type holds `x` (the value `element` gave: a half's bits for float16) as a finite
 * number. JSON has no infinities (they come as strings), so a JSON number held as one was past the
 * type's range: 1e300 in float32, 70000 in float16, or a literal past float64's that JSON.parse
 * itself read as Infinity. Those are refused, not turned into infinities.
 */
function finiteIn(type: NumericType, x: number | bigint): boolean {
  if (type === 'float16') return ((x as number) & 0x7c00) !== 0x7c00;
  if (type === 'float32') return Number.isFinite(Math.fround(x as number));
  return type !== 'float64' || Number.isFinite(x);
}

/** Magnitude from which float32 rounds a double to an infinity: its largest finite value plus half an ulp (the tie goes to even, up). */
const FLOAT32_OVERFLOW = 2 ** 128 - 2 ** 103;

/** Fills a typed array from JSON values, checking each against the element type. */
function fill(name: string, type: NumericType, values: unknown[]): TypedArray {
  const arr = new ARRAY_OF[type](values.length) as { [i: number]: number | bigint } & TypedArray;
  // The common case, numbers of the type's range into a float tensor, needs one check per element.
  if (type === 'float32' || type === 'float64') {
    const limit = type === 'float32' ? FLOAT32_OVERFLOW : Infinity;
    let i = 0;
    for (; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number' || !(v < limit && v > -limit)) break;
      arr[i] = v;
    }
    if (i === values.length) return arr;
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const x = element(type, v);
    if (x === undefined) {
      const range = INT_RANGE[type];
      const want = EXPECTED[type] ?? `an integer from ${range![0]} to ${range![1]}`;
      throw invalid(`input ${preview(name, 60)}: element ${i} is ${preview(v)}, but ${type} needs ${want}`);
    }
    if (typeof v !== 'string' && !finiteIn(type, x)) {
      const shown = Number.isFinite(Number(v)) ? preview(v) : 'a number';
      throw invalid(`input ${preview(name, 60)}: element ${i} is ${shown}, past ${type}'s range (finite values are at most ±${FLOAT_MAX[type]}); send "Infinity" or "-Infinity" if an infinity is meant`);
    }
    arr[i] = x;
  }
  return arr;
}


/**
 * Decodes one JSON tensor `{type?, dims, data}` (data flat or nested, row-major). `spec`, the
 * model's input of that name when there is one, gives the type when the request leaves it out and
 * an example in messages.
 */
export function decodeJsonTensor(name: string, raw: unknown, spec?: TensorSpec): Tensor {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid(`input ${preview(name, 60)} must be an object {"type", "dims", "data"}`);
  }
  const obj = raw as { type?: unknown; dims?: unknown; data?: unknown };
  const type = obj.type ?? spec?.type;
  if (typeof type !== 'string' || !isElementType(type)) {
    if (obj.type === undefined && spec) {
      throw invalid(`input ${preview(name, 60)} has element type ${spec.type}, which JSON invocation does not support (supported: ${ELEMENT_TYPES.join(', ')})`);
    }
    throw invalid(`input ${preview(name, 60)}: type ${preview(type)} is not an element type brulee carries (supported: ${ELEMENT_TYPES.join(', ')})`);
  }
  const dims = obj.dims;
  if (!Array.isArray(dims) || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    const example = spec ? `, for example ${describeDims(exampleDims(spec))}` : '';
    throw invalid(`input ${preview(name, 60)}: dims must be a list of non-negative integers${example}`);
  }
  // Each dim is safe, but their product may not be (a zero dim hides it): onnxruntime sizes a
  // tensor in int64, so refuse shapes whose non-zero dims alone pass 2^53 elements.
  if (!Number.isSafeInteger((dims as number[]).reduce((a, b) => (b === 0 ? a : a * b), 1))) {
    throw invalid(`input ${preview(name, 60)}: dims ${preview(dims)} describe more than 2^53 elements`);
  }
  if (obj.data === undefined) throw invalid(`input ${preview(name, 60)}: data is missing`);
  const values = flatten(name, obj.data, dims.length);
  const count = (dims as number[]).reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw invalid(`input ${preview(name, 60)}: data has ${values.length} elements, but dims ${preview(dims)} need ${count}`);
  }
  if (type === 'string') {
    const bad = values.findIndex((v) => typeof v !== 'string');
    if (bad >= 0) throw invalid(`input ${preview(name, 60)}: element ${bad} is ${preview(values[bad])}, but string (BYTES) needs a string`);
    return { type, dims: dims as number[], data: values as string[] };
  }
  return { type, dims: dims as number[], data: fill(name, type, values) };
}

/** Decodes v1's `inputs` object; `specs` (the model's inputs) give default types and examples. */
export function decodeJsonInputs(raw: Record<string, unknown>, specs: readonly TensorSpec[] = []): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(raw)) out[name] = decodeJsonTensor(name, t, specs.find((s) => s.name === name));
  return out;
}

/**
 * A tensor's values as JSON: bool as true/false; NaN and infinities as "NaN", "Infinity",
 * "-Infinity"; int64 beyond 2^53 as decimal strings, or with `bigint: 'raw'` as BigInts for a
 * caller that writes them as bare digits (the Open Inference Protocol wants numbers).
 */
export function jsonValues(t: Tensor, opts: { bigint?: 'string' | 'raw' } = {}): Array<number | boolean | string | bigint> {
  if (t.type === 'string') return t.data;
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
