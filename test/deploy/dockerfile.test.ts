import { readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';

// deploy/Dockerfile cannot be built here (no Docker engine). What would break the build or the
// container is checked instead: every file the server loads is copied, every package it imports is
// installed by `npm ci --omit=dev`, and the image runs as a non-root user, listening on all
// interfaces, without onnxruntime's CUDA download.

const dockerfile = readFileSync('deploy/Dockerfile', 'utf8');
const lines = dockerfile.split('\n').filter((l) => /^[A-Z]+ /.test(l));
const copied = lines.filter((l) => l.startsWith('COPY ')).flatMap((l) => l.slice(5).trim().split(/\s+/).slice(0, -1));
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

/** The server's own files (transitively from server.ts, plus files spawned or read by path) and the packages they import. */
function serverSources(): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = ['start.mjs', 'server.ts'];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    const text = readFileSync(f, 'utf8');
    // Static and dynamic imports, exports from, and files named relative to this one (new URL('./x', import.meta.url)).
    // Also files joined to this module's folder (join(here, 'public/x')) and require.resolve('pkg/...').
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'([^']+)'|new URL\('(\.[^']+)', import\.meta\.url\)|import\.meta\.resolve\('([^']+)'\)|join\(here, '([^']+)'\)|require\.resolve\('([^']+)'\)/g)) {
      const spec = m[1] ?? m[2] ?? m[3] ?? (m[4] ? `./${m[4]}` : undefined) ?? m[5]!;
      if (spec.startsWith('.')) {
        const base = normalize(join(dirname(f), spec));
        const target = [base, `${base}.ts`, join(base, 'index.ts')].find((p) => statSync(p, { throwIfNoEntry: false })?.isFile())!;
        expect(target, `${f} imports ${spec}`).toBeDefined();
        if (target.endsWith('.ts')) todo.push(target);
        else files.add(target);
      } else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    }
  }
  return { files, packages };
}

describe('deploy/Dockerfile', () => {
  const { files, packages } = serverSources();

  it('copies every file the server loads', () => {
    const missing = [...files].filter((f) => !copied.some((c) => f === c || f.startsWith(`${c.replace(/\/$/, '')}/`)));
    expect(missing).toEqual([]);
    expect(files.has('store/s3.ts')).toBe(true); // the walk follows dynamic imports too
    expect(files.has('functions/profile-child.ts')).toBe(true);
    expect(files.has('dashboard/public/index.html')).toBe(true);
  });

  it('installs every package the server imports (npm ci --omit=dev), with the lock file', () => {
    const notInstalled = [...packages].filter((p) => !(p in pkg.dependencies));
    expect(notInstalled).toEqual([]);
    expect(packages.has('@aws-sdk/client-s3')).toBe(true);
    const npmCi = lines.findIndex((l) => l.startsWith('RUN npm ci --omit=dev'));
    const manifests = lines.findIndex((l) => l.startsWith('COPY package.json package-lock.json'));
    expect(manifests).toBeGreaterThanOrEqual(0);
    expect(npmCi).toBeGreaterThan(manifests);
    // No CUDA binaries downloaded: the variable is set before npm ci runs onnxruntime-node's install script.
    const skip = lines.findIndex((l) => /^ENV ONNXRUNTIME_NODE_INSTALL=skip\b/.test(l));
    expect(skip).toBeGreaterThanOrEqual(0);
    expect(skip).toBeLessThan(npmCi);
  });

  it('runs the server as a non-root user, on all interfaces, with /data writable by that user', () => {
    const user = lines.filter((l) => l.startsWith('USER ')).at(-1);
    expect(user).toBe('USER node');
    const env = lines.filter((l) => l.startsWith('ENV ')).join(' ');
    expect(env).toMatch(/\bHOST=0\.0\.0\.0\b/);
    expect(env).toMatch(/\bDATA_DIR=\/data\b/);
    expect(dockerfile).toMatch(/chown node:node \/data/);
    expect(lines.findIndex((l) => l.includes('chown node:node /data'))).toBeLessThan(lines.indexOf(user!));
    expect(lines.at(-1)).toBe('CMD ["node", "start.mjs"]');
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(lines.some((l) => l.startsWith('HEALTHCHECK') && l.includes('/v2/health/live'))).toBe(true);
  });

  it('builds npm start\'s bundles (the server, the profiling child) as root, after the sources are copied', () => {
    // The node user cannot write /app: a bundle not built here would leave both to tsx's transform.
    const build = lines.findIndex((l) => l.startsWith('RUN ') && l.includes("bundled(e)"));
    expect(build).toBeGreaterThan(-1);
    for (const entry of ['server.ts', 'functions/profile-child.ts']) expect(lines[build]).toContain(`'${entry}'`);
    expect(lines.slice(build).some((l) => l.startsWith('COPY '))).toBe(false);
    expect(build).toBeLessThan(lines.indexOf('USER node'));
    expect(copied).toContain('start.mjs');
  });
});
