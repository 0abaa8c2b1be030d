import { describe, expect, it } from 'vitest';
import { decodeJsonTensor } from '../../functions/http/json-tensors';
import { parseJson } from '../../functions/http/parse';

const decode = (type: string, data: unknown[]) => decodeJsonTensor('x', { type, dims: [data.length], data });
const values = (type: string, data: unknown[]) => Array.from(decode(type, data).data as ArrayLike<number>);

describe('JSON numbers past a float type\'s range', () => {
  it('are refused with the value, the input and the range, not turned into infinities', () => {
    expect(() => decode('float32', [1, 1e300])).toThrow(/^input "x": element 1 is 1e\+300, past float32's range \(finite values are at most ±3\.4028234663852886e\+38\); send "Infinity" or "-Infinity" if an infinity is meant$/);
    expect(() => decode('float32', [-1e39])).toThrow(/element 0 is -1e\+39, past float32's range/);
    expect(() => decode('float16', [0.5, 70000])).toThrow(/^input "x": element 1 is 70000, past float16's range \(finite values are at most ±65504\)/);
    expect(() => decode('float16', [-65520])).toThrow(/element 0 is -65520, past float16's range/);
    // Integers past 2^53 arrive as BigInts (exact parsing); past float32's range they are refused too.
    expect(() => decode('float32', parseJson('[1000000000000000000000000000000000000000]') as unknown[])).toThrow(/element 0 is 1000000000000000000000000000000000000000, past float32's range/);
    // A literal past float64's range is Infinity to JSON.parse: refused, as "a number".
    expect(() => decode('float64', parseJson('[1, 1e400]') as unknown[])).toThrow(/^input "x": element 1 is a number, past float64's range \(finite values are at most ±1\.7976931348623157e\+308\)/);
    expect(() => decode('float32', parseJson('[-1e400]') as unknown[])).toThrow(/element 0 is a number, past float32's range/);
  });

  it('keeps what rounds to the largest finite value, and infinities sent as strings', () => {
    expect(values('float32', [3.4028235677973362e38, -3.4028235677973362e38, 1e38])).toEqual([3.4028234663852886e38, -3.4028234663852886e38, Math.fround(1e38)]);
    expect(() => decode('float32', [3.4028235677973366e38])).toThrow(/past float32's range/);
    expect(values('float16', [65519, -65504, 1e-10])).toEqual([0x7bff, 0xfbff, 0]);
    expect(values('float32', ['Infinity', '-Infinity', 1])).toEqual([Infinity, -Infinity, 1]);
    expect(values('float16', ['Infinity'])).toEqual([0x7c00]);
    expect(values('float64', [1e300, 'Infinity'])).toEqual([1e300, Infinity]);
  });
});
