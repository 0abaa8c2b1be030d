import { fork } from 'node:child_process';
import { rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundled } from '../bundle.mjs';
import { BruleeError } from '../errors';
import type { ArtifactForm, Derived, SessionConfig, Signature } from '../runtime/onnx';
import { WARMUP_MODEL_B64 } from '../runtime/warmup-model';
import { MAPPED_FILE_NAME } from '../runtime/mapped';

export interface ProfileRequest {
  path: string;
  /** Dims to profile with, per input; dynamic dims default to 1. */
  dims: Record<string, number[]>;
  loadRuns: number;
  execRuns: number;
  warmupModelB64: string;
  session: Partial<SessionConfig>;
  /** `path` is a pre-optimized artifact: load it with graph optimization disabled. */
  preOptimized: boolean;
  /** Write the pre-optimized artifact of `path` here first (`deriveOptimized`). */
  derive?: string;
  /** The best artifact form to write (`deriveOptimized`). @default 'mapped' */
  deriveForm?: ArtifactForm;
  /** When `derive` wrote the ORT format for a file of 1 MiB or more, also write the ONNX form here, to be measured against it. */
  deriveAlt?: string;
  /** The most bytes of inputs the profiling run may take (MAX_REQUEST_BYTES: no call can send more). */
  maxInputBytes?: number;
}

export type ProfileReply =
  | {
      ok: true;
      signature: Signature;
      loadMs: number;
      loadSamplesMs: number[];
      execMs: number | null;
      execError: string | null;
      /** sha256 over the first run's outputs (name, then bytes, by name); null when it failed. */
      outputsSha256: string | null;
      profiledDims: Record<string, number[]>;
      rssDeltaBytes: number;
      fileBytes: number;
      /** What `derive` wrote. */
      derived?: Derived;
      /** Where `deriveAlt` wrote the ONNX form, when it did. */
      derivedAlt?: string;
    }
  /** `option`: the request's own profiling options cannot fit the model (INVALID_OPTION, not INVALID_MODEL). */
  | { ok: false; error: string; option?: true };

/** What registration learns about a model before it answers. */
export interface Profile {
  /**
   * Median of `loadRuns` session creates, ms, of what a node loads: the pre-optimized artifact
   * when there is one (see `artifact`), else the original; under the function's session options.
   */
  loadMs: number;
  /** The same for the original model (onnxruntime optimizing its graph at the load), ms. */
  originalLoadMs: number;
  /**
   * The pre-optimized artifact nodes load instead of the original, or null (then `artifactError`
   * says why). Exec time and resident bytes are measured on it. `form`: `mapped` (its large
   * weights stored already packed, mapped at a load: runtime/mapped.ts), `ort` (onnxruntime's own
   * format) or `onnx`; `formNote` says why a better form was not used.
   */
  artifact: { key: string; sha256: string; fileBytes: number; form: ArtifactForm; formNote?: string } | null;
  artifactError: string | null;
  loadSamplesMs: number[];
  /** Median exec time on a generated input, ms; null when that run failed (see execError). */
  execMs: number | null;
  /** Why the generated-input run failed; exec time is then learned from live invocations. */
  execError: string | null;
  profiledDims: Record<string, number[]>;
  /** Resident bytes the cache charges: measured RSS growth, at least the file size. */
  residentBytes: number;
  /** RSS growth of a fresh process after loading the model and running it once. */
  rssDeltaBytes: number;
  fileBytes: number;
  /**
   * residentBytes / fileBytes; null for files under MEMORY_FACTOR_MIN_FILE_BYTES, whose resident
   * bytes are mostly onnxruntime's per-session overhead (an 827-byte MLP measures ~640 KiB: 790x).
   */
  memoryFactor: number | null;
  /** Why memoryFactor is null, when it is. */
  memoryNote?: string;
}

/** Below this file size the resident/file ratio says nothing about the model (see Profile.memoryFactor). */
export const MEMORY_FACTOR_MIN_FILE_BYTES = 1024 * 1024;

export interface ProfileOptions {
  dims?: Record<string, number[]>;
  /** See ProfileRequest.maxInputBytes. */
  maxInputBytes?: number;
  /** The session options the function's nodes will use. */
  session?: Partial<SessionConfig>;
  /**
   * A scratch file for the pre-optimized artifact: it is derived and profiled (outputs checked
   * equal to the original's, bit for bit); the caller stores it when `artifactOk` says so.
   */
  artifactPath?: string;
  loadRuns?: number;
  execRuns?: number;
  timeoutMs?: number;
}

/**
 * Whether the optimized ONNX form is kept over the ORT format, and why (null: keep the ORT
 * format, which holds clearly fewer bytes). One profile's resident bytes move by up to ~1.4 MB
 * between two runs of the same form (PP-OCR det: its two forms measured 0.1-1.4 MB apart either
 * way, so a plain comparison kept one at random), so the ORT format must hold fewer by more than
 * that noise: max(2 MiB, 10% of the larger). Otherwise the ONNX form is kept, the format of the
 * original: for det it also loaded faster (55 against 78 ms), held 4.6 MiB less and ran 18%
 * faster warm at a 320x320 input in bench:models. Silero VAD's ORT format holds ~6 MB less.
 */
export function onnxFormWins(ort: { rssDeltaBytes: number }, onnx: { rssDeltaBytes: number }): string | null {
  const fewer = onnx.rssDeltaBytes - ort.rssDeltaBytes;
  const noise = Math.max(2 * 1024 * 1024, 0.1 * Math.max(ort.rssDeltaBytes, onnx.rssDeltaBytes));
  if (fewer > noise) return null;
  return fewer > 0 ? `the ORT format held only ${fewer} bytes fewer than the ONNX form, within the measure's noise (${Math.round(noise)})` : `the ORT format held ${-fewer} bytes more than the ONNX form`;
}

const CHILD = 'functions/profile-child.ts';
/** tsx's loader, resolved from here rather than from the working directory the server was started in. */
const TSX = import.meta.resolve('tsx');

/**
 * The profiling child, as one esbuild bundle run by plain node (bundle.mjs: built once per
 * checkout and sources, checked once per process, and again if it was removed): through tsx each
 * fork paid ~0.5 s more of tsx's own start. Where .build/ cannot be written, through tsx as
 * before. A failed build (a broken source) is tried again at the next registration.
 */
async function childCommand(): Promise<{ file: string; execArgv: string[] }> {
  const out = await bundled(CHILD);
  return out ? { file: out, execArgv: ['--expose-gc'] } : { file: fileURLToPath(new URL('./profile-child.ts', import.meta.url)), execArgv: ['--import', TSX, '--expose-gc'] };
}

/**
 * Profiles a stored model in a fresh child process, so the memory it measures is the model's own.
 * @throws BruleeError INVALID_MODEL (onnxruntime's message) when the model cannot be loaded.
 */
export async function profileModel(path: string, opts: ProfileOptions = {}): Promise<{ signature: Signature; profile: Omit<Profile, 'artifact'>; artifactOk: boolean; derived?: Derived }> {
  const base = {
    dims: opts.dims ?? {},
    loadRuns: opts.loadRuns ?? 3,
    execRuns: opts.execRuns ?? 3,
    warmupModelB64: WARMUP_MODEL_B64,
    session: opts.session ?? {},
    ...(opts.maxInputBytes !== undefined ? { maxInputBytes: opts.maxInputBytes } : {}),
  };
  const timeoutMs = opts.timeoutMs ?? 120_000;
  let original = await runChild({ ...base, path, preOptimized: false, ...(opts.artifactPath ? { derive: opts.artifactPath, deriveAlt: join(dirname(opts.artifactPath), 'onnx-form', MAPPED_FILE_NAME) } : {}) }, timeoutMs);
  if (!original.ok) throw profileFailed(original);
  let chosen = original;
  let artifactError: string | null = opts.artifactPath ? null : 'not derived';
  let derived = original.derived;
  if (opts.artifactPath) {
    // A second fresh process: the derivation's own memory must not hide the artifact's.
    const check = async (): Promise<string | null> => {
      const a = await runChild({ ...base, path: opts.artifactPath!, preOptimized: true }, timeoutMs).catch((e: unknown) => ({ ok: false as const, error: e instanceof Error ? e.message : String(e) }));
      if (!a.ok) return `the optimized model did not load: ${a.error}`;
      if (a.outputsSha256 !== (original as { outputsSha256: string | null }).outputsSha256) return "the optimized model's outputs differ from the original's on the profiling input";
      chosen = a;
      return null;
    };
    artifactError = await check();
    // A form that fails its check falls back to the next one (mapped → ORT format → ONNX): derive that and check it instead.
    while (artifactError !== null && derived && derived.form !== 'onnx') {
      const failed = `the ${derived.form} form was not used: ${artifactError}`;
      const form = derived.form === 'mapped' ? 'ort' : 'onnx';
      const again = await runChild({ ...base, path, preOptimized: false, derive: opts.artifactPath, deriveForm: form }, timeoutMs);
      if (!again.ok) throw profileFailed(again);
      original = again;
      chosen = again;
      derived = { form: again.derived?.form ?? form, note: derived.note ? `${derived.note}; ${failed}` : failed };
      artifactError = await check();
    }
    // The ORT format holds less for some models (Silero VAD: 6 MiB) and more for others (PP-OCR
    // det: 3 MiB): for files of 1 MiB and more, the optimized ONNX form derived beside it is
    // measured too, and the ORT format is kept only when it holds clearly fewer (onnxFormWins).
    const alt = original.ok ? original.derivedAlt : undefined;
    if (artifactError === null && derived?.form === 'ort' && alt) {
      const ort = chosen;
      const b = await runChild({ ...base, path: alt, preOptimized: true }, timeoutMs).catch(() => null);
      const why = b?.ok && b.outputsSha256 === original.outputsSha256 && ort.ok ? onnxFormWins(ort, b) : null;
      if (b?.ok && why) {
        await rename(alt, opts.artifactPath);
        chosen = b;
        derived = { form: 'onnx', note: `${derived.note ? `${derived.note}; ` : ''}${why}` };
      }
    }
  }
  const residentBytes = Math.max(chosen.rssDeltaBytes, original.fileBytes);
  return {
    signature: original.signature,
    artifactOk: chosen !== original,
    ...(derived ? { derived } : {}),
    profile: {
      loadMs: round(chosen.loadMs),
      loadSamplesMs: chosen.loadSamplesMs.map(round),
      originalLoadMs: round(original.loadMs),
      artifactError,
      execMs: chosen.execMs === null ? null : round(chosen.execMs),
      execError: chosen.execError,
      profiledDims: chosen.profiledDims,
      residentBytes,
      rssDeltaBytes: chosen.rssDeltaBytes,
      fileBytes: original.fileBytes,
      ...(original.fileBytes >= MEMORY_FACTOR_MIN_FILE_BYTES
        ? { memoryFactor: Math.round((residentBytes / original.fileBytes) * 100) / 100 }
        : {
            memoryFactor: null,
            memoryNote: `the file is under 1 MiB: its ${residentBytes} resident bytes are mostly onnxruntime's per-session overhead, so no memory factor is given; the cache charges the resident bytes`,
          }),
    },
  };
}

/** A profiling child's failure: the model's (INVALID_MODEL), or the profiling options' (INVALID_OPTION). */
function profileFailed(r: { error: string; option?: true }): BruleeError {
  return new BruleeError(r.option ? 'INVALID_OPTION' : 'INVALID_MODEL', r.error);
}

async function runChild(req: ProfileRequest, timeoutMs: number): Promise<ProfileReply> {
  const { file, execArgv } = await childCommand();
  return new Promise<ProfileReply>((resolve, reject) => {
    const child = fork(file, [], {
      execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new BruleeError('INVALID_MODEL', `profiling did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('message', (m: ProfileReply) => {
      clearTimeout(timer);
      resolve(m);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new BruleeError('INVALID_MODEL', `onnxruntime crashed while loading the model (exit ${code ?? signal}): ${stderr.trim() || 'no message'}`));
    });
    child.send(req);
  });
}

const round = (x: number) => Math.round(x * 1000) / 1000;
