// One entry of brulee's own compiled by esbuild (tsx's own) into .build/, for plain node to run:
// `npm start`'s server (start.mjs) and the profiling child functions/profile.ts forks at each
// registration. Through tsx the same code pays tsx's start (`node --import tsx -e 1`: 0.6-0.9 s
// here against 0.15-0.2 s for plain node) and its per-file transform, which wraps every function
// and class in a `__name` call (keepNames) paid on each call (bench/README.md, "The queue path").
//
// One bundle of brulee's own files; packages stay imports of node_modules. Each file's
// `import.meta.url` is replaced by its source file's URL, so what a file finds beside itself (a
// worker thread's .mjs, the profiling child, the .proto, the dashboard) is found where it is.
//
// A bundle is reused while it is up to date: .build/NAME.json holds the sha256 of every file it
// was made from (this one included; of the tsconfig.json, jsconfig.json and package.json esbuild
// would find beside each, or that there is none, and of the files a tsconfig.json extends; and of
// the names in each of their folders a file an import would resolve to instead may take),
// node's and esbuild's versions, and the checkout's path (the bundle names its files by absolute
// URLs). NAME is the entry's path in the checkout without its extension, its '/' as %2F: entries
// of one name in two folders have a bundle each. Processes of one checkout may build at once: each
// writes its own files and renames them into place (the same sources give the same bundle), the
// bundle before its stamp; a build's temporary files a minute old were left by one interrupted,
// and the next call removes them, with the bundle and stamp of an entry whose source has been
// gone a minute (one named before bundles were named by path, as profile-child.mjs was).
import { createHash, randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = dirname(self);
const dir = join(root, '.build');

/** A module from tsx's dependencies (esbuild is tsx's, not brulee's own). */
const fromTsx = (id) => createRequire(fileURLToPath(import.meta.resolve('tsx')))(id);
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
/** A file system .build/ cannot be written to: read-only, not ours, or full. */
const cannotWrite = (e) => ['EACCES', 'EROFS', 'EPERM', 'ENOSPC', 'EDQUOT'].includes(e.code);
/** Files esbuild reads for its settings, in each folder of a file it compiles. */
const SETTINGS = ['tsconfig.json', 'jsconfig.json', 'package.json'];

/**
 * Whether an import could resolve to the name D in a folder: a file (esbuild takes a file of an
 * import's name, with one of its extensions or none, before a folder's index, so a new folder
 * changes nothing) named with no extension or one esbuild resolves. Others appear beside the
 * sources without changing a build: npm start's ./data, a log, a CPU profile.
 */
function mayResolve(folder, d) {
  if (d.name.startsWith('.') || !/^[^.]+$|\.(?:[cm]?[jt]sx?|json|css)$/.test(d.name)) return false;
  if (!d.isSymbolicLink()) return !d.isDirectory();
  try {
    return !statSync(join(folder, d.name)).isDirectory();
  } catch {
    return true;
  }
}

/**
 * The sha256 of the file at PATH, or null when there is none. A PATH ending in '/' is a folder:
 * the sha256 of the names in it an import could resolve to (not its files' contents), or null
 * when there is none.
 */
function hashOrNull(path) {
  try {
    if (path.endsWith('/')) return sha256(readdirSync(path, { withFileTypes: true }).filter((d) => mayResolve(path, d)).map((d) => d.name).sort().join('\n'));
    return sha256(readFileSync(path));
  } catch (e) {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
    throw e;
  }
}

/**
 * The files the tsconfig.json (or jsconfig.json) at PATH extends, as esbuild finds them: a path
 * (its .json added when it has no extension) or a package's file. Read loosely, as the file may
 * hold comments: any "extends" names counts (one too many only costs a build).
 */
function extendsOf(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const value = /"extends"\s*:\s*("(?:[^"\\]|\\.)*"|\[[^\]]*\])/.exec(text)?.[1];
  if (!value) return [];
  const specs = [...value.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  const from = dirname(path);
  return specs.map((spec) => {
    if (spec.startsWith('.') || isAbsolute(spec)) {
      const file = isAbsolute(spec) ? spec : join(from, spec);
      return extname(file) === '' && !existsSync(file) ? `${file}.json` : file;
    }
    const require = createRequire(join(from, 'tsconfig.json'));
    for (const id of [spec, `${spec}.json`, `${spec}/tsconfig.json`]) {
      try {
        return require.resolve(id);
      } catch {
        // the next form
      }
    }
    return join(from, 'node_modules', spec);
  });
}

/** A build's temporary files (`NAME.<uuid>.mjs` and `.json`), and how old one left behind is. */
const TEMPORARY = /\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(mjs|json)$/;
const LEFT_AFTER_MS = 60_000;

/** Extensions of an entry's source, for `stale`. */
const SOURCES = ['.ts', '.mts', '.cts', '.tsx', '.js', '.mjs', '.cjs', '.jsx'];

/**
 * Whether a bundle or stamp of .build/ (not a temporary file) names an entry that has no source
 * in the checkout: one named before bundles were named by path (`profile-child.mjs`, now
 * `functions%2Fprofile-child.mjs`), or of an entry removed since. No build of this code writes
 * such a name, so removing one never races a concurrent build. Not one whose source's folder (or
 * the nearest that is there) changed within a minute: a checkout switching branches removes a
 * source a moment, and its bundle, however old, is still its entry's.
 */
function stale(name) {
  const m = /^(.+)\.(mjs|json)$/.exec(name);
  if (!m || TEMPORARY.test(name)) return false;
  let entry;
  try {
    entry = decodeURIComponent(m[1]);
  } catch {
    return false;
  }
  const source = join(root, entry);
  if (SOURCES.some((ext) => existsSync(`${source}${ext}`))) return false;
  let folder = dirname(source);
  while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder);
  try {
    return Date.now() - statSync(folder).mtimeMs > LEFT_AFTER_MS;
  } catch {
    return false;
  }
}

/**
 * Removes what builds left in .build/ a minute old: the temporary files of builds interrupted
 * (killed between a write and its rename; a build writes and renames them within a moment), and
 * stale bundles and stamps (`stale`). Where .build/ is read-only, nothing.
 */
function removeLeftovers() {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!TEMPORARY.test(name) && !stale(name)) continue;
    try {
      if (Date.now() - statSync(join(dir, name)).mtimeMs > LEFT_AFTER_MS) rmSync(join(dir, name), { force: true });
    } catch {
      // gone meanwhile, or .build/ read-only
    }
  }
}

/** One build at a time in a process: each stops esbuild's service (a child process) once done. */
let queue = Promise.resolve();
/** Per entry, this process's answer; and the bundle it named, once it has. */
const done = new Map();
const named = new Map();

/**
 * The path of ENTRY's bundle (ENTRY relative to the checkout, e.g. `server.ts`), built when none
 * is up to date; null when there is none and .build/ cannot be written (a read-only checkout):
 * then run ENTRY through tsx. Asked again in one process, the first answer while its bundle is
 * there (one removed since, `rm -rf .build/`, is looked at and built again).
 * @param {string} entry
 * @returns {Promise<string | null>}
 */
export function bundled(entry) {
  let p = done.get(entry);
  const out = named.get(entry);
  if (out !== undefined && !existsSync(out)) {
    named.delete(entry);
    p = undefined;
  }
  if (!p) {
    const these = (p = queue.then(() => ensure(entry)));
    queue = p.catch(() => undefined);
    done.set(entry, p);
    p.then(
      (o) => o !== null && done.get(entry) === these && named.set(entry, o),
      // A failed build is tried again by the next caller.
      () => done.get(entry) === these && done.delete(entry),
    );
  }
  return p;
}

/** @param {string} entry */
async function ensure(entry) {
  const own = relative(root, join(root, entry));
  const name = encodeURIComponent(own.slice(0, own.length - extname(own).length));
  const out = join(dir, `${name}.mjs`);
  const stampFile = join(dir, `${name}.json`);
  if (upToDate(out, stampFile)) {
    removeLeftovers();
    return out;
  }
  try {
    // Not `recursive`: Node 20's recursive mkdir says ENOENT, not EROFS, on a read-only file
    // system (one level to make: .build/ is in the checkout's root).
    mkdirSync(dir);
  } catch (e) {
    if (e.code !== 'EEXIST') {
      if (cannotWrite(e)) return null;
      throw e;
    }
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    if (cannotWrite(e)) return null;
    throw e;
  }
  removeLeftovers();
  /** @type {import('esbuild')} */
  const { build, stop, version } = fromTsx('esbuild');
  const tmp = join(dir, `${name}.${randomUUID()}`);
  /** The sha256 of each own file as esbuild was given it, by path relative to the checkout. */
  const inputs = { [relative(root, self)]: sha256(readFileSync(self)) };
  /** @type {import('esbuild').Plugin} */
  const ownUrls = {
    name: 'own-import-meta-url',
    setup(b) {
      b.onLoad({ filter: /\.([cm]?ts|mjs)$/ }, (args) => {
        if (args.path.includes('/node_modules/')) return undefined;
        const source = readFileSync(args.path);
        inputs[relative(root, args.path)] = sha256(source);
        const contents = source
          .toString('utf8')
          .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href))
          .replaceAll('import.meta.dirname', JSON.stringify(dirname(args.path)))
          .replaceAll('import.meta.filename', JSON.stringify(args.path));
        return { contents, loader: args.path.endsWith('.mjs') ? 'js' : 'ts' };
      });
    },
  };
  try {
    const { metafile, outputFiles } = await build({
      entryPoints: [join(root, entry)],
      outfile: `${tmp}.mjs`,
      absWorkingDir: root,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: `node${process.versions.node}`,
      packages: 'external',
      plugins: [ownUrls],
      metafile: true,
      // Written below, not by esbuild: a full disk is then an error with its code (ENOSPC), as a
      // read-only one is, rather than esbuild's "Failed to write to output file".
      write: false,
      logLevel: 'error',
    });
    // Any other file it read (a .json, a .js): as it is now.
    for (const file of Object.keys(metafile.inputs)) {
      const path = isAbsolute(file) ? file : join(root, file);
      const rel = relative(root, path);
      if (!(rel in inputs) && !rel.startsWith('node_modules/')) inputs[rel] = sha256(readFileSync(path));
    }
    // The settings esbuild read beside them (no input of the metafile): the nearest tsconfig.json
    // or jsconfig.json of each file (class fields' semantics, paths, JSX) and package.json (type,
    // sideEffects, imports). Each one of every folder from a file's up to the checkout, or null
    // where there is none: one added later counts as a change.
    // With them, the names in each of those folders: a file an import would now resolve to
    // (lib/b.tsx before lib/b.ts, lib/d.ts before lib/d/index.ts) is a new name in one of them.
    for (const rel of Object.keys(inputs)) {
      for (let at = dirname(join(root, rel)); ; at = dirname(at)) {
        const folder = `${relative(root, at) || '.'}/`;
        if (!(folder in inputs)) inputs[folder] = hashOrNull(join(root, folder));
        for (const name of SETTINGS) {
          const key = relative(root, join(at, name));
          if (key in inputs) continue;
          inputs[key] = hashOrNull(join(at, name));
          // And the files a tsconfig.json extends, theirs in turn (one that is not there yet: null).
          for (let chain = name === 'package.json' || inputs[key] === null ? [] : [join(at, name)]; chain.length > 0; ) {
            for (const file of extendsOf(chain.pop())) {
              const k = relative(root, file);
              if (k in inputs) continue;
              inputs[k] = hashOrNull(file);
              if (inputs[k] !== null) chain.push(file);
            }
          }
        }
        if (at === root || at === dirname(at)) break;
      }
    }
    writeFileSync(`${tmp}.mjs`, outputFiles[0].contents);
    writeFileSync(`${tmp}.json`, JSON.stringify({ root, node: process.versions.node, esbuild: version, inputs }, null, 1));
    renameSync(`${tmp}.mjs`, out);
    renameSync(`${tmp}.json`, stampFile);
  } catch (e) {
    rmSync(`${tmp}.mjs`, { force: true });
    rmSync(`${tmp}.json`, { force: true });
    if (cannotWrite(e)) return null;
    throw e;
  } finally {
    // esbuild's service is a child process: not kept beside the server.
    await stop();
  }
  return out;
}

/** Whether OUT was built here from the files as they are now, by this node and esbuild. */
function upToDate(out, stampFile) {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
    accessSync(out, constants.R_OK);
  } catch {
    return false;
  }
  // Built elsewhere (the checkout moved, or copied with its .build/): its files' URLs are that place's.
  if (stamp.root !== root || stamp.node !== process.versions.node) return false;
  try {
    if (stamp.esbuild !== fromTsx('esbuild/package.json').version) return false;
    return Object.entries(stamp.inputs).every(([file, hash]) => hashOrNull(join(root, file)) === hash);
  } catch {
    return false;
  }
}
