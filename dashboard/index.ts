import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const uplot = dirname(require.resolve('uplot/dist/uPlot.esm.js'));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The files the dashboard serves, by URL path: its own, and uPlot from node_modules (no CDN). */
const FILES: Record<string, string> = {
  '/': join(here, 'public/index.html'),
  '/ui/app.js': join(here, 'public/app.js'),
  '/ui/api.js': join(here, 'public/api.js'),
  '/ui/charts.js': join(here, 'public/charts.js'),
  '/ui/views.js': join(here, 'public/views.js'),
  '/ui/style.css': join(here, 'public/style.css'),
  '/ui/favicon.svg': join(here, 'public/favicon.svg'),
  '/ui/vendor/uPlot.esm.js': join(uplot, 'uPlot.esm.js'),
  '/ui/vendor/uPlot.min.css': join(uplot, 'uPlot.min.css'),
};

/**
 * The dashboard: static ES modules that poll the HTTP API (`/stats`, `/functions`, ...) like any
 * other client. Mount with `app.route('/', dashboardApp())`: it serves `/` and `/ui/*`.
 */
export function dashboardApp(): Hono {
  const app = new Hono();
  // Read once: the files are small, and a fixed table means no path from a request reaches the disk.
  const body = new Map(Object.entries(FILES).map(([path, file]) => [path, readFileSync(file)]));
  for (const [path, bytes] of body) {
    const ext = /\.[a-z]+$/.exec(path === '/' ? '.html' : path)?.[0] ?? '';
    app.get(path, (c) => c.body(new Uint8Array(bytes), 200, { 'content-type': TYPES[ext] ?? 'application/octet-stream', 'cache-control': 'no-cache' }));
  }
  return app;
}
