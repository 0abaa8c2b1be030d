import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { FileModelStore, sha256Of } from '../../store';

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
const canUnshare = spawnSync('unshare', ['-rm', 'true']).status === 0;

it.skipIf(!canUnshare)('a put on a full disk fails with MODEL_STORE_UNAVAILABLE and leaves no partial file', () => {
  const dir = scratch();
  mkdirSync(join(dir, 'models'));
  const script = join(dir, 'put.mts');
  writeFileSync(
    script,
    `import { FileModelStore } from ${JSON.stringify(join(ROOT, 'store/index.ts'))};
const store = new FileModelStore(process.argv[2]!);
await store.put(new Uint8Array(256 * 1024).fill(7)).then(() => console.log('stored'), (e) => console.log(e.code, e.message));\n`,
  );
  // The store a 128 KiB file system of its own, half full: a 256 KiB model does not fit.
  const full = `mount -t tmpfs -o size=128k tmpfs "$0" && head -c 65536 /dev/zero > "$0/other" && "$1" --import tsx "$2" "$0" && ls -A "$0" >&2`;
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', full, join(dir, 'models'), process.execPath, script], { encoding: 'utf8', cwd: ROOT });
  expect(r.stdout).toMatch(/^MODEL_STORE_UNAVAILABLE .*cannot store 262144 bytes \(ENOSPC\)/);
  expect(r.stderr).toBe('other\n');
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
