/**
 * The mapped form of a pre-optimized artifact (issue 10 §1): one file that onnxruntime memory-maps
 * its weights from, already packed for the CPU's GEMM kernels.
 *
 * onnxruntime can write an optimized model with its initializers in an external data file
 * and, with `session.save_external_prepacked_constant_initializers`, the prepacked form of those
 * weights beside them. Loaded back, onnxruntime maps the data file (for offsets aligned to a page)
 * and hands the kernels the packed weights as they are: no protobuf copy of the weights into fresh
 * memory, the very same kernels (bit-equal outputs; onnxruntime 1.30 still packs each weight once at
 * load to find its blob by hash, then drops that copy). Every tensor of a page or more goes to the
 * data file, each range on a page of its own (`relayMapped`). The data file and the small graph that
 * points into it are stored as one file, so a model stays one content-addressed blob:
 *
 *     [external data, laid out on pages][graph (ModelProto)][graph length: u64 LE]["BRULEEMA"]
 *
 * The graph names its data file `MAPPED_FILE_NAME`: the bundle itself, read at the offsets
 * `relayMapped` wrote (the data comes first, so they hold). A node's local cache names every model
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
 * A model gets the mapped form when it has a tensor larger than this (or enough tensors of a page
 * or more: `MAPPED_MIN_TOTAL_BYTES`). onnxruntime pads the offset of a tensor larger than 1 MiB to
 * a page (`ModelSavingOptions.align_threshold`, which no session option sets) and writes smaller
 * ones back to back, at offsets MLAS's packed-weight loads cannot take (a 20 MB MLP's 63 KB last
 * layer crashed the run when written 4 bytes past a 64-byte boundary): `relayMapped` lays them out
 * again on pages.
 */
export const MAPPED_MIN_TENSOR_BYTES = 1024 * 1024 + 1;

/**
 * A model whose tensors of a page or more (`MAPPED_EXTERNAL_MIN_BYTES`) hold this many bytes in all
 * gets the mapped form too, though none of them is over 1 MiB (`relayMapped` puts each on a page):
 * PP-OCR det (4.6 MB in 46 tensors of at most 576 KiB) loads its weights as clean file pages, which
 * a parked session gives back (runtime/parked.ts), instead of copying them out of the graph; its
 * outputs are the original's bits, its resident bytes no more than the ONNX form's (bench/README.md,
 * "PP-OCR det's mapped form"). Below it the copy saved is small, and Silero VAD's 3.2 MB (weights
 * in `If` branches) fails to load mapped in onnxruntime 1.30 ("initializer name is not unique").
 */
export const MAPPED_MIN_TOTAL_BYTES = 4 * 1024 * 1024;

/** Whether a graph written with its tensors of a page or more in external data is worth mapping (`MAPPED_MIN_TENSOR_BYTES`, `MAPPED_MIN_TOTAL_BYTES`). */
export function worthMapping(refs: readonly ExternalRef[]): boolean {
  return refs.some((r) => r.bytes >= MAPPED_MIN_TENSOR_BYTES) || refs.reduce((s, r) => s + r.bytes, 0) >= MAPPED_MIN_TOTAL_BYTES;
}

/**
 * In a mapped artifact, every tensor of at least this many bytes goes to the data file (a page:
 * a smaller one would take a page of its own when mapped). Left in the graph, a tensor is copied
 * out of the graph's protobuf into fresh memory at every load: PP-OCR rec keeps 7.4 of its 10.8 MB
 * in tensors under 1 MiB, and under brulee's glibc mmap threshold (runtime/malloc.ts) each of
 * those copies is fresh pages to fault in (~5 400 page faults a load, 2.4x the create's CPU time).
 */
export const MAPPED_EXTERNAL_MIN_BYTES = 4096;

/** Where `relayMapped` starts each range of the data file: a page, so that onnxruntime maps it. */
export const MAPPED_PAGE = 4096;

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
  /** The tensor's own bytes (its `length` entry). */
  bytes: number;
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
  forEachEntry(model, (tensor, entries) => {
    const ref: ExternalRef = { tensor, location: entries.get('location') ?? '', bytes: Number(entries.get('length') ?? 0), offsets: [Number(entries.get('offset') ?? 0)] };
    for (const [k, v] of entries) if (k.startsWith('prepacked')) for (const m of v.matchAll(PREPACKED)) ref.offsets.push(Number(m[1]));
    out.push(ref);
  });
  return out;
}

/**
 * How many bytes of prepacked blobs of at least `minBytes` a mapped graph holds beyond its largest
 * one: what a load window (runtime/malloc.ts) saves in fresh pages, since onnxruntime packs each such
 * weight again into a buffer it frees before packing the next. A scan of the graph's bytes for the
 * blobs' `|<offset>;<length>;<checksum>` (no protobuf walk: it runs at every load).
 */
export function prepackedReuseBytes(graph: Uint8Array, minBytes = 131072): number {
  let sum = 0;
  let max = 0;
  for (const m of Buffer.from(graph.buffer, graph.byteOffset, graph.byteLength).toString('latin1').matchAll(/\|\d+;(\d+);\d+/g)) {
    const n = Number(m[1]);
    if (n < minBytes) continue;
    sum += n;
    max = Math.max(max, n);
  }
  return sum - max;
}

/** A prepacked blob in a `prepacked_N` entry's value: `<offset>;<length>;<checksum>`, several joined by `;`. */
const PREPACKED = /(\d+);(\d+);(\d+)/g;

const text = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/**
 * The fields of one protobuf message: [field number, varint value or length-delimited bytes, where
 * the field's key ends (its length, for bytes, starts there)].
 */
function* fields(b: Uint8Array): Generator<[number, number | Uint8Array, number]> {
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
    const keyEnd = i;
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield [field, varint(), keyEnd];
    else if (wire === 2) {
      const n = varint();
      if (i + n > b.length) throw new Error('truncated protobuf');
      i += n;
      yield [field, b.subarray(i - n, i), keyEnd];
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

/** One byte range of the data file that a graph reads: a tensor's own data or one of its prepacked blobs. */
interface DataRange {
  offset: number;
  length: number;
}

/**
 * Lays the data file out again with every range the graph reads starting on a multiple of `align`
 * (a page), and rewrites the graph's offsets to match. onnxruntime aligns only the tensors over its
 * 1 MiB `align_threshold` (no session option changes it) and writes smaller ones back to back, at
 * offsets MLAS's packed-weight loads cannot take; laid out again, every tensor written to the data
 * file is mapped at load, not copied out of the graph's protobuf into fresh memory.
 * @throws Error when a reference has no length or a range lies outside the data.
 */
export function relayMapped(graph: Uint8Array, data: Uint8Array, align = MAPPED_PAGE): { graph: Buffer; data: Buffer } {
  const ranges = new Map<number, DataRange>();
  const note = (offset: number, length: number) => {
    if (![offset, length].every((x) => Number.isSafeInteger(x) && x >= 0) || offset + length > data.byteLength) throw new Error(`an external range ${offset}+${length} outside the data file's ${data.byteLength} bytes`);
    const had = ranges.get(offset);
    if (!had || had.length < length) ranges.set(offset, { offset, length });
  };
  forEachEntry(graph, (_tensor, entries) => {
    const own = entries.get('offset');
    const length = entries.get('length');
    if (entries.has('location')) {
      if (length === undefined) throw new Error('an external tensor without a length');
      note(Number(own ?? 0), Number(length));
    }
    for (const [k, v] of entries) if (k.startsWith('prepacked')) for (const m of v.matchAll(PREPACKED)) note(Number(m[1]), Number(m[2]));
  });
  const moved = new Map<number, number>();
  let end = 0;
  for (const r of [...ranges.values()].sort((a, b) => a.offset - b.offset)) {
    end = Math.ceil(end / align) * align;
    moved.set(r.offset, end);
    end += r.length;
  }
  const out = Buffer.alloc(end);
  for (const r of ranges.values()) out.set(data.subarray(r.offset, r.offset + r.length), moved.get(r.offset)!);
  const to = (o: string) => String(moved.get(Number(o)) ?? Number(o));
  const value = (key: string, v: string) => (key === 'offset' ? to(v) : key.startsWith('prepacked') ? v.replace(PREPACKED, (_, o: string, l: string, n: string) => `${to(o)};${l};${n}`) : v);
  return { graph: rewriteEntries(graph, value), data: out };
}

/** Calls `f` with each external-data tensor's name and entries (key → value), in the graph and its subgraphs. */
function forEachEntry(model: Uint8Array, f: (tensor: string, entries: Map<string, string>) => void): void {
  rewriteEntries(model, (_k, v) => v, f);
}

/**
 * The model with each TensorProto's external_data values passed through `value` (key, value), the
 * rest byte for byte as it was; `seen` gets each such tensor's entries as read.
 */
function rewriteEntries(model: Uint8Array, value: (key: string, v: string) => string, seen?: (tensor: string, entries: Map<string, string>) => void): Buffer {
  const entry = (e: Uint8Array): Buffer | null => {
    let key = '';
    for (const [f, v] of fields(e)) if (f === 1 && v instanceof Uint8Array) key = text(v);
    return rewrite(e, (f, v) => (f === 2 ? Buffer.from(value(key, text(v)), 'utf8') : null));
  };
  const tensor = (t: Uint8Array): Buffer => {
    if (seen) {
      let name = '';
      const entries = new Map<string, string>();
      for (const [f, v] of fields(t)) {
        if (!(v instanceof Uint8Array)) continue;
        if (f === 8) name = text(v);
        if (f !== 13) continue;
        let k = '';
        let val = '';
        for (const [ef, ev] of fields(v)) if (ev instanceof Uint8Array) ef === 1 ? (k = text(ev)) : ef === 2 ? (val = text(ev)) : undefined;
        entries.set(k, val);
      }
      if (entries.size > 0) seen(name, entries);
    }
    return rewrite(t, (f, v) => (f === 13 ? entry(v) : null));
  };
  const sparse = (s: Uint8Array) => rewrite(s, (f, v) => (f === 1 || f === 2 ? tensor(v) : null));
  const attribute = (a: Uint8Array) => rewrite(a, (f, v) => (f === 5 || f === 10 ? tensor(v) : f === 6 || f === 11 ? graph(v) : null));
  const node = (n: Uint8Array) => rewrite(n, (f, v) => (f === 5 ? attribute(v) : null));
  const graph = (g: Uint8Array): Buffer => rewrite(g, (f, v) => (f === 5 ? tensor(v) : f === 15 ? sparse(v) : f === 1 ? node(v) : null));
  return rewrite(model, (f, v) => (f === 7 ? graph(v) : null));
}

/** A protobuf message again, each length-delimited field that `f` returns bytes for replaced by them. */
function rewrite(b: Uint8Array, f: (field: number, value: Uint8Array) => Uint8Array | null): Buffer {
  const parts: Uint8Array[] = [];
  let copied = 0;
  for (const [field, v, keyEnd] of fields(b)) {
    if (!(v instanceof Uint8Array)) continue;
    const to = f(field, v);
    if (!to) continue;
    parts.push(b.subarray(copied, keyEnd), varintBytes(to.byteLength), to);
    copied = v.byteOffset - b.byteOffset + v.byteLength;
  }
  parts.push(b.subarray(copied));
  return Buffer.concat(parts);
}

function varintBytes(x: number): Buffer {
  const out: number[] = [];
  while (x >= 0x80) {
    out.push((x % 0x80) | 0x80);
    x = Math.floor(x / 0x80);
  }
  out.push(x);
  return Buffer.from(out);
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
