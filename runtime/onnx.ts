import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { arch, cpus, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BruleeError } from '../errors';
import type { Tensor } from '../queue/wire';
import { HostOpError, type Created, type SessionHost } from './session-host';
import { inLoadWindow, LOAD_WINDOW_MIN_REUSE_BYTES, trimFreed } from './malloc';
import { artifactLayout, externalRefs, prepackedReuseBytes, MAPPED_EXTERNAL_MIN_BYTES, MAPPED_FILE_NAME, mappedProblem, packMapped, readGraphAt, relayMapped, worthMapping, type ArtifactLayout } from './mapped';

/**
 * The one small interface brulee has to ONNX (as onnxruntime's js packages split interface from
 * backend): load a model, run it, dispose it. Nothing else in brulee imports onnxruntime.
 */

/** One input or output of a model: its name, element type and dims (a string for a dynamic axis). */
export interface TensorSpec {
  name: string;
  /** onnxruntime's element type name (`float32`, `int64`, `bool`, `string`, `float16`, ...). */
  type: string;
  dims: Array<number | string>;
}

export interface Signature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface LoadedModel {
  readonly signature: Signature;
  /**
   * Its session lives in a session host's thread (`LoadOptions.host`): its outputs are made there,
   * so the main thread's `process.memoryUsage().arrayBuffers` does not count them.
   */
  readonly hosted?: true;
  /**
   * The file onnxruntime maps this model's weights from (a mapped artifact, runtime/mapped.ts), as
   * `/proc/self/maps` names it: what a parked session gives back (runtime/parked.ts).
   */
  readonly mappedPath?: string;
  /** Runs the model; `outputs` selects output names (all when absent). */
  run(inputs: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>>;
  dispose(): Promise<void>;
}

/**
 * How a session is built: the knobs that trade threads and memory for speed. brulee's defaults
 * are chosen for a cache of many models, most of them idle (measured in
 * `bench/models.bench.ts`; see bench/README.md): no thread pool per session (onnxruntime's default
 * gives every session one thread per core, which costs tens of ms at each load, a thread per core
 * per resident model, and is slower on a shared 2-core machine). The arena stays on: without it
 * resident bytes were no lower (glibc keeps what onnxruntime frees) and runs no faster.
 */
export interface SessionConfig {
  /** Intra-op threads; 1 runs each operator on the calling thread, with no pool of its own. @default 1 */
  threads: number;
  /** onnxruntime's CPU memory arena (`enableCpuMemArena`). @default true */
  arena: boolean;
  /** Memory pattern planning (`enableMemPattern`): pre-plans one block for a run's intermediates. @default true */
  memPattern: boolean;
  /** @default 'sequential' */
  executionMode: 'sequential' | 'parallel';
  /**
   * onnxruntime's weight prepacking (`session.disable_prepacking` when false): kernels such as
   * MatMul, Gemm and LSTM copy their weights into a packed layout at load. Off, the load skips that
   * copy, but the kernels then take another path whose float sums differ in the last bits.
   * @default true
   */
  prepacking: boolean;
  /** Other onnxruntime session config entries (`extra.session`, e.g. `use_device_allocator_for_initializers: '1'`). */
  extra?: Record<string, string>;
}

export const DEFAULT_SESSION: SessionConfig = { threads: 1, arena: true, memPattern: true, executionMode: 'sequential', prepacking: true };

/** onnxruntime's defaults, as `InferenceSession.create(path)` with no options has them (for benchmarks). */
export const ORT_DEFAULT_SESSION: SessionConfig = { threads: 0, arena: true, memPattern: true, executionMode: 'sequential', prepacking: true };

/** The onnxruntime version sessions are built with (part of every derived artifact's key). */
export const ORT_VERSION = ort.env.versions.node ?? ort.env.versions.common;

function sessionOptions(c: SessionConfig, preOptimized: boolean, entries: Record<string, string> = {}): ort.InferenceSession.SessionOptions {
  const session = { ...c.extra, ...(c.prepacking ? {} : { disable_prepacking: '1' }), ...entries };
  return {
    intraOpNumThreads: c.threads, // 0: onnxruntime picks (one per core)
    interOpNumThreads: c.executionMode === 'parallel' ? c.threads : 1,
    enableCpuMemArena: c.arena,
    enableMemPattern: c.memPattern,
    executionMode: c.executionMode,
    // An artifact has its optimizations applied already: doing them again is what it saves.
    graphOptimizationLevel: preOptimized ? 'disabled' : 'all',
    ...(Object.keys(session).length === 0 ? {} : { extra: { session } }),
  };
}

function specs(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => {
    if (!m.isTensor) return { name: m.name, type: 'non-tensor', dims: [] };
    return { name: m.name, type: m.type, dims: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : typeof d === 'string' && d !== '' ? d : '?')) };
  });
}

export interface LoadOptions {
  session?: Partial<SessionConfig>;
  /** The source is an artifact of `deriveOptimized`: load it with graph optimization disabled. */
  preOptimized?: boolean;
  /** With `preOptimized`: the artifact's layout, as `artifactLayout` read it before (else it is read here). */
  layout?: ArtifactLayout;
  /**
   * Load and run the session in this host's thread, off the main thread (runtime/session-host.ts):
   * for a model whose load or run is long (`offThread`). Absent: on the calling thread.
   */
  host?: SessionHost;
}

/** Where sessions run (`ORT_OFF_THREAD`): off the main thread for long models (`auto`), always, or never. */
export type OffThreadMode = 'auto' | 'always' | 'never';

/** `offThread`'s thresholds, ms. */
export interface OffThreadLimits {
  /** A run this long or longer (`ORT_OFF_THREAD_MS`). @default 10 */
  runMs: number;
  /** A load this long or longer (`ORT_OFF_THREAD_LOAD_MS`). @default 100 */
  loadMs: number;
}

/**
 * Whether a model's session goes off the main thread: with `auto`, when registration measured its
 * run at `limits.runMs` or more, or its load at `limits.loadMs` or more. A model with short runs
 * stays on the main thread, where a run costs no message to another thread and back (~0.35-0.45 ms
 * a call for PP-OCR cls's 110 KB at load 2-3, bench/README.md): its load, once per cold start, stalls the
 * process only as long as it is under `loadMs`. The node adds models whose runs here took `runMs`
 * or more on larger inputs than registration's (`RuntimeNode`, at their next load).
 */
export function offThread(mode: OffThreadMode, limits: OffThreadLimits, profile: { loadMs: number; execMs: number }): boolean {
  if (mode !== 'auto') return mode === 'always';
  return profile.execMs >= limits.runMs || profile.loadMs >= limits.loadMs;
}

/**
 * Loads a model from a file path or bytes.
 * @throws BruleeError INVALID_MODEL with onnxruntime's own message when it cannot be loaded.
 */
export async function loadModel(source: string | Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  const config = { ...DEFAULT_SESSION, ...opts.session };
  // What onnxruntime is given: the same on either thread.
  let what: string | Uint8Array;
  let so: ort.InferenceSession.SessionOptions;
  // A mapped artifact's load packs its weights again into buffers it frees at once: with several
  // large ones it runs in a load window (runtime/malloc.ts), where one weight's copy reuses the
  // pages of the last one's.
  let windowed = false;
  let mappedPath: string | undefined;
  try {
    const a = typeof source === 'string' && opts.preOptimized ? (opts.layout ?? artifactLayout(source)) : null;
    if (a?.form === 'mapped') {
      // Its graph, whose weights onnxruntime maps from the same file (runtime/mapped.ts).
      what = readGraphAt(source as string, a);
      so = sessionOptions(config, true, { model_external_initializers_file_folder_path: dirname(source as string) });
      windowed = prepackedReuseBytes(what) >= LOAD_WINDOW_MIN_REUSE_BYTES;
      mappedPath = realpathSync(join(dirname(source as string), MAPPED_FILE_NAME));
    } else if (a?.form === 'ort') {
      what = source;
      so = sessionOptions(config, true, { load_model_format: 'ORT' });
    } else {
      what = source;
      so = sessionOptions(config, opts.preOptimized ?? false);
    }
  } catch (e) {
    throw invalidModel(e);
  }
  const create = windowed ? inLoadWindow : <T>(f: () => Promise<T>) => f();
  if (opts.host) return loadOffThread(opts.host, what, so, create, mappedPath);
  let session: ort.InferenceSession;
  try {
    session = await create(() => (typeof what === 'string' ? ort.InferenceSession.create(what, so) : ort.InferenceSession.create(what, so)));
  } catch (e) {
    throw invalidModel(e);
  }
  const signature: Signature = { inputs: specs(session.inputMetadata), outputs: specs(session.outputMetadata) };
  return {
    signature,
    ...(mappedPath === undefined ? {} : { mappedPath }),
    async run(inputs, outputs) {
      const feeds: Record<string, ort.Tensor> = {};
      let result: ort.InferenceSession.ReturnType;
      try {
        // Inside the try: a tensor onnxruntime refuses (a dim it cannot take) is bad input, not a bug.
        for (const [name, t] of Object.entries(inputs)) {
          feeds[name] = new ort.Tensor(t.type, t.data as ort.Tensor.DataType, t.dims);
        }
        result = outputs ? await session.run(feeds, outputs) : await session.run(feeds);
      } catch (e) {
        throw inferenceFailed(e);
      }
      const out: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(result)) {
        // A string tensor's data is string[], every other type's a typed array: the same shapes as Tensor.
        out[name] = { type: t.type, dims: [...t.dims], data: t.data } as Tensor;
      }
      return out;
    },
    async dispose() {
      await session.release();
      trimFreed();
    },
  };
}

const invalidModel = (e: unknown) => new BruleeError('INVALID_MODEL', `onnxruntime cannot load this model: ${withoutPaths(e instanceof Error ? e.message : String(e))}`);
const inferenceFailed = (e: unknown) => new BruleeError('INFERENCE_FAILED', `onnxruntime could not run the model on these inputs: ${withoutPaths(e instanceof Error ? e.message : String(e))}`);

/** onnxruntime's errors as `loadModel`'s on the main thread; the host's own (its thread stopped) as they are. */
const fromHost = (wrap: (e: unknown) => BruleeError) => (e: unknown) => Promise.reject(e instanceof HostOpError ? wrap(e) : e);

/**
 * A session in one of `host`'s threads. Should that thread stop, the call in flight fails
 * (`INTERNAL`) and the next run creates the session again in the host, from the same source (a
 * path, or the bytes given, which it keeps for that).
 */
async function loadOffThread(host: SessionHost, what: string | Uint8Array, so: ort.InferenceSession.SessionOptions, create: <T>(f: () => Promise<T>) => Promise<T>, mappedPath?: string): Promise<LoadedModel> {
  let s = await create(() => host.create(what, so)).catch(fromHost(invalidModel));
  let again: Promise<Created> | undefined;
  let disposed = false;
  const current = async (): Promise<Created> => {
    if (host.lives(s)) return s;
    again ??= create(() => host.create(what, so))
      .catch(fromHost(invalidModel))
      .finally(() => (again = undefined));
    return (s = await again);
  };
  return {
    signature: { inputs: specs(s.inputs), outputs: specs(s.outputs) },
    hosted: true,
    ...(mappedPath === undefined ? {} : { mappedPath }),
    async run(inputs, outputs) {
      if (disposed) throw new BruleeError('INTERNAL', 'a run of a disposed model');
      return host.run(await current(), inputs, outputs).catch(fromHost(inferenceFailed));
    },
    async dispose() {
      disposed = true;
      await host.release(s).catch(() => undefined);
      trimFreed();
    },
  };
}

/**
 * onnxruntime's message without the server's file paths (`Load model from /srv/data/…/model.onnx
 * failed: …` would tell a client where the data lives): every absolute path becomes `<file>`.
 */
export function withoutPaths(message: string): string {
  return message.replace(/(^|[\s'"(=])\/[^\s'"):,]+/g, '$1<file>');
}

/**
 * What a pre-optimized artifact depends on besides its source: onnxruntime's version (an upgrade
 * re-derives it), the optimization level, and the CPU (level `all` applies layout transforms,
 * NCHWc, whose block size follows the CPU's vector width). Nodes on another CPU or onnxruntime
 * compute another key, find no artifact, and load the original.
 */
export function artifactFacts(): Record<string, string> {
  return { format: 'brulee-optimized-onnx/2', ort: ORT_VERSION, level: 'all', arch: arch(), cpu: cpus()[0]?.model ?? 'unknown' };
}

/** The derived-artifact key of a source model (sha256 of the source's sha256 and `artifactFacts()`). */
export function artifactKey(sourceSha256: string): string {
  return createHash('sha256').update(JSON.stringify({ source: sourceSha256, ...artifactFacts() })).digest('hex');
}

/**
 * The forms of a pre-optimized artifact, best first: `mapped` (large weights stored prepacked and
 * mapped at load, runtime/mapped.ts), `ort` (onnxruntime's own format: no ONNX protobuf kept
 * behind; Silero VAD, whose weights sit in `If` subgraphs, holds 6-7 MiB less), `onnx` (the
 * optimized ONNX model).
 */
export type ArtifactForm = 'mapped' | 'ort' | 'onnx';

/** What `deriveOptimized` wrote. */
export interface Derived {
  form: ArtifactForm;
  /** Why a better form than `form` was not written, when one was asked for. */
  note?: string;
}

/**
 * Applies onnxruntime's graph optimizations (level `all`) once and writes the optimized model to
 * `outPath` (onnxruntime's `optimizedModelFilePath`). Loading it with optimization disabled gives
 * the same graph the original gets at every load, so the outputs are the same bits.
 *
 * `form` is the best form to try (default `mapped`). The mapped form needs a tensor over 1 MiB, or
 * 4 MiB in tensors of a page or more (`worthMapping`; else the ORT format is written); every tensor
 * of a page or more then goes to its data file, laid out on pages (runtime/mapped.ts). `outPath` must be named `MAPPED_FILE_NAME`.
 * @throws BruleeError INVALID_MODEL when onnxruntime cannot load the source.
 */
export async function deriveOptimized(sourcePath: string, outPath: string, opts: { form?: ArtifactForm } = {}): Promise<Derived> {
  const form = opts.form ?? 'mapped';
  let note: string | undefined;
  if (form === 'mapped') {
    if (basename(outPath) !== MAPPED_FILE_NAME) throw new Error(`deriveOptimized: a mapped artifact must be written to a file named ${MAPPED_FILE_NAME}, not ${outPath}`);
    const dir = await mkdtemp(join(tmpdir(), 'brulee-derive-'));
    try {
      await optimize(sourcePath, join(dir, 'graph.onnx'), {
        optimized_model_external_initializers_file_name: MAPPED_FILE_NAME,
        optimized_model_external_initializers_min_size_in_bytes: String(MAPPED_EXTERNAL_MIN_BYTES),
        save_external_prepacked_constant_initializers: '1',
      });
      const written = await readFile(join(dir, 'graph.onnx'));
      const data = await readFile(join(dir, MAPPED_FILE_NAME)).catch(() => null);
      if (!data || !worthMapping(externalRefs(written))) note = 'no tensor was large enough to be mapped';
      else {
        let relaid: ReturnType<typeof relayMapped> | undefined;
        try {
          relaid = relayMapped(written, data);
          note = mappedProblem(relaid.graph, relaid.data.byteLength) ?? undefined;
        } catch (e) {
          note = `its data could not be laid out again: ${e instanceof Error ? e.message : String(e)}`;
        }
        if (relaid && note === undefined) {
          await writeFile(outPath, packMapped(relaid.data, relaid.graph));
          return { form: 'mapped' };
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  if (form !== 'onnx') {
    await optimize(sourcePath, outPath, { save_model_format: 'ORT' });
    return { form: 'ort', ...(note ? { note } : {}) };
  }
  await optimize(sourcePath, outPath, {});
  return { form: 'onnx' };
}

async function optimize(sourcePath: string, outPath: string, entries: Record<string, string>): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(sourcePath, {
      ...sessionOptions(DEFAULT_SESSION, false, entries),
      optimizedModelFilePath: outPath,
      logSeverityLevel: 3, // its warning that level `all` is CPU-specific is why the key names the CPU
    });
  } catch (e) {
    throw new BruleeError('INVALID_MODEL', `onnxruntime cannot load this model: ${withoutPaths(e instanceof Error ? e.message : String(e))}`);
  }
  await session.release();
}
