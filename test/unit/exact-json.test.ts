import { describe, expect, it } from 'vitest';
import { parseJsonExact } from '../../functions/http/exact-json';

describe('parseJsonExact', () => {
  it('keeps integer literals past 2^53 exact, as BigInts, anywhere in the value', () => {
    expect(parseJsonExact('{"a":[9223372036854775807,-9223372036854775808,[18446744073709551615]],"b":{"c":9007199254740993}}')).toEqual({
      a: [9223372036854775807n, -9223372036854775808n, [18446744073709551615n]],
      b: { c: 9007199254740993n },
    });
  });
  it('leaves everything else as JSON.parse has it: safe integers, floats, exponents, digits inside strings', () => {
    const text = '{"s":"9223372036854775807","t":"a\\\\\\"9007199254740993","f":[0.30000001192092896,1e300,-2.5e-7,12345678901234567.5],"i":[1,-9007199254740991],"x":9007199254740993}';
    const r = parseJsonExact(text) as Record<string, unknown>;
    const plain = JSON.parse(text) as Record<string, unknown>;
    expect(r.s).toBe(plain.s);
    expect(r.t).toBe(plain.t);
    expect(r.f).toEqual(plain.f);
    expect(r.i).toEqual([1, -9007199254740991]);
    expect(r.x).toBe(9007199254740993n);
  });
  it('a string shaped like its internal marker stays a string', () => {
    expect(parseJsonExact('["\\u0000abc:123", 9007199254740993]')).toEqual(['\u0000abc:123', 9007199254740993n]);
  });
  it('malformed JSON throws as JSON.parse does', () => {
    expect(() => parseJsonExact('[9223372036854775807,')).toThrow(SyntaxError);
    expect(() => parseJsonExact('{"a": 1')).toThrow(SyntaxError);
  });
});
