/**
 * Minimal ONNX model encoder for tests and benchmarks.
 *
 * The schema below is a field-for-field subset of onnx/onnx.proto (proto2): same
 * message names, field names and field numbers, so the bytes are a valid
 * ModelProto that onnxruntime (or `onnx.load`) reads. Fields we never write
 * (sparse tensors, training info, external data, ...) are simply left out; a
 * decoder skips unknown fields anyway.
 *
 * Initializers are written as `raw_data` (fixed-width little-endian), which is
 * both what the exporters do and by far the fastest path for large tensors.
 */
import protobuf from 'protobufjs';

const ONNX_PROTO_SUBSET = `
syntax = "proto2";
package onnx;

message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0;
    FLOAT = 1;
    INT = 2;
    STRING = 3;
    TENSOR = 4;
    GRAPH = 5;
    FLOATS = 6;
    INTS = 7;
    STRINGS = 8;
    TENSORS = 9;
    GRAPHS = 10;
  }
  optional string name = 1;
  optional string doc_string = 13;
  optional AttributeType type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  optional GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
}

message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
  optional string doc_string = 3;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
}

message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
}

message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message TensorProto {
  enum DataType {
    UNDEFINED = 0;
    FLOAT = 1;
    UINT8 = 2;
    INT8 = 3;
    UINT16 = 4;
    INT16 = 5;
    INT32 = 6;
    INT64 = 7;
    STRING = 8;
    BOOL = 9;
    FLOAT16 = 10;
    DOUBLE = 11;
    UINT32 = 12;
    UINT64 = 13;
  }
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  optional string name = 8;
  optional string doc_string = 12;
  optional bytes raw_data = 9;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    optional string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  optional string denotation = 6;
}

message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`;

/** The protobufjs reflection root for the ONNX subset (package `onnx`, snake_case field names). */
export const onnxRoot: protobuf.Root = protobuf.parse(ONNX_PROTO_SUBSET, { keepCase: true }).root;
export const ModelProto: protobuf.Type = onnxRoot.lookupType('onnx.ModelProto');

/** TensorProto.DataType values. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const;

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;

/** Element type names, spelled as onnxruntime-node's `Tensor.Type` does. */
export type ElemType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string';

export const ELEM_TYPE_CODE: Readonly<Record<ElemType, number>> = {
  float32: DataType.FLOAT,
  float64: DataType.DOUBLE,
  float16: DataType.FLOAT16,
  int8: DataType.INT8,
  int16: DataType.INT16,
  int32: DataType.INT32,
  int64: DataType.INT64,
  uint8: DataType.UINT8,
  uint16: DataType.UINT16,
  uint32: DataType.UINT32,
  uint64: DataType.UINT64,
  bool: DataType.BOOL,
  string: DataType.STRING,
};

/** A dimension: a fixed size, or a symbolic name (dim_param). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  type: ElemType;
  /** Omit for "unknown rank"; otherwise one entry per axis. */
  shape?: readonly Dim[];
  docString?: string;
}

/**
 * Tensor contents. The typed array must match the element type:
 * float32→Float32Array, float64→Float64Array, int8→Int8Array, int16→Int16Array,
 * int32→Int32Array, int64→BigInt64Array, uint8/bool→Uint8Array, uint16/float16 (bits)→Uint16Array,
 * uint32→Uint32Array, uint64→BigUint64Array. `string` tensors take `string[]`.
 */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | readonly string[];

export interface TensorSpec {
  name: string;
  type: ElemType;
  dims: readonly number[];
  data: TensorData;
}

/**
 * Attribute values. Shorthands: an integer `number` is INT, a `string` is STRING,
 * a `number[]` of integers is INTS, a `string[]` is STRINGS. Floats must be tagged
 * (`{ f: 1.0 }`, `{ floats: [...] }`) because 1.0 and 1 are the same JS number.
 */
export type AttrValue =
  | number
  | string
  | readonly number[]
  | readonly string[]
  | { readonly f: number }
  | { readonly floats: readonly number[] }
  | { readonly t: TensorSpec };

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  domain?: string;
  attrs?: Readonly<Record<string, AttrValue>>;
}

export interface ModelSpec {
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  nodes: readonly NodeSpec[];
  initializers?: readonly TensorSpec[];
  /** Default-domain opset version. Default 13. */
  opset?: number;
  /** Extra opset imports, e.g. `{ 'com.microsoft': 1 }`. */
  extraOpsets?: Readonly<Record<string, number>>;
  /** Default 7 (accepted by every onnxruntime since 1.6). */
  irVersion?: number;
  graphName?: string;
  docString?: string;
  producerName?: string;
  producerVersion?: string;
}

export const DEFAULT_OPSET = 13;
export const DEFAULT_IR_VERSION = 7;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type TypedArrayCtor = { readonly name: string; new (n: number): Exclude<TensorData, readonly string[]> };

const EXPECTED_ARRAY: Readonly<Record<Exclude<ElemType, 'string'>, TypedArrayCtor>> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
};

/** Little-endian bytes of a typed array (a view, without copying, on little-endian hosts). */
export function toLittleEndianBytes(data: Exclude<TensorData, readonly string[]>): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const width = data.BYTES_PER_ELEMENT;
  if (LITTLE_ENDIAN || width === 1) return view;
  const out = new Uint8Array(view.length);
  for (let i = 0; i < view.length; i += width) {
    for (let j = 0; j < width; j++) out[i + j] = view[i + width - 1 - j]!;
  }
  return out;
}

function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`bad tensor dim ${d}`);
    n *= d;
  }
  return n;
}

function tensorProto(t: TensorSpec): Record<string, unknown> {
  const count = elementCount(t.dims);
  const base = { name: t.name, dims: [...t.dims], data_type: ELEM_TYPE_CODE[t.type] };
  if (t.type === 'string') {
    if (!Array.isArray(t.data)) throw new Error(`tensor ${t.name}: string tensors take string[]`);
    const strs = t.data as readonly string[];
    if (strs.length !== count) throw new Error(`tensor ${t.name}: ${strs.length} strings for dims [${t.dims}]`);
    return { ...base, string_data: strs.map((s) => Buffer.from(s, 'utf8')) };
  }
  if (Array.isArray(t.data)) throw new Error(`tensor ${t.name}: ${t.type} takes a typed array`);
  const data = t.data as Exclude<TensorData, readonly string[]>;
  const expected = EXPECTED_ARRAY[t.type];
  if (!(data instanceof expected)) {
    throw new Error(`tensor ${t.name}: ${t.type} needs a ${expected.name}, got ${data.constructor.name}`);
  }
  if (data.length !== count) throw new Error(`tensor ${t.name}: ${data.length} elements for dims [${t.dims}]`);
  if (t.type === 'bool') {
    for (const v of data as Uint8Array) if (v > 1) throw new Error(`tensor ${t.name}: bool values must be 0 or 1`);
  }
  return { ...base, raw_data: toLittleEndianBytes(data) };
}

function dimProto(d: Dim): Record<string, unknown> {
  if (typeof d === 'string') return { dim_param: d };
  if (!Number.isInteger(d) || d < 0) throw new Error(`bad dim ${d}`);
  return { dim_value: d };
}

function valueInfoProto(v: ValueInfo): Record<string, unknown> {
  const tensor: Record<string, unknown> = { elem_type: ELEM_TYPE_CODE[v.type] };
  if (v.shape) tensor.shape = { dim: v.shape.map(dimProto) };
  const out: Record<string, unknown> = { name: v.name, type: { tensor_type: tensor } };
  if (v.docString !== undefined) out.doc_string = v.docString;
  return out;
}

function isIntegerArray(v: readonly unknown[]): v is readonly number[] {
  return v.every((x) => typeof x === 'number' && Number.isInteger(x));
}

function attributeProto(name: string, v: AttrValue): Record<string, unknown> {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use { f: ${v} } for a float`);
    return { name, type: AttributeType.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: Buffer.from(v, 'utf8') };
  if (Array.isArray(v)) {
    const arr = v as readonly unknown[];
    if (arr.length > 0 && arr.every((x) => typeof x === 'string')) {
      return { name, type: AttributeType.STRINGS, strings: (arr as string[]).map((s) => Buffer.from(s, 'utf8')) };
    }
    if (isIntegerArray(arr)) return { name, type: AttributeType.INTS, ints: [...arr] };
    throw new Error(`attribute ${name}: use { floats: [...] } for a float list`);
  }
  if ('f' in v) return { name, type: AttributeType.FLOAT, f: v.f };
  if ('floats' in v) return { name, type: AttributeType.FLOATS, floats: [...v.floats] };
  if ('t' in v) return { name, type: AttributeType.TENSOR, t: tensorProto(v.t) };
  throw new Error(`attribute ${name}: unsupported value`);
}

function nodeProto(n: NodeSpec, index: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    input: [...n.inputs],
    output: [...n.outputs],
    name: n.name ?? `${n.op}_${index}`,
    op_type: n.op,
    attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attributeProto(k, v)),
  };
  if (n.domain !== undefined) out.domain = n.domain;
  return out;
}

/** The plain object handed to protobufjs (snake_case, as in onnx.proto). */
export function modelObject(spec: ModelSpec): Record<string, unknown> {
  const opsetImport: Record<string, unknown>[] = [{ domain: '', version: spec.opset ?? DEFAULT_OPSET }];
  for (const [domain, version] of Object.entries(spec.extraOpsets ?? {})) opsetImport.push({ domain, version });
  const graph: Record<string, unknown> = {
    node: spec.nodes.map(nodeProto),
    name: spec.graphName ?? 'graph',
    initializer: (spec.initializers ?? []).map(tensorProto),
    input: spec.inputs.map(valueInfoProto),
    output: spec.outputs.map(valueInfoProto),
  };
  if (spec.docString !== undefined) graph.doc_string = spec.docString;
  return {
    ir_version: spec.irVersion ?? DEFAULT_IR_VERSION,
    opset_import: opsetImport,
    producer_name: spec.producerName ?? 'brulee-test-models',
    producer_version: spec.producerVersion ?? '1',
    graph,
  };
}

/** Serialize a model to ONNX protobuf bytes. Deterministic: same spec, same bytes. */
export function encodeModel(spec: ModelSpec): Uint8Array {
  const buf = ModelProto.encode(modelObject(spec)).finish();
  // protobufjs may hand back a Buffer; normalize to a plain Uint8Array view.
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Decode ONNX bytes into a plain object (snake_case fields, int64 as number,
 * bytes as Uint8Array/Buffer). For tests and debugging; it only knows the subset above.
 */
export function decodeModel(bytes: Uint8Array): Record<string, any> {
  const msg = ModelProto.decode(bytes);
  return ModelProto.toObject(msg, { longs: Number, enums: Number, bytes: Buffer, defaults: false }) as Record<
    string,
    any
  >;
}

/** "f32 float32[batch,3]"-style one-liner for a value, for logs and CLIs. */
export function formatValueInfo(v: ValueInfo): string {
  return `${v.name}: ${v.type}${v.shape ? `[${v.shape.join(', ')}]` : '[?]'}`;
}
