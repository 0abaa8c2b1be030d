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
  /**
   * Whether the store holds these bytes intact (`size` bytes of this sha256; as far as the store
   * can tell without reading them where it keeps their size and sha256 beside them); `put` of the
   * same bytes rewrites a copy that is not. Stores without it: `has`.
   */
  intact?(sha256: string, size: number): Promise<boolean>;
  /**
   * Notes that the cluster `id` uses this store now (a small object of its own, `.clusters/<id>`,
   * written again each time). A cluster removes bytes it no longer names only while no other
   * cluster has said so lately (functions/registry.ts): two that share a store would otherwise
   * remove each other's bytes. Stores without it (a test's wrapper) are taken to have one user.
   */
  touchCluster?(id: string): Promise<void>;
  /** The clusters that have said they use this store, each with when it last did (epoch ms). */
  clusters?(): Promise<Array<{ id: string; at: number }>>;
}

/** A cluster id is a uuid (functions/registry.ts); checked before it names a file or an object. */
export function assertClusterId(id: string): void {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) throw new RangeError(`not a cluster id: ${JSON.stringify(id.slice(0, 80))}`);
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
