import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { TestBrulee } from './brulee';
import { floats, ort, runDirect } from './models';

/**
 * Of this process's mappings of a cached artifact (`<sha256>/model.onnx`), how many there are and
 * their resident KiB (`/proc/self/smaps`): a parked session keeps its mappings and gives back their pages.
 */
export function mapped(sha256: string): { mappings: number; rssKiB: number } {
  let mappings = 0;
  let rssKiB = 0;
  let on = false;
  for (const line of readFileSync('/proc/self/smaps', 'latin1').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      on = line.includes(`${sha256}/model.onnx`);
      if (on) mappings++;
    } else if (on && line.startsWith('Rss:')) rssKiB += Number(/(\d+) kB/.exec(line)![1]);
  }
  return { mappings, rssKiB };
}

/**
 * Calls `name` (a generated MLP of 64 inputs, output `y`) on `rows` rows and checks its outputs
 * against onnxruntime run directly on the original `bytes`, bit for bit; resolves to the answer.
 */
export async function sameAsDirect(b: TestBrulee, name: string, bytes: Uint8Array, rows: number, seed: number): Promise<{ coldStart: boolean; timings: { loadMs: number } }> {
  const x = floats(rows * 64, seed);
  const r = await b.invoke(name, { x: { type: 'float32', dims: [rows, 64], data: x } });
  expect(r.status).toBe(200);
  const want = await runDirect(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [rows, 64]) });
  expect(r.body.outputs.y.data).toEqual(Array.from(want.y!.data as Float32Array));
  return r.body as { coldStart: boolean; timings: { loadMs: number } };
}
