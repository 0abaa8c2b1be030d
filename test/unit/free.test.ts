import { describe, expect, it } from 'vitest';
import { FREE_MIN_BYTES, freeNow } from '../../queue/free';
import { within } from '../support/within';

// Issue 12 §4: a node frees the buffers of a call it has answered at once (queue/free.ts), not at
// V8's next collection, which for external memory comes only some 64 MiB later.
const MiB = 1024 ** 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('freeNow', () => {
  it('detaches a buffer that spans its whole ArrayBuffer, and its memory leaves the process without a collection', async () => {
    const bufs = Array.from({ length: 4 }, () => Buffer.alloc(16 * MiB, 1));
    const floats = new Float32Array(MiB);
    const before = process.memoryUsage().arrayBuffers;
    expect(freeNow([...bufs, floats])).toBe(4 * 16 * MiB + 4 * MiB);
    for (const b of bufs) expect(b.byteLength).toBe(0);
    expect(floats.length).toBe(0);
    // The references are all still here: only the freeing can bring the figure down.
    await within(5000, 'the memory freed', (async () => {
      while (before - process.memoryUsage().arrayBuffers < 60 * MiB) await sleep(5);
    })());
    expect(bufs).toHaveLength(4);
  });

  it('leaves alone a view of part of a buffer, a buffer below FREE_MIN_BYTES, a pooled Buffer, and what is no buffer', () => {
    const big = Buffer.alloc(MiB, 7);
    const part = big.subarray(8);
    const small = Buffer.alloc(FREE_MIN_BYTES - 1, 7);
    const pooled = Buffer.from('a pooled buffer');
    expect(freeNow([part, small, pooled, 'text', undefined, [1, 2]])).toBe(0);
    expect(big.byteLength).toBe(MiB);
    expect(part[0]).toBe(7);
    expect(small.byteLength).toBe(FREE_MIN_BYTES - 1);
    expect(pooled.toString()).toBe('a pooled buffer');
  });

  it('frees each ArrayBuffer once, however many views of it are given, and skips one already freed', () => {
    const u8 = new Uint8Array(MiB);
    const f32 = new Float32Array(u8.buffer);
    expect(freeNow([u8, f32])).toBe(MiB);
    expect(freeNow([u8])).toBe(0);
  });
});
