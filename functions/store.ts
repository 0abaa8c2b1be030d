import { createHash, randomUUID } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Content-addressed model store: each model's bytes live once, under their sha256. */
export class ModelStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'models');
  }

  static hash(bytes: Uint8Array): string {
    return createHash('sha256').update(bytes).digest('hex');
  }

  path(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new RangeError(`not a sha256: ${sha256}`);
    return join(this.dir, `${sha256}.onnx`);
  }

  async has(sha256: string): Promise<boolean> {
    return stat(this.path(sha256)).then(() => true, () => false);
  }

  /** Writes the bytes (atomically: temp file, then rename) unless they are already stored. */
  async put(bytes: Uint8Array): Promise<string> {
    const sha = ModelStore.hash(bytes);
    if (await this.has(sha)) return sha;
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.${randomUUID()}.tmp`);
    await writeFile(tmp, bytes);
    await rename(tmp, this.path(sha));
    return sha;
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.path(sha256), { force: true });
  }
}
