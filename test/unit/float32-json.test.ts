import { describe, expect, it } from 'vitest';
import { float32Json, MAX_FLOAT32_JSON_BYTES, writeFloat32Json } from '../../functions/http/float32-json';

/**
 * FLOAT32 as JSON (functions/http/float32-json.ts) is byte for byte what JSON.stringify wrote
 * before it: V8's shortest form of the value as a double, NaN and the infinities as strings. Checked
 * against JSON.stringify over random bit patterns (every exponent, subnormals, both signs) and the
 * values where a shortcut could go wrong: ±0, the extremes, powers of two and ten, integers, ties.
 */

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
const want = (x: number) => JSON.stringify(Number.isFinite(x) ? x : String(x));
const ofBits = (b: number) => {
  u[0] = b;
  return f[0]!;
};

describe('writeFloat32Json', () => {
  it('writes what JSON.stringify writes, for 300 000 random bit patterns', () => {
    let seed = 20261129;
    const xs = new Float32Array(300_000);
    const bits = new Uint32Array(xs.buffer);
    for (let i = 0; i < xs.length; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      bits[i] = seed;
    }
    const out = Buffer.allocUnsafe(xs.length * MAX_FLOAT32_JSON_BYTES);
    const end = writeFloat32Json(xs, 0, xs.length, out, 0);
    const got = out.toString('latin1', 0, end).split(',');
    const bad = [];
    for (let i = 0; i < xs.length && bad.length < 5; i++) if (got[i] !== want(xs[i]!)) bad.push(`${bits[i]!.toString(16)}: ${got[i]} != ${want(xs[i]!)}`);
    expect(bad).toEqual([]);
    expect(got.length).toBe(xs.length);
  });

  it('special values, subnormals, extremes, powers of two and ten, integers, short decimals', () => {
    const xs: number[] = [0, -0, NaN, Infinity, -Infinity, ofBits(0x7fc00001), ofBits(0xffc00000)];
    for (let b = 0; b < 2000; b++) xs.push(ofBits(b), ofBits(0x80000000 | b), ofBits(0x7f7fffff - b), ofBits(0x800000 + b - 1000));
    for (let e = -149; e <= 127; e++) for (const m of [1, 1.5, 1.75, 1 + 2 ** -23, 2 - 2 ** -23]) xs.push(Math.fround(m * 2 ** e), -Math.fround(m * 2 ** e));
    for (let e = -45; e <= 38; e++) for (const d of [1, 2, 5, 9.999999, 1.0000001, 3.3333333]) xs.push(Math.fround(d * 10 ** e));
    for (let i = 0; i < 5000; i++) xs.push(Math.fround(i / 8), Math.fround(i / 1000), Math.fround(i * 1e-7), Math.fround(2 ** 23 + i + 0.5), Math.fround(2 ** 24 + 2 * i));
    for (const x of xs) expect(float32Json(x), `${x}`).toBe(want(Math.fround(x)));
  });

  it('writes a range with commas and nothing else, at the position given', () => {
    const data = Float32Array.of(1.5, NaN, -0, 0.1, 1e-7, -Infinity);
    const out = Buffer.alloc(200, 32);
    const end = writeFloat32Json(data, 1, 5, out, 3);
    expect(out.toString('latin1', 0, end + 1)).toBe('   "NaN",0,0.10000000149011612,1.0000000116860974e-7 ');
  });
});
