import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { FileModelStore, sha256Of } from '../../store';
import { canUnshare, onFullDisk } from '../support/full-disk';

/*
 * The file:// store's writes: a put writes a temporary file and renames it. One that fails (a full
 * disk) removes its temporary file and says what to do, with a code; ones a killed process left
 * are removed by the next process's first put, once an hour old. Real file systems: a real small
 * tmpfs filled up, in a mount namespace of the test's own.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'brulee-file-store-'));
  dirs.push(d);
  return d;
};

it.skipIf(!canUnshare)('a put on a full disk fails with MODEL_STORE_UNAVAILABLE and leaves no partial file', async () => {
  // The store on the full disk: a 256 KiB model does not fit.
  const r = await onFullDisk(`const { FileModelStore } = await import(store);
await new FileModelStore(process.argv[2]!).put(new Uint8Array(256 * 1024).fill(7)).then(() => console.log('stored'), (e) => console.log(e.code, e.message));`);
  expect(r.stdout).toMatch(/^MODEL_STORE_UNAVAILABLE .*cannot store 262144 bytes \(ENOSPC\)/);
  expect(r.left).toEqual(['other']);
});

/** A folder can be made immutable here (`chattr +i`: CAP_LINUX_IMMUTABLE and a file system that has the flag). */
const canChattr = (() => {
  const d = mkdtempSync(join(tmpdir(), 'brulee-chattr-'));
  const ok = spawnSync('chattr', ['+i', d]).status === 0;
  spawnSync('chattr', ['-i', d]);
  rmSync(d, { recursive: true, force: true });
  return ok;
})();

it.skipIf(!canChattr)('a put into a folder the file system refuses to write to (immutable: EPERM) fails with MODEL_STORE_UNAVAILABLE, as a full one does', async () => {
  const dir = scratch();
  expect(spawnSync('chattr', ['+i', dir]).status).toBe(0);
  try {
    await expect(new FileModelStore(dir).put(new Uint8Array(1000).fill(5))).rejects.toMatchObject({ code: 'MODEL_STORE_UNAVAILABLE', message: expect.stringMatching(/cannot store 1000 bytes \(EPERM\): .*point MODEL_STORE at another folder/) });
  } finally {
    spawnSync('chattr', ['-i', dir]);
  }
  expect(readdirSync(dir)).toEqual([]);
});

it("the first put removes temporary files an hour old (a killed put's), not one being written", async () => {
  const dir = scratch();
  const old = [`.${randomUUID()}.tmp`, `.${randomUUID()}.tmp`];
  const fresh = `.${randomUUID()}.tmp`;
  for (const f of [...old, fresh, 'notes.tmp']) writeFileSync(join(dir, f), 'partial');
  const then = new Date(Date.now() - 2 * 60 * 60_000);
  for (const f of [...old, 'notes.tmp']) utimesSync(join(dir, f), then, then);
  const bytes = new Uint8Array(1000).fill(3);
  await new FileModelStore(dir).put(bytes);
  expect(readdirSync(dir).sort()).toEqual([fresh, `${sha256Of(bytes)}.onnx`, 'notes.tmp'].sort());
});

it.skipIf(!canUnshare)("a fetch into a full model cache says the cache's disk is full (not the store), and leaves nothing there", async () => {
  // The cache on the full disk; the store on another (a copy, not a link).
  const models = scratch();
  const r = await onFullDisk(`const { FileModelStore, LocalModels } = await import(store);
const files = new FileModelStore(${JSON.stringify(models)});
const sha = await files.put(new Uint8Array(256 * 1024).fill(9));
await new LocalModels({ store: files, dir: process.argv[2]! }).open(sha).then(() => console.log('cached'), (e) => console.log(e.code, e.message));`);
  expect(r.stdout).toMatch(/^INTERNAL writing model [0-9a-f]{12}… to this process's model cache .* failed \(ENOSPC\): free space/);
  expect(r.left).toEqual(['other']);
});
