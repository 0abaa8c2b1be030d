/**
 * Model bytes, content-addressed by sha256. Registration puts them, nodes fetch them into a local
 * cache of their own (`LocalModels`); nothing else knows where bytes live. The default store is a
 * folder (`file://`, the one-machine case); an object store serves a cluster with no shared disk.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileModelStore } from './file';
import { S3ModelStore, type S3StoreOptions } from './s3';

export { FileModelStore } from './file';
export { parseS3Url, S3ModelStore, type S3StoreOptions } from './s3';
export { assertSha256, sha256Of, sha256OfFile } from './sha256';
export { LocalModels, type LocalModel, type LocalModelsOptions } from './local';

export interface ModelStore {
  /** Where the bytes live, for logs and errors: `file:///data/models`, `s3://bucket/prefix`. */
  readonly url: string;
  /** Stores the bytes (a no-op when they are already there) and returns their sha256. */
  put(bytes: Uint8Array): Promise<string>;
  has(sha256: string): Promise<boolean>;
  /** The bytes. @throws BruleeError MODEL_BYTES_MISSING when the store does not hold them. */
  get(sha256: string): Promise<Uint8Array>;
  /**
   * Writes the bytes to the local file `dest` (streaming where the store can), for a node's local
   * cache; the caller verifies the sha256. @throws BruleeError MODEL_BYTES_MISSING.
   */
  download(sha256: string, dest: string): Promise<void>;
  remove(sha256: string): Promise<void>;
}

/**
 * The store a `MODEL_STORE` URL names: `file://DIR` (or a bare path; relative paths resolve from
 * the working directory), or `s3://bucket/prefix` reached with `s3` (from the AWS variables).
 */
export function createModelStore(url: string, s3: S3StoreOptions = {}): ModelStore {
  if (url.startsWith('file://')) return new FileModelStore(fileURLToPath(url));
  if (url.startsWith('s3://')) return new S3ModelStore(url, s3);
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return new FileModelStore(resolve(url));
  throw new RangeError(`MODEL_STORE ${url}: unsupported scheme; use file://DIR or s3://bucket/prefix`);
}
