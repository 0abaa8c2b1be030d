import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BruleeError } from '../errors';
import type { Signature } from '../runtime/onnx';
import { WARMUP_MODEL_B64 } from '../runtime/warmup-model';

export interface ProfileRequest {
  path: string;
  /** Dims to profile with, per input; dynamic dims default to 1. */
  dims: Record<string, number[]>;
  loadRuns: number;
  execRuns: number;
  warmupModelB64: string;
}

export type ProfileReply =
  | {
      ok: true;
      signature: Signature;
      loadMs: number;
      loadSamplesMs: number[];
      execMs: number | null;
      execError: string | null;
      profiledDims: Record<string, number[]>;
      rssDeltaBytes: number;
      fileBytes: number;
    }
  | { ok: false; error: string };

/** What registration learns about a model before it answers. */
export interface Profile {
  /** Median of `loadRuns` session creates, ms. */
  loadMs: number;
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
  loadRuns?: number;
  execRuns?: number;
  timeoutMs?: number;
}

const CHILD = fileURLToPath(new URL('./profile-child.ts', import.meta.url));
/** tsx's loader, resolved from here rather than from the working directory the server was started in. */
const TSX = import.meta.resolve('tsx');

/**
 * Profiles a stored model in a fresh child process, so the memory it measures is the model's own.
 * @throws BruleeError INVALID_MODEL (onnxruntime's message) when the model cannot be loaded.
 */
export async function profileModel(path: string, opts: ProfileOptions = {}): Promise<{ signature: Signature; profile: Profile }> {
  const req: ProfileRequest = {
    path,
    dims: opts.dims ?? {},
    loadRuns: opts.loadRuns ?? 3,
    execRuns: opts.execRuns ?? 3,
    warmupModelB64: WARMUP_MODEL_B64,
  };
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const reply = await new Promise<ProfileReply>((resolve, reject) => {
    const child = fork(CHILD, [], {
      execArgv: ['--import', TSX, '--expose-gc'],
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
  if (!reply.ok) throw new BruleeError('INVALID_MODEL', reply.error);
  const residentBytes = Math.max(reply.rssDeltaBytes, reply.fileBytes);
  return {
    signature: reply.signature,
    profile: {
      loadMs: round(reply.loadMs),
      loadSamplesMs: reply.loadSamplesMs.map(round),
      execMs: reply.execMs === null ? null : round(reply.execMs),
      execError: reply.execError,
      profiledDims: reply.profiledDims,
      residentBytes,
      rssDeltaBytes: reply.rssDeltaBytes,
      fileBytes: reply.fileBytes,
      ...(reply.fileBytes >= MEMORY_FACTOR_MIN_FILE_BYTES
        ? { memoryFactor: Math.round((residentBytes / reply.fileBytes) * 100) / 100 }
        : {
            memoryFactor: null,
            memoryNote: `the file is under 1 MiB: its ${residentBytes} resident bytes are mostly onnxruntime's per-session overhead, so no memory factor is given; the cache charges the resident bytes`,
          }),
    },
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;
