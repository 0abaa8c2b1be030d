// `npm start`: server.ts compiled once, at start, by esbuild (tsx's own) into .build/, then run by
// plain node. `node --import tsx server.ts` runs the same code, but through tsx's per-file
// transform, which wraps every function and class in a `__name` call (keepNames) that a loaded
// server pays on each call (README, "The queue path").
//
// One bundle of brulee's own files; packages stay imports of node_modules. Each file's
// `import.meta.url` is replaced by its source file's URL, so what a file finds beside itself (a
// worker thread's .mjs, the profiling child, the .proto, the dashboard) is found where it is.
import { accessSync, constants, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// The esbuild tsx itself uses (a dependency of tsx's, not of brulee's own).
/** @type {import('esbuild')} */
const { build, stop } = createRequire(fileURLToPath(import.meta.resolve('tsx')))('esbuild');

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, '.build', 'server.mjs');
// Another `npm start` of this checkout may build at the same time: each writes its own file and
// renames it into place (the same sources give the same bundle).
const tmp = join(root, '.build', `server.${process.pid}.mjs`);

/** @type {import('esbuild').Plugin} */
const ownUrls = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.[cm]?ts$/ }, (args) => {
      if (args.path.includes('/node_modules/')) return undefined;
      const url = JSON.stringify(pathToFileURL(args.path).href);
      const contents = readFileSync(args.path, 'utf8')
        .replaceAll('import.meta.url', url)
        .replaceAll('import.meta.dirname', JSON.stringify(dirname(args.path)))
        .replaceAll('import.meta.filename', JSON.stringify(args.path));
      return { contents, loader: 'ts' };
    });
  },
};

const cannotWrite = (e) => ['EACCES', 'EROFS', 'EPERM'].includes(e.code);

/** Builds the bundle; false when this checkout cannot be written (a read-only install). */
async function bundle() {
  try {
    // Not `recursive`: Node 20's recursive mkdir says ENOENT, not EROFS, on a read-only file
    // system (one level to make: .build/ is in the checkout's root).
    mkdirSync(dirname(out));
  } catch (e) {
    if (e.code !== 'EEXIST') {
      if (cannotWrite(e)) return false;
      throw e;
    }
  }
  try {
    accessSync(dirname(out), constants.W_OK);
  } catch (e) {
    if (cannotWrite(e)) return false;
    throw e;
  }
  try {
    await build({
      entryPoints: [join(root, 'server.ts')],
      outfile: tmp,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: `node${process.versions.node}`,
      packages: 'external',
      plugins: [ownUrls],
      logLevel: 'error',
    });
  } finally {
    // esbuild's service is a child process: not kept beside the server.
    await stop();
  }
  renameSync(tmp, out);
  return true;
}

if (await bundle()) await import(pathToFileURL(out).href);
else {
  // Where .build/ cannot be written, the same server through tsx's transform, as before.
  const { register } = await import('tsx/esm/api');
  register();
  await import('./server.ts');
}
