import { randomUUID } from 'node:crypto';
import { copyFile, link, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BruleeError } from '../errors';
import { cacheWriteError, cannotWrite } from './errors';
import { assertClusterId, type ModelStore } from './index';
import { assertSha256, sha256Of, sha256OfFile } from './sha256';

/** A put's temporary file, `.<uuid>.tmp`, renamed to `<sha256>.onnx` once written. */
const TMP = '.tmp';
const LEFTOVER = /^\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$/;
const LEFTOVER_AFTER_MS = 60 * 60_000;

/** Model bytes in one folder, `<sha256>.onnx` each: the embedded, one-machine store. */
export class FileModelStore implements ModelStore {
  readonly url: string;

  constructor(readonly dir: string) {
    this.url = pathToFileURL(dir).href;
  }

  private file(sha256: string): string {
    assertSha256(sha256);
    return join(this.dir, `${sha256}.onnx`);
  }

  async has(sha256: string): Promise<boolean> {
    return stat(this.file(sha256)).then(() => true, () => false);
  }

  /**
   * Writes atomically (temp file, then rename) unless these bytes are already stored intact: a
   * copy of another size or sha256 (a bad disk, a bad copy: nodes refuse it, MODEL_BYTES_CORRUPT)
   * is replaced, so registering the same file again repairs it, as the S3 store does.
   */
  async put(bytes: Uint8Array): Promise<string> {
    const sha = sha256Of(bytes);
    if (await this.intact(sha, bytes.byteLength)) return sha;
    await mkdir(this.dir, { recursive: true });
    this.swept ??= this.removeLeftovers();
    await this.swept;
    const tmp = join(this.dir, `.${randomUUID()}${TMP}`);
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, this.file(sha));
    } catch (e) {
      // A full disk leaves no partial copy behind to fill it further.
      await rm(tmp, { force: true }).catch(() => undefined);
      const code = cannotWrite(e);
      if (code) {
        throw new BruleeError('MODEL_STORE_UNAVAILABLE', `the model store ${this.url} cannot store ${bytes.byteLength} bytes (${code}): free space there (or let this process write there), or point MODEL_STORE at another folder`);
      }
      throw e;
    }
    return sha;
  }

  /** The first put of a process removes what puts of processes killed mid-write left (an hour old: no write takes that long). */
  private swept?: Promise<void>;

  private async removeLeftovers(): Promise<void> {
    for (const name of await readdir(this.dir).catch(() => [])) {
      if (!LEFTOVER.test(name)) continue;
      const file = join(this.dir, name);
      const s = await stat(file).catch(() => undefined);
      if (s && Date.now() - s.mtimeMs > LEFTOVER_AFTER_MS) await rm(file, { force: true }).catch(() => undefined);
    }
  }

  async intact(sha256: string, size: number): Promise<boolean> {
    const s = await stat(this.file(sha256)).catch(() => undefined);
    if (s?.size !== size) return false;
    return (await sha256OfFile(this.file(sha256)).catch(() => undefined)) === sha256;
  }

  async get(sha256: string): Promise<Uint8Array> {
    try {
      return new Uint8Array(await readFile(this.file(sha256)));
    } catch (e) {
      throw missing(sha256, e);
    }
  }

  /** A hard link when `dest` is on the same file system (no copy), else a copy. */
  async download(sha256: string, dest: string): Promise<void> {
    const src = this.file(sha256);
    try {
      await link(src, dest);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw missing(sha256, e);
      await copyFile(src, dest).catch((err: unknown) => {
        throw cacheWriteError(sha256, dest, err) ?? missing(sha256, err);
      });
    }
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.file(sha256), { force: true });
  }

  /** `.clusters/<id>`, an empty file whose modification time says when. */
  async touchCluster(id: string): Promise<void> {
    assertClusterId(id);
    const dir = join(this.dir, '.clusters');
    await mkdir(dir, { recursive: true });
    const file = join(dir, id);
    const now = new Date();
    await utimes(file, now, now).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
      await writeFile(file, '');
    });
  }

  async clusters(): Promise<Array<{ id: string; at: number }>> {
    const dir = join(this.dir, '.clusters');
    const names = await readdir(dir).catch(() => []);
    const found = await Promise.all(names.map(async (id) => ({ id, at: (await stat(join(dir, id)).catch(() => undefined))?.mtimeMs })));
    return found.filter((c): c is { id: string; at: number } => c.at !== undefined);
  }
}

function missing(sha256: string, cause: unknown): BruleeError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code && code !== 'ENOENT') return new BruleeError('INTERNAL', `reading model ${sha256.slice(0, 12)} from the model store failed (${code})`);
  return new BruleeError('MODEL_BYTES_MISSING', `the model store holds no bytes for ${sha256.slice(0, 12)}…: the function was deleted or replaced, or the store lost them (register the model again)`);
}
