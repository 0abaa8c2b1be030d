import { describe, expect, it } from 'vitest';
import { decodeStrings, encodeStrings, tensorBytes, tensorFromBytes } from '../../queue/tensor';
import { bf16ToFloat32, decodeRaw, float32ToBf16, FROM_V2_DATATYPE, rawOf, V2_DATATYPE } from '../../functions/v2-tensors';

/** Little-endian bytes written one by one with DataView, independently of typed arrays. */
function le(n: number, size: number, put: (v: DataView, at: number, i: number) => void): Uint8Array {
  const out = new Uint8Array(n * size);
  const v = new DataView(out.buffer);
  for (let i = 0; i < n; i++) put(v, i * size, i);
  return out;
}

describe('raw tensor bytes (the v2 binary layout)', () => {
  const cases = [
    { dt: 'FP32', values: [1.5, -0, 3.4028234663852886e38, NaN], size: 4, put: (v: DataView, at: number, x: number) => v.setFloat32(at, x, true) },
    { dt: 'FP64', values: [Math.PI, -1e-300], size: 8, put: (v: DataView, at: number, x: number) => v.setFloat64(at, x, true) },
    { dt: 'INT8', values: [-128, 127], size: 1, put: (v: DataView, at: number, x: number) => v.setInt8(at, x) },
    { dt: 'UINT8', values: [0, 255], size: 1, put: (v: DataView, at: number, x: number) => v.setUint8(at, x) },
    { dt: 'INT16', values: [-32768, 32767], size: 2, put: (v: DataView, at: number, x: number) => v.setInt16(at, x, true) },
    { dt: 'UINT16', values: [0, 65535], size: 2, put: (v: DataView, at: number, x: number) => v.setUint16(at, x, true) },
    { dt: 'INT32', values: [-2147483648, 2147483647], size: 4, put: (v: DataView, at: number, x: number) => v.setInt32(at, x, true) },
    { dt: 'UINT32', values: [0, 4294967295], size: 4, put: (v: DataView, at: number, x: number) => v.setUint32(at, x, true) },
  ] as const;
  for (const c of cases) {
    it(`${c.dt}: little-endian bytes both ways, bit for bit`, () => {
      const bytes = le(c.values.length, c.size, (v, at, i) => c.put(v, at, c.values[i]!));
      const t = decodeRaw('x', c.dt, [c.values.length], bytes);
      expect(t.type).toBe(FROM_V2_DATATYPE[c.dt]);
      expect(Array.from(t.data as ArrayLike<number>)).toEqual([...c.values]);
      expect(V2_DATATYPE[t.type]).toBe(c.dt);
      expect(Buffer.from(rawOf(t)).equals(Buffer.from(bytes))).toBe(true);
    });
  }

  it('INT64 and UINT64 keep every bit (past 2^53 and at the extremes)', () => {
    const i64 = [-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n];
    const u64 = [0n, 2n ** 64n - 1n, 2n ** 53n + 1n];
    const bi = le(3, 8, (v, at, i) => v.setBigInt64(at, i64[i]!, true));
    const bu = le(3, 8, (v, at, i) => v.setBigUint64(at, u64[i]!, true));
    expect(Array.from(decodeRaw('a', 'INT64', [3], bi).data as BigInt64Array)).toEqual(i64);
    expect(Array.from(decodeRaw('b', 'UINT64', [1, 3], bu).data as BigUint64Array)).toEqual(u64);
  });

  it('bytes at an unaligned offset are copied into aligned memory; aligned bytes are viewed', () => {
    const backing = new Uint8Array(1 + 16);
    new DataView(backing.buffer).setFloat64(1, 2.5, true);
    new DataView(backing.buffer).setFloat64(9, -7, true);
    const t = decodeRaw('x', 'FP64', [2], backing.subarray(1));
    expect(Array.from(t.data as Float64Array)).toEqual([2.5, -7]);
    const aligned = new Uint8Array(16);
    const view = decodeRaw('x', 'FP32', [4], aligned);
    expect((view.data as Float32Array).buffer).toBe(aligned.buffer);
  });

  it('FP16 stays its 16-bit patterns; BOOL is one byte each, 0 or 1', () => {
    const half = decodeRaw('h', 'FP16', [2], Uint8Array.of(0x00, 0x3c, 0x00, 0xc0)); // 1.0, -2.0
    expect(half.type).toBe('float16');
    expect(Array.from(half.data as Uint16Array)).toEqual([0x3c00, 0xc000]);
    const b = decodeRaw('b', 'BOOL', [3], Uint8Array.of(1, 0, 1));
    expect(b.type).toBe('bool');
    expect(Array.from(b.data as Uint8Array)).toEqual([1, 0, 1]);
    expect(() => decodeRaw('b', 'BOOL', [3], Uint8Array.of(1, 0, 7))).toThrow('BOOL bytes must be 0 or 1, got 7');
  });

  it('BF16 widens exactly to float32, and float32 narrows to the nearest bfloat16 (ties to even)', () => {
    const t = decodeRaw('x', 'BF16', [3], Uint8Array.of(0x80, 0x3f, 0x00, 0xc0, 0xc0, 0x7f)); // 1, -2, NaN
    expect(t.type).toBe('float32');
    const f = t.data as Float32Array;
    expect([f[0], f[1]]).toEqual([1, -2]);
    expect(Number.isNaN(f[2])).toBe(true);
    const x = Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, NaN, -Infinity);
    const bits = float32ToBf16(x);
    expect(Array.from(bf16ToFloat32(bits)).slice(0, 3)).toEqual([1, 1 + 2 ** -6, 1 + 2 ** -7]);
    expect(Number.isNaN(bf16ToFloat32(bits)[3])).toBe(true);
    expect(bf16ToFloat32(bits)[4]).toBe(-Infinity);
  });

  it('BYTES: 4-byte little-endian lengths then UTF-8, as tritonclient serializes them', () => {
    const bytes = encodeStrings(['', 'ab', 'é']);
    expect(Array.from(bytes)).toEqual([0, 0, 0, 0, 2, 0, 0, 0, 0x61, 0x62, 2, 0, 0, 0, 0xc3, 0xa9]);
    const t = decodeRaw('s', 'BYTES', [1, 3], bytes);
    expect(t).toEqual({ type: 'string', dims: [1, 3], data: ['', 'ab', 'é'] });
    expect(Array.from(rawOf(t))).toEqual(Array.from(bytes));
    expect(Array.from(tensorBytes({ type: 'string', dims: [0], data: [] }))).toEqual([]);
  });

  it('malformed BYTES and wrong byte counts are 422s that say what is wrong', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e as { code: string; message: string };
      }
      throw new Error('did not throw');
    };
    expect(err(() => decodeRaw('x', 'FP32', [1, 4], new Uint8Array(12)))).toMatchObject({
      code: 'INVALID_INPUT',
      message: 'input "x": 12 bytes of raw data, but float32 with shape [1,4] needs 16 (4 elements of 4 bytes)',
    });
    expect(err(() => decodeStrings(Uint8Array.of(5, 0, 0, 0, 0x61))).message).toContain('says 5 bytes, but only 1 remain');
    expect(err(() => decodeStrings(Uint8Array.of(1, 0))).message).toContain('truncated 4-byte length prefix');
    expect(err(() => decodeStrings(encodeStrings(['a', 'b']), 1)).message).toContain('more than 1 elements, but the shape needs 1');
    expect(err(() => decodeStrings(encodeStrings(['a']), 2)).message).toContain('holds 1 elements, but the shape needs 2');
    expect(err(() => decodeStrings(Uint8Array.of(2, 0, 0, 0, 0xc3, 0x28))).message).toContain('not valid UTF-8');
    expect(err(() => decodeRaw('x', 'FP8', [1], new Uint8Array(1))).message).toContain('datatype "FP8" is not supported');
    expect(err(() => decodeRaw('x', 'BF16', [3], new Uint8Array(4))).message).toContain('4 bytes of data, but the shape takes 6');
    expect(err(() => decodeRaw('x', 'FP32', [2 ** 30, 2 ** 30, 2 ** 30], new Uint8Array(4))).message).toContain('more than 2^53 elements');
    expect(err(() => tensorFromBytes('int32', [2], new Uint8Array(4))).message).toContain('4 bytes, but int32 of dims [2] takes 2 × 4 = 8 bytes');
  });
});
