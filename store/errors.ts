import { BruleeError } from '../errors';

/**
 * Errors of a local file system that cannot take a write: full, over quota, read-only, not ours
 * (EACCES), or refused by the file system's own rules (EPERM: an immutable or append-only folder,
 * a sticky folder's file of another user, an operation the file system does not have). Each is a
 * fault of the place written to, not of the bytes: the remedy is there.
 */
const CANNOT_WRITE = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM']);

/** The errno code of `e` when it is a write that the local file system cannot take (`CANNOT_WRITE`), else undefined. */
export function cannotWrite(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && CANNOT_WRITE.has(code) ? code : undefined;
}

/**
 * The error of a download whose write to this process's model cache (`dest`) failed, or undefined
 * when `e` is not such a failure: the disk here is at fault, not the model store, and the message
 * says so (a full DATA_DIR, not a store to reach).
 */
export function cacheWriteError(sha256: string, dest: string, e: unknown): BruleeError | undefined {
  const code = cannotWrite(e);
  if (!code) return undefined;
  return new BruleeError('INTERNAL', `writing model ${sha256.slice(0, 12)}… to this process's model cache (${dest}) failed (${code}): free space on the disk of DATA_DIR (or its model-cache folder), or lower MODEL_CACHE_BYTES`);
}
