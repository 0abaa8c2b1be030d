// Preloaded into the memory bench's worker (`--probe`): samples process.memoryUsage() every 10 ms
// and writes the sample of highest RSS to PROBE_OUT (JSON, MiB) each time it rises, with the V8
// GCs seen so far by kind (1 scavenge, 4 mark-compact, 8 incremental), so the bench can split
// the peak into native bytes, JS ArrayBuffers and V8 heap. With PROBE_SERIES it also writes every
// 5th sample's RSS (bytes, every 50 ms as the worker's own sampler reads it), once a second, as a
// JSON array. Each file is written whole under a temporary name and renamed over the old one: the
// bench reads them while the worker still runs, and a plain write, which truncates the file first,
// once gave it an empty one. Not part of brulee.
import { renameSync, writeFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';

const out = process.env.PROBE_OUT;
/** Writes `path` so that a reader sees the old file or the new one, never a part of it. */
const put = (path, text) => {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
};
const MiB = (x) => Math.round((x / 1048576) * 10) / 10;
const gcs = {};
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) {
    const g = (gcs[e.detail?.kind ?? e.kind] ??= { n: 0, ms: 0 });
    g.n++;
    g.ms += e.duration;
  }
}).observe({ entryTypes: ['gc'] });
let top = 0;
const seriesOut = process.env.PROBE_SERIES;
const series = [];
let tick = 0;
if (seriesOut) setInterval(() => put(seriesOut, JSON.stringify(series)), 1000).unref();
setInterval(() => {
  const m = process.memoryUsage();
  if (seriesOut && tick++ % 5 === 0) series.push(m.rss);
  if (!out || m.rss <= top) return;
  top = m.rss;
  const gc = Object.fromEntries(Object.entries(gcs).map(([k, g]) => [k, { n: g.n, ms: Math.round(g.ms) }]));
  put(out, JSON.stringify({ rssMiB: MiB(m.rss), heapTotalMiB: MiB(m.heapTotal), arrayBuffersMiB: MiB(m.arrayBuffers), gc }));
}, 10).unref();
