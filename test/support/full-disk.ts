import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

/** A mount namespace of its own (a user namespace too, so no root is needed); without one, full-disk tests cannot be set up. */
export const canUnshare = spawnSync('unshare', ['-rm', 'true']).status === 0;

/**
 * Runs `code` (TypeScript, through tsx; `store` is this checkout's store/index.ts, `ROOT` the
 * checkout) in a process of its own whose folder `full` (its first argument, `process.argv[2]`)
 * is a 128 KiB file system of its own, half full already (a file `other`): a 256 KiB write there
 * fails with ENOSPC. Resolves to what it printed, and to what was left in `full` (its names,
 * sorted). Not spawnSync: the caller's event loop may serve the process (an S3 server).
 */
export async function onFullDisk(code: string, env: Record<string, string> = {}): Promise<{ stdout: string; left: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-full-disk-'));
  const full = join(dir, 'full');
  mkdirSync(full);
  const script = join(dir, 'script.mts');
  writeFileSync(script, `const ROOT = ${JSON.stringify(ROOT)};\nconst store = ${JSON.stringify(join(ROOT, 'store/index.ts'))};\nvoid ROOT;\nvoid store;\n${code}\nprocess.exit(0);\n`);
  const sh = `mount -t tmpfs -o size=128k tmpfs "$0" && head -c 65536 /dev/zero > "$0/other" && "$1" --import tsx "$2" "$0" && echo "left: $(ls -A "$0" | tr '\\n' ' ')" >&2`;
  const r = await new Promise<{ stdout: string; stderr: string }>((done) =>
    execFile('unshare', ['-rm', 'sh', '-c', sh, full, process.execPath, script], { encoding: 'utf8', cwd: ROOT, env: { ...process.env, ...env } }, (_e, stdout, stderr) => done({ stdout, stderr })),
  );
  rmSync(dir, { recursive: true, force: true });
  const left = /^left: (.*)$/m.exec(r.stderr)?.[1]?.trim().split(' ').filter(Boolean).sort() ?? [`(the process failed: ${r.stderr.slice(-500)})`];
  return { stdout: r.stdout, left };
}
