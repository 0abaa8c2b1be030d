import { BruleeError } from '../errors';

/** Errors of a local file system that cannot take a write: full, over quota, read-only, not ours. */
const CANNOT_WRITE = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM']);

/**
 * The error of a download whose write to this process's model cache (`dest`) failed, or undefined
 * when `e` is not such a failure: the disk here is at fault, not the model store, and the message
 * says so (a full DATA_DIR, not a store to reach).
 */
export function cacheWriteError(sha256: string, dest: string, e: unknown): BruleeError | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (!code || !CANNOT_WRITE.has(code)) return undefined;
  return new BruleeError('INTERNAL', `writing model ${sha256.slice(0, 12)}… to this process's model cache (${dest}) failed (${code}): free space on the disk of DATA_DIR (or its model-cache folder), or lower MODEL_CACHE_BYTES`);
}
