import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'brulee-probe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * bench/memory-budget.bench.ts --probe reads the worker's probe files while the worker may still
 * be writing them (its RSS rises again as it settles): one run crashed on a half-written file. The
 * probe writes each file whole under a temporary name and renames it over the old one, so a reader
 * sees the old file or the new one, never a truncated one.
 */
it('the memory probe never leaves a half-written file for a reader', async () => {
  const out = join(dir, 'probe.json');
  const series = join(dir, 'series.json');
  const probe = pathToFileURL(join(import.meta.dirname, '../../bench/memory-probe.mjs')).href;
  // RSS rising all the time (a write of the peak file every 10 ms), for ~2.5 s (the series file is written once a second).
  const grow = 'const kept = []; const t = setInterval(() => kept.push(Buffer.alloc(256 * 1024, 1)), 5); setTimeout(() => { clearInterval(t); process.exit(0); }, 2500);';
  const child = spawn(process.execPath, ['--import', probe, '-e', grow], { env: { ...process.env, PROBE_OUT: out, PROBE_SERIES: series }, stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  let reads = 0;
  const torn: string[] = [];
  // Read as a bench would, as fast as it can, while the child writes (a bound on the loop, not an assertion on time).
  const until = Date.now() + 2000;
  while (Date.now() < until) {
    for (const f of [out, series]) {
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch {
        continue; // not written yet
      }
      reads++;
      try {
        JSON.parse(text);
      } catch {
        torn.push(`${f}: ${JSON.stringify(text.slice(0, 40))}`);
      }
    }
  }
  await exited;
  expect(reads).toBeGreaterThan(100);
  expect(torn.slice(0, 5)).toEqual([]);
  const peak = JSON.parse(readFileSync(out, 'utf8')) as { rssMiB: number };
  expect(peak.rssMiB).toBeGreaterThan(0);
});
