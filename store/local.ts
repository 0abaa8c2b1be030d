import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BruleeError } from '../errors';
import { MAPPED_FILE_NAME } from '../runtime/mapped';
import type { ModelStore } from './index';
import { assertSha256, sha256OfFile } from './sha256';

export interface LocalModelsOptions {
  store: ModelStore;
  /** This process's cache folder (never shared between processes). */
  dir: string;
  /** Bytes kept; least recently used models go first past it. @default Infinity */
  maxBytes?: number;
}

export interface LocalModel {
  /** The model file, alone in a folder of its own (ONNX external data cannot reach other models). */
  path: string;
  /** Time spent fetching the bytes from the store, ms (0 when they were cached). */
  fetchMs: number;
}

/** Every model's file name; a mapped artifact's graph reads its weights from a file of this name (runtime/mapped.ts). */
const FILE = MAPPED_FILE_NAME;

/** Epoch ms with sub-ms resolution: two uses in the same millisecond still have an order. */
const now = () => performance.timeOrigin + performance.now();

/**
 * A process's local copies of model bytes, for onnxruntime to load from: `dir/<sha256>/model.onnx`,
 * fetched from the store on first use, sha256-verified, bounded by `maxBytes` (least recently used
 * out). One fetch per model at a time, however many loads ask for it.
 */
export class LocalModels {
  private readonly entries = new Map<string, { bytes: number; usedAt: number }>();
  private readonly fetching = new Map<string, Promise<LocalModel>>();
  private scanned?: Promise<void>;
  /** The scan is over: a cache hit is then answered with no await (a cold start's path). */
  private scanDone = false;
  private readonly maxBytes: number;

  constructor(private readonly o: LocalModelsOptions) {
    this.maxBytes = o.maxBytes ?? Infinity;
  }

  get store(): ModelStore {
    return this.o.store;
  }

  /** Bytes held in the cache. */
  get usedBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.bytes;
    return n;
  }

  /** The local file of a model, fetched from the store when it is not cached. */
  async open(sha256: string): Promise<LocalModel> {
    assertSha256(sha256);
    if (!this.scanDone) await this.scan();
    // A copy whose file went away (a wiped DATA_DIR) is fetched again, not handed out.
    const hit = this.present(sha256);
    if (hit) {
      hit.usedAt = now();
      return { path: this.file(sha256), fetchMs: 0 };
    }
    let p = this.fetching.get(sha256);
    if (!p) {
      p = this.fetch(sha256).finally(() => this.fetching.delete(sha256));
      this.fetching.set(sha256, p);
    }
    return p;
  }

  /** Puts bytes the caller already has (a registration) into the cache, without a fetch. */
  async stage(sha256: string, bytes: Uint8Array): Promise<string> {
    assertSha256(sha256);
    await this.scan();
    if (!this.present(sha256)) {
      const folder = join(this.o.dir, sha256);
      await mkdir(folder, { recursive: true });
      const tmp = join(folder, `.${randomUUID()}.tmp`);
      await writeFile(tmp, bytes);
      await rename(tmp, this.file(sha256));
      this.entries.set(sha256, { bytes: bytes.byteLength, usedAt: now() });
      await this.trim(sha256);
    }
    return this.file(sha256);
  }

  /** Drops a model's local copy (its function was deleted, or its bytes failed to load). */
  async drop(sha256: string): Promise<void> {
    assertSha256(sha256);
    this.entries.delete(sha256);
    await rm(join(this.o.dir, sha256), { recursive: true, force: true });
  }

  /** The cache entry of a model whose file is still there; an entry whose file is gone is forgotten. */
  private present(sha256: string): { bytes: number; usedAt: number } | undefined {
    const e = this.entries.get(sha256);
    if (!e) return undefined;
    // Synchronous: a stat of a local file, on every load's path (a trip through the thread pool costs more).
    if (existsSync(this.file(sha256))) return e;
    this.entries.delete(sha256);
    return undefined;
  }

  private file(sha256: string): string {
    return join(this.o.dir, sha256, FILE);
  }

  private async fetch(sha256: string): Promise<LocalModel> {
    const t0 = performance.now();
    const folder = join(this.o.dir, sha256);
    await mkdir(folder, { recursive: true });
    const tmp = join(folder, `.${randomUUID()}.tmp`);
    try {
      await this.o.store.download(sha256, tmp);
      const got = await sha256OfFile(tmp);
      if (got !== sha256) {
        throw new BruleeError('MODEL_BYTES_CORRUPT', `the model store (${this.o.store.url}) returned bytes whose sha256 is ${got.slice(0, 12)}…, not ${sha256.slice(0, 12)}…; the stored copy is damaged, and was not loaded: register the same model file again to rewrite it`);
      }
      await rename(tmp, this.file(sha256));
    } catch (e) {
      await rm(folder, { recursive: true, force: true });
      throw e;
    }
    const { size } = await stat(this.file(sha256));
    this.entries.set(sha256, { bytes: size, usedAt: now() });
    await this.trim(sha256);
    return { path: this.file(sha256), fetchMs: performance.now() - t0 };
  }

  /** Least recently used models out until the cache fits (never `keep`, the one just added). */
  private async trim(keep: string): Promise<void> {
    if (this.usedBytes <= this.maxBytes) return;
    const order = [...this.entries].filter(([sha]) => sha !== keep && !this.fetching.has(sha)).sort((a, b) => a[1].usedAt - b[1].usedAt);
    for (const [sha] of order) {
      if (this.usedBytes <= this.maxBytes) break;
      await this.drop(sha);
    }
  }

  /** What an earlier run of this process left in the folder is still good: its files were verified. */
  private scan(): Promise<void> {
    this.scanned ??= (async () => {
      await mkdir(this.o.dir, { recursive: true });
      for (const name of await readdir(this.o.dir)) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue;
        const s = await stat(join(this.o.dir, name, FILE)).catch(() => undefined);
        if (s) this.entries.set(name, { bytes: s.size, usedAt: s.mtimeMs });
        else await rm(join(this.o.dir, name), { recursive: true, force: true });
      }
      this.scanDone = true;
    })();
    return this.scanned;
  }
}
