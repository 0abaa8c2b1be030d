/**
 * The mapped form of a pre-optimized artifact (issue 10 §1): one file that onnxruntime memory-maps
 * its weights from, already packed for the CPU's GEMM kernels.
 *
 * onnxruntime can write an optimized model with its large initializers in an external data file
 * and, with `session.save_external_prepacked_constant_initializers`, the prepacked form of those
 * weights beside them. Loaded back, onnxruntime maps the data file (for offsets aligned to a page)
 * and hands the kernels the packed weights as they are: no protobuf copy of the weights, no
 * prepacking, the very same kernels (bit-equal outputs). The data file and the small graph that
 * points into it are stored as one file, so a model stays one content-addressed blob:
 *
 *     [external data, as onnxruntime wrote it][graph (ModelProto)][graph length: u64 LE]["BRULEEMA"]
 *
 * The graph names its data file `MAPPED_FILE_NAME`: the bundle itself, read at the offsets
 * onnxruntime wrote (the data comes first, so they hold). A node's local cache names every model
 * file so (store/local.ts); the profiler's scratch file is named so as well.
 *
 * Memory: mapped weights are file pages, not anonymous memory, but they are this model's all the
 * same. They count in the process's RSS once touched (a model's first runs touch them all), so the
 * profile's resident bytes and the node's own measurement (runtime/footprint.ts: RSS growth over
 * the first load and runs) charge them in full. What differs: they are clean pages the kernel may
 * drop under pressure and read again from the file, and evicting the model unmaps them at once
 * (no allocator keeps them). A cached file deleted while its model is loaded keeps its disk
 * blocks until the model is evicted.
 */
import { basename } from 'node:path';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** The name a mapped artifact must have on disk: its graph reads its weights from this file. */
export const MAPPED_FILE_NAME = 'model.onnx';

const MAGIC = Buffer.from('BRULEEMA', 'latin1');
const TRAILER = 16;

/**
 * Only tensors larger than this go to the data file. onnxruntime pads the offset of a tensor
 * larger than 1 MiB to a page (`ModelSavingOptions.align_threshold`), and maps only page-aligned
 * data; smaller ones would sit at offsets MLAS's packed-weight loads cannot take (a 20 MB MLP's
 * 63 KB last layer crashed the run when written at an offset 4 bytes past a 64-byte boundary).
 */
export const MAPPED_MIN_TENSOR_BYTES = 1024 * 1024 + 1;

/** Every external-data offset must be a multiple of this (MLAS's buffer alignment); else the bundle is not used. */
export const MAPPED_ALIGNMENT = 64;

/** Builds the bundle from onnxruntime's output: the data file's bytes, then the graph's. */
export function packMapped(data: Uint8Array, graph: Uint8Array): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(graph.byteLength));
  return Buffer.concat([data, graph, len, MAGIC]);
}

/** onnxruntime's own format (a flatbuffer whose identifier, at byte 4, is `ORTM`). */
const ORT_IDENTIFIER = Buffer.from('ORTM', 'latin1');

/**
 * Where an artifact's parts are: a mapped one's graph (its byte range in the file), or onnxruntime's
 * ORT format, or plain ONNX. An artifact is content-addressed (its file never changes), so a node
 * reads this once per artifact and passes it to later loads (`LoadOptions.layout`): a reload then
 * reads only the graph (mapped) or nothing (ORT, ONNX) before onnxruntime opens the file.
 */
export type ArtifactLayout = { form: 'mapped'; graphOffset: number; graphBytes: number } | { form: 'ort' | 'onnx' };

/**
 * The layout of the artifact at `path`. Read with one open and synchronous reads of a few bytes
 * from the page cache: on a cold start's path, each asynchronous step is a trip through libuv's
 * thread pool, and seven of them cost 0.4 ms, more than a tiny model's whole session create
 * (measured at load 11; synchronous: ~0.02 ms).
 */
export function artifactLayout(path: string): ArtifactLayout {
  const fd = openSync(path, 'r');
  try {
    const at = mappedGraphAt(fd, path);
    if (at) return { form: 'mapped', ...at };
    const head = Buffer.alloc(8);
    const bytesRead = readSync(fd, head, 0, 8, 0);
    return { form: bytesRead === 8 && head.subarray(4).equals(ORT_IDENTIFIER) ? 'ort' : 'onnx' };
  } finally {
    closeSync(fd);
  }
}

/** The graph of the mapped artifact at `path` whose layout is `at` (one open, one read). */
export function readGraphAt(path: string, at: { graphOffset: number; graphBytes: number }): Buffer {
  if (basename(path) !== MAPPED_FILE_NAME) throw new Error(`a mapped artifact must be named ${MAPPED_FILE_NAME} (its graph reads its weights from that file), not ${basename(path)}`);
  const fd = openSync(path, 'r');
  try {
    const graph = Buffer.alloc(at.graphBytes);
    if (readSync(fd, graph, 0, at.graphBytes, at.graphOffset) !== at.graphBytes) throw new Error('a mapped artifact shorter than its layout says');
    return graph;
  } finally {
    closeSync(fd);
  }
}

/** What an artifact file is: a mapped one (with its graph), onnxruntime's ORT format, or plain ONNX. */
export async function artifactForm(path: string): Promise<{ form: 'mapped'; graph: Buffer } | { form: 'ort' | 'onnx' }> {
  const layout = artifactLayout(path);
  return layout.form === 'mapped' ? { form: 'mapped', graph: readGraphAt(path, layout) } : layout;
}

/** The graph of a mapped artifact at `path`, or null when the file is not one (a plain ONNX model). */
export async function readMappedGraph(path: string): Promise<Buffer | null> {
  const layout = artifactLayout(path);
  return layout.form === 'mapped' ? readGraphAt(path, layout) : null;
}

function mappedGraphAt(fd: number, path: string): { graphOffset: number; graphBytes: number } | null {
  const { size } = fstatSync(fd);
  if (size < TRAILER) return null;
  const t = Buffer.alloc(TRAILER);
  readSync(fd, t, 0, TRAILER, size - TRAILER);
  if (!t.subarray(8).equals(MAGIC)) return null;
  const len = Number(t.readBigUInt64LE(0));
  if (len <= 0 || len > size - TRAILER) throw new Error('a mapped artifact with a damaged trailer');
  if (basename(path) !== MAPPED_FILE_NAME) throw new Error(`a mapped artifact must be named ${MAPPED_FILE_NAME} (its graph reads its weights from that file), not ${basename(path)}`);
  return { graphOffset: size - TRAILER - len, graphBytes: len };
}

/** One external-data reference of a graph: the file it names and the byte ranges it reads there. */
export interface ExternalRef {
  tensor: string;
  location: string;
  /** Offsets read: the tensor's own, then any prepacked blobs'. */
  offsets: number[];
}

/**
 * Every external-data reference in an ONNX graph, subgraphs included (a minimal protobuf reader:
 * ModelProto.graph → GraphProto.{initializer, sparse_initializer, node.attribute.{t, g, tensors,
 * graphs}} → TensorProto.external_data). Prepacked blobs appear as `prepacked_N` entries whose value
 * is `<kernel>|<offset>;<length>;<n>`.
 */
export function externalRefs(model: Uint8Array): ExternalRef[] {
  const out: ExternalRef[] = [];
  for (const [f, v] of fields(model)) if (f === 7 && v instanceof Uint8Array) graph(v, out);
  return out;
}

function graph(g: Uint8Array, out: ExternalRef[]): void {
  for (const [f, v] of fields(g)) {
    if (!(v instanceof Uint8Array)) continue;
    if (f === 5) {
      tensor(v, out);
    } else if (f === 15) {
      for (const [sf, sv] of fields(v)) if ((sf === 1 || sf === 2) && sv instanceof Uint8Array) tensor(sv, out);
    } else if (f === 1) {
      for (const [nf, nv] of fields(v)) if (nf === 5 && nv instanceof Uint8Array) attribute(nv, out);
    }
  }
}

function attribute(a: Uint8Array, out: ExternalRef[]): void {
  for (const [f, v] of fields(a)) {
    if (!(v instanceof Uint8Array)) continue;
    if (f === 5 || f === 10) tensor(v, out);
    else if (f === 6 || f === 11) graph(v, out);
  }
}

function tensor(t: Uint8Array, out: ExternalRef[]): void {
  let name = '';
  const entries: Array<[string, string]> = [];
  for (const [f, v] of fields(t)) {
    if (!(v instanceof Uint8Array)) continue;
    if (f === 8) name = text(v);
    else if (f === 13) {
      let k = '';
      let val = '';
      for (const [ef, ev] of fields(v)) {
        if (!(ev instanceof Uint8Array)) continue;
        if (ef === 1) k = text(ev);
        else if (ef === 2) val = text(ev);
      }
      entries.push([k, val]);
    }
  }
  if (entries.length === 0) return;
  const ref: ExternalRef = { tensor: name, location: '', offsets: [] };
  let own = 0;
  for (const [k, v] of entries) {
    if (k === 'location') ref.location = v;
    else if (k === 'offset') own = Number(v);
    else if (k.startsWith('prepacked')) for (const m of v.matchAll(/(\d+);(\d+);(\d+)/g)) ref.offsets.push(Number(m[1]));
  }
  ref.offsets.unshift(own);
  out.push(ref);
}

const text = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/** The fields of one protobuf message: [field number, varint value or length-delimited bytes]. */
function* fields(b: Uint8Array): Generator<[number, number | Uint8Array]> {
  let i = 0;
  const varint = (): number => {
    let x = 0;
    let mul = 1;
    for (;;) {
      if (i >= b.length) throw new Error('truncated protobuf');
      const byte = b[i++]!;
      x += (byte & 0x7f) * mul;
      if (byte < 0x80) return x;
      mul *= 128;
    }
  };
  while (i < b.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield [field, varint()];
    else if (wire === 2) {
      const n = varint();
      if (i + n > b.length) throw new Error('truncated protobuf');
      yield [field, b.subarray(i, i + n)];
      i += n;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

/** Why a graph written for the bundle cannot be used as one, or null when it can. */
export function mappedProblem(graphBytes: Uint8Array, dataBytes: number): string | null {
  const refs = externalRefs(graphBytes);
  if (refs.length === 0) return 'no tensor was large enough to be mapped';
  for (const r of refs) {
    if (r.location !== MAPPED_FILE_NAME) return `tensor ${r.tensor} reads another file (${r.location})`;
    for (const o of r.offsets) {
      if (o % MAPPED_ALIGNMENT !== 0) return `tensor ${r.tensor} has data at offset ${o}, not a multiple of ${MAPPED_ALIGNMENT}`;
      if (o >= dataBytes) return `tensor ${r.tensor} has data at offset ${o}, past the data file's ${dataBytes} bytes`;
    }
  }
  return null;
}
