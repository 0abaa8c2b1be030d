import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REAL_MODELS } from '../support/models';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A checkout of its own: bundle.mjs copied (it finds the checkout beside itself), node_modules linked, a.ts importing b.ts. */
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'brulee-bundle-'));
  dirs.push(dir);
  copyFileSync(join(ROOT, 'bundle.mjs'), join(dir, 'bundle.mjs'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  mkdirSync(join(dir, 'lib'));
  writeFileSync(join(dir, 'a.ts'), `import { b } from './lib/b';\nconst n: number = b();\nconsole.log(n, import.meta.url);\n`);
  writeFileSync(join(dir, 'lib/b.ts'), `export const b = (): number => 1;\nexport const where = import.meta.url;\n`);
  return dir;
}

/** Node code that prints bundled('a.ts') of DIR's bundle.mjs. */
const bundleCode = (dir: string) =>
  `import(${JSON.stringify(pathToFileURL(join(dir, 'bundle.mjs')).href)}).then((m) => m.bundled('a.ts')).then((p) => console.log(String(p)))`;

/** bundled('a.ts') in a fresh node process (`sh -c` PREFIX first: a mount namespace's setup). */
function bundledIn(dir: string, prefix = ''): string {
  const code = bundleCode(dir);
  const r = canUnshare && prefix ? spawnSync('unshare', ['-rm', 'sh', '-c', `${prefix} && exec "$1" -e "$2"`, dir, process.execPath, code], { encoding: 'utf8' }) : spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return r.stdout.trim();
}

const run = (file: string) => spawnSync(process.execPath, [file], { encoding: 'utf8' }).stdout.trim();

// A mount namespace of its own (a user namespace too, so no root is needed) where a bind mount can
// be made read-only; where there is none (no unshare, user namespaces off), those tests cannot be set up.
const canUnshare = spawnSync('unshare', ['-rm', 'true']).status === 0;
const readOnly = `mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"`;

describe('bundle.mjs', () => {
  it('builds an entry for plain node, reuses it while its files are unchanged, rebuilds when one changes', () => {
    const dir = scratch();
    const out = bundledIn(dir);
    expect(out).toBe(join(dir, '.build', 'a.mjs'));
    // Each file's import.meta.url is its source's: a.ts says where a.ts is, not .build/a.mjs.
    expect(run(out)).toBe(`1 ${pathToFileURL(join(dir, 'a.ts')).href}`);
    const first = statSync(out).ino;
    expect(bundledIn(dir)).toBe(out);
    expect(statSync(out).ino).toBe(first);
    // An imported file changed: built again (a new file renamed into place).
    writeFileSync(join(dir, 'lib/b.ts'), `export const b = (): number => 2;\n`);
    expect(bundledIn(dir)).toBe(out);
    expect(statSync(out).ino).not.toBe(first);
    expect(run(out)).toMatch(/^2 /);
  });

  it('builds again when a tsconfig.json esbuild compiles a file with is added or changed', () => {
    // esbuild reads the nearest tsconfig.json of each file (class fields' semantics, paths, JSX),
    // which its metafile does not name as an input.
    const dir = scratch();
    writeFileSync(join(dir, 'lib/c.ts'), `export class C {\n  x?: number;\n}\n`);
    writeFileSync(join(dir, 'a.ts'), `import { C } from './lib/c';\nconsole.log(Object.keys(new C()).length);\n`);
    const out = bundledIn(dir);
    expect(run(out)).toBe('1');
    // One added beside an imported file: fields without initializers are no longer defined.
    writeFileSync(join(dir, 'lib/tsconfig.json'), JSON.stringify({ compilerOptions: { useDefineForClassFields: false } }));
    expect(bundledIn(dir)).toBe(out);
    expect(run(out)).toBe('0');
    // The same file changed.
    writeFileSync(join(dir, 'lib/tsconfig.json'), JSON.stringify({ compilerOptions: { useDefineForClassFields: true } }));
    expect(run(bundledIn(dir))).toBe('1');
  });

  it("builds again when a tsconfig.json's extends chain changes, or a file it extends appears", () => {
    // esbuild applies the settings of every file a tsconfig.json extends (and of theirs), which
    // neither its metafile nor the tsconfig.json's own bytes show.
    const dir = scratch();
    writeFileSync(join(dir, 'lib/c.ts'), `export class C {\n  x?: number;\n}\n`);
    writeFileSync(join(dir, 'a.ts'), `import { C } from './lib/c';\nconsole.log(Object.keys(new C()).length);\n`);
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'lib/tsconfig.json'), `{\n  // the shared settings\n  "extends": "../config/base",\n}\n`);
    writeFileSync(join(dir, 'config/base.json'), JSON.stringify({ extends: './fields.json' }));
    const out = bundledIn(dir);
    expect(run(out)).toBe('1');
    // The last link of the chain appears: fields without initializers are no longer defined.
    writeFileSync(join(dir, 'config/fields.json'), JSON.stringify({ compilerOptions: { useDefineForClassFields: false } }));
    expect(run(bundledIn(dir))).toBe('0');
    // It changes.
    writeFileSync(join(dir, 'config/fields.json'), JSON.stringify({ compilerOptions: { useDefineForClassFields: true } }));
    expect(run(bundledIn(dir))).toBe('1');
  });

  it('builds again when a file appears that an import now resolves to', () => {
    // './lib/b' was lib/b.ts; esbuild prefers lib/b.tsx (its extensions' order), and a folder's
    // index where there is no file: a stamp of the files read only missed both.
    const dir = scratch();
    const out = bundledIn(dir);
    expect(run(out)).toMatch(/^1 /);
    writeFileSync(join(dir, 'lib/b.tsx'), `export const b = (): number => 3;\n`);
    expect(run(bundledIn(dir))).toMatch(/^3 /);
    writeFileSync(join(dir, 'a.ts'), `import { b } from './lib/d';\nconsole.log(b());\n`);
    mkdirSync(join(dir, 'lib/d'));
    writeFileSync(join(dir, 'lib/d/index.ts'), `export const b = (): number => 4;\n`);
    expect(run(bundledIn(dir))).toBe('4');
    writeFileSync(join(dir, 'lib/d.ts'), `export const b = (): number => 5;\n`);
    expect(run(bundledIn(dir))).toBe('5');
  });

  it('reuses the bundle when names appear that no import resolves to (a data folder, logs)', () => {
    // npm start's DATA_DIR (./data) and a run's log appear in the checkout's root after its first
    // start: the next start (and the profiling child's next registration) builds nothing again.
    const dir = scratch();
    const out = bundledIn(dir);
    const first = statSync(out).ino;
    mkdirSync(join(dir, 'data'));
    mkdirSync(join(dir, 'lib/cache'));
    writeFileSync(join(dir, 'server.log'), 'started\n');
    writeFileSync(join(dir, 'CPU.20261130.000000.1.0.001.cpuprofile'), '{}');
    expect(bundledIn(dir)).toBe(out);
    expect(statSync(out).ino).toBe(first);
  });

  it("removes a build's temporary files that an interrupted build left (a minute old), not one being written now", () => {
    const dir = scratch();
    bundledIn(dir);
    const left = [`a.${randomUUID()}.mjs`, `a.${randomUUID()}.json`, `other.${randomUUID()}.mjs`].map((f) => join(dir, '.build', f));
    const writing = join(dir, '.build', `a.${randomUUID()}.mjs`);
    for (const f of [...left, writing]) writeFileSync(f, 'partial');
    const old = new Date(Date.now() - 10 * 60_000);
    for (const f of left) utimesSync(f, old, old);
    // A change: built again.
    writeFileSync(join(dir, 'lib/b.ts'), `export const b = (): number => 2;\n`);
    expect(run(bundledIn(dir))).toMatch(/^2 /);
    expect(readdirSync(join(dir, '.build')).sort()).toEqual(['a.json', 'a.mjs', writing.split('/').pop()].sort());
  });

  it('removes bundles a minute old of entries with no source (named before bundles were named by path), not those of entries it has', () => {
    const dir = scratch();
    const out = bundledIn(dir);
    const build = join(dir, '.build');
    // The profiling child's bundle as it was named before (profile-child.mjs, now functions%2Fprofile-child.mjs),
    // one of an entry removed since, a minute old; and one of an entry with no source written just now (a checkout switching branches).
    const old = new Date(Date.now() - 10 * 60_000);
    const gone = ['profile-child.mjs', 'profile-child.json', 'lib%2Fremoved.mjs', 'lib%2Fremoved.json'];
    for (const f of gone) {
      writeFileSync(join(build, f), 'old');
      utimesSync(join(build, f), old, old);
    }
    writeFileSync(join(build, 'fresh.mjs'), 'new');
    // Of entries it has, however old: a.mjs (a.ts), lib%2Fb.mjs (lib/b.ts).
    for (const f of ['a.mjs', 'a.json']) utimesSync(join(build, f), old, old);
    writeFileSync(join(build, 'lib%2Fb.mjs'), 'b');
    utimesSync(join(build, 'lib%2Fb.mjs'), old, old);
    // An old bundle whose source a checkout switching branches removed just now (its folder changed a moment ago).
    mkdirSync(join(dir, 'app'));
    for (const f of ['app%2Fc.mjs', 'app%2Fc.json']) {
      writeFileSync(join(build, f), 'c');
      utimesSync(join(build, f), old, old);
    }
    // The others' sources went long ago.
    for (const d of [dir, join(dir, 'lib')]) utimesSync(d, old, old);
    // Removed by a call that finds the bundle up to date, as by one that builds.
    expect(bundledIn(dir)).toBe(out);
    expect(readdirSync(build).sort()).toEqual(['a.json', 'a.mjs', 'app%2Fc.json', 'app%2Fc.mjs', 'fresh.mjs', 'lib%2Fb.mjs'].sort());
    expect(run(out)).toMatch(/^1 /);
    // A minute on, its source still absent: it goes too.
    utimesSync(join(dir, 'app'), old, old);
    expect(bundledIn(dir)).toBe(out);
    expect(readdirSync(build).sort()).toEqual(['a.json', 'a.mjs', 'fresh.mjs', 'lib%2Fb.mjs'].sort());
  });

  it('keeps apart two entries of the same name in different folders', () => {
    const dir = scratch();
    mkdirSync(join(dir, 'x'));
    writeFileSync(join(dir, 'x/a.ts'), `console.log('x/a');\n`);
    const url = JSON.stringify(pathToFileURL(join(dir, 'bundle.mjs')).href);
    const code = `const { bundled } = await import(${url}); console.log(JSON.stringify([await bundled('a.ts'), await bundled('x/a.ts'), await bundled('a.ts')]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const [a, xa, again] = JSON.parse(r.stdout) as string[];
    expect(a).toBe(join(dir, '.build', 'a.mjs'));
    expect(xa).not.toBe(a);
    expect(again).toBe(a);
    expect(run(a!)).toMatch(/^1 /);
    expect(run(xa!)).toBe('x/a');
    // And each is reused: neither overwrote the other's stamp.
    const first = [statSync(a!).ino, statSync(xa!).ino];
    const r2 = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(JSON.parse(r2.stdout)).toEqual([a, xa, a]);
    expect([statSync(a!).ino, statSync(xa!).ino]).toEqual(first);
  });

  it('asked again in one process, builds again a bundle removed since (rm -rf .build/)', () => {
    // The profiling child's bundle is asked for at each registration of a running server: a
    // removed one was forked still, and every registration failed (INVALID_MODEL, "Cannot find module").
    const dir = scratch();
    const url = JSON.stringify(pathToFileURL(join(dir, 'bundle.mjs')).href);
    const code = `const { bundled } = await import(${url}); const { rmSync, existsSync } = await import('node:fs');
      const a = await bundled('a.ts'); rmSync(${JSON.stringify(join(dir, '.build'))}, { recursive: true });
      const b = await bundled('a.ts'); console.log(a === b, existsSync(b));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('true true');
  });

  it('builds again in a checkout moved elsewhere: its bundle names its files where they were', () => {
    const dir = scratch();
    const out = bundledIn(dir);
    expect(run(out)).toBe(`1 ${pathToFileURL(join(dir, 'a.ts')).href}`);
    // The checkout moved (mv), .build/ with it; the old place gone.
    const moved = `${dir}-moved`;
    dirs.push(moved);
    renameSync(dir, moved);
    const there = bundledIn(moved);
    expect(there).toBe(join(moved, '.build', 'a.mjs'));
    expect(run(there)).toBe(`1 ${pathToFileURL(join(moved, 'a.ts')).href}`);
  });

  it.skipIf(!canUnshare)('in a read-only checkout: null with no bundle (run it through tsx), the bundle when one is up to date', () => {
    const dir = scratch();
    expect(bundledIn(dir, readOnly)).toBe('null');
    const out = bundledIn(dir);
    expect(bundledIn(dir, readOnly)).toBe(out);
  });

  it.skipIf(!canUnshare)('on a full disk: null (run it through tsx), nothing left behind', () => {
    // .build/ a small file system of its own, filled first: ENOSPC, where npm start failed
    // (esbuild's "Failed to write to output file") instead of running the server through tsx.
    const dir = scratch();
    mkdirSync(join(dir, '.build'));
    const full = `mount -t tmpfs -o size=64k tmpfs "$0/.build" && { cat /dev/zero > "$0/.build/fill" 2>/dev/null; ls -A "$0/.build" >&2; }`;
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', `${full} && "$1" -e "$2" && ls -A "$0/.build" >&2`, dir, process.execPath, bundleCode(dir)], { encoding: 'utf8' });
    // What was in .build/ (on stderr) before and after, and bundled's answer.
    expect(r.stderr).toBe('fill\nfill\n');
    expect(r.stdout.trim()).toBe('null');
  });

  it.skipIf(!canUnshare)('profiling runs its child through tsx where .build/ cannot be written', () => {
    // This checkout's .build/ covered by an empty read-only directory, in a mount namespace of the
    // child's own: there is no up-to-date profiling child there and none can be built.
    mkdirSync(join(ROOT, '.build'), { recursive: true });
    const empty = mkdtempSync(join(tmpdir(), 'brulee-no-build-'));
    dirs.push(empty);
    const script = join(empty, '..', `${empty.split('/').pop()}-profile.mts`);
    dirs.push(script);
    writeFileSync(script, `import { profileModel } from ${JSON.stringify(join(ROOT, 'functions/profile.ts'))};\nconst r = await profileModel(process.argv[2]!, { loadRuns: 1, execRuns: 1 });\nconsole.log(JSON.stringify(r.signature.inputs.map((i) => i.name)));\n`);
    const build = join(ROOT, '.build');
    const sh = `mount --bind "$0" "$1" && mount -o remount,bind,ro "$1" && "$2" --import tsx "$3" "$4" && ls -A "$1"`;
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', sh, empty, build, process.execPath, script, REAL_MODELS.ocrCls], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    // The inputs' names, and nothing written under .build/.
    expect(r.stdout.trim()).toBe('["x"]');
  }, 90_000);
});
