import { describe, expect, it } from 'vitest';
import { BruleeError, ErrorCode, errorFromWire, errorToWire, grpcStatusOf, isBruleeError, preview, type ErrorCodeName } from '../../errors';

describe('error codes', () => {
  it('each code has the HTTP status the README promises', () => {
    // Literals from README.md ("HTTP API"), not read back from the table under test.
    const want: Record<ErrorCodeName, number> = {
      BAD_REQUEST: 400, MALFORMED_JSON: 400, INVALID_NAME: 400, INVALID_OPTION: 400, DUPLICATE_INPUT: 400,
      UNAUTHORIZED: 401, FORBIDDEN: 403,
      FUNCTION_NOT_FOUND: 404, INVOCATION_NOT_FOUND: 404, NOT_FOUND: 404, METHOD_NOT_ALLOWED: 405,
      CONFLICT: 409, PAYLOAD_TOO_LARGE: 413,
      INVALID_MODEL: 422, INVALID_INPUT: 422, MODEL_TOO_LARGE: 422, INFERENCE_FAILED: 422, OUTPUT_TOO_LARGE: 422, QUEUE_FULL: 429, OVERLOADED: 503, MODEL_BYTES_MISSING: 404, MODEL_BYTES_CORRUPT: 500, MODEL_STORE_UNAVAILABLE: 503,
      CACHE_BUSY: 503, REDIS_UNAVAILABLE: 503, NO_NODE_AVAILABLE: 503, SHUTTING_DOWN: 503,
      TIMEOUT: 504, INTERNAL: 500, NODE_CRASHED: 500,
    };
    for (const code of Object.keys(ErrorCode) as ErrorCodeName[]) {
      expect([code, new BruleeError(code, 'm').status]).toEqual([code, want[code] ?? 'a status the test does not know yet']);
    }
  });

  it('each code has the gRPC status of its HTTP status (gRPC\'s HTTP mapping, read the other way)', () => {
    // Literals: INVALID_ARGUMENT 3, UNAUTHENTICATED 16, PERMISSION_DENIED 7, NOT_FOUND 5, ABORTED 10,
    // RESOURCE_EXHAUSTED 8, UNAVAILABLE 14, DEADLINE_EXCEEDED 4, INTERNAL 13, UNIMPLEMENTED 12.
    const want: Record<number, number> = { 400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 10, 413: 8, 422: 3, 429: 8, 500: 13, 503: 14, 504: 4 };
    for (const code of Object.keys(ErrorCode) as ErrorCodeName[]) {
      expect([code, grpcStatusOf(code)]).toEqual([code, want[ErrorCode[code]]]);
    }
    expect([grpcStatusOf('INVALID_INPUT'), grpcStatusOf('CACHE_BUSY'), grpcStatusOf('TIMEOUT'), grpcStatusOf('INTERNAL'), grpcStatusOf('MODEL_BYTES_CORRUPT')]).toEqual([3, 14, 4, 13, 13]);
  });

  it('a BruleeError carries its code, message and details to JSON', () => {
    const e = new BruleeError('CACHE_BUSY', 'no room', { used: 5 });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('BruleeError');
    expect(e.toJSON()).toEqual({ code: 'CACHE_BUSY', message: 'no room', details: { used: 5 } });
    expect(new BruleeError('TIMEOUT', 'late').toJSON()).toEqual({ code: 'TIMEOUT', message: 'late' });
    expect(Object.keys(new BruleeError('TIMEOUT', 'late').toJSON())).toEqual(['code', 'message']);
    expect(isBruleeError(e)).toBe(true);
    expect(isBruleeError(new Error('x'))).toBe(false);
    expect(isBruleeError({ code: 'TIMEOUT', message: 'x' })).toBe(false);
  });

  it('crosses the queue as "CODE: message" and comes back with its code', () => {
    const wire = errorToWire(new BruleeError('INFERENCE_FAILED', 'bad: dims\nline two'));
    expect(wire).toBe('INFERENCE_FAILED: bad: dims\nline two');
    const back = errorFromWire(wire);
    expect(back).toBeInstanceOf(BruleeError);
    expect(back.code).toBe('INFERENCE_FAILED');
    expect(back.message).toBe('bad: dims\nline two');
    expect(back.status).toBe(422);
    expect(errorFromWire('CACHE_BUSY: full').status).toBe(503);
    expect(errorToWire(new TypeError('boom'))).toBe('INTERNAL: boom');
    expect(errorToWire('plain')).toBe('INTERNAL: plain');
    // A code that is not ours, or no code at all: INTERNAL, with the whole text as message.
    expect(errorFromWire('NOT_A_CODE: x').toJSON()).toEqual({ code: 'INTERNAL', message: 'NOT_A_CODE: x' });
    expect(errorFromWire('something broke').toJSON()).toEqual({ code: 'INTERNAL', message: 'something broke' });
    expect(errorFromWire('xTIMEOUT: y').toJSON()).toEqual({ code: 'INTERNAL', message: 'xTIMEOUT: y' });
    expect(errorFromWire('TIMEOUT:no space').toJSON()).toEqual({ code: 'INTERNAL', message: 'TIMEOUT:no space' });
    expect(errorFromWire('TIMEOUT: ').toJSON()).toEqual({ code: 'TIMEOUT', message: '' });
    expect(errorFromWire('toString: x').code).toBe('INTERNAL');
  });
});

describe('preview', () => {
  it('reads no more of a large array than it shows', () => {
    const reads: string[] = [];
    const big = new Proxy(new Array<number>(1000).fill(0), {
      get(target, prop, receiver) {
        if (typeof prop === 'string' && /^\d+$/.test(prop)) reads.push(prop);
        return Reflect.get(target, prop, receiver) as unknown;
      },
    });
    // "[0" is 2 characters and each further ", 0" adds 3: the fourth element takes it to 11 > 10.
    expect(preview(big, 10)).toBe('[0, 0, 0, …');
    expect(reads).toEqual(['0', '1', '2', '3']);
    reads.length = 0;
    expect(preview([big, big], 10)).toBe('[[0, 0, 0,…');
    expect(reads).toEqual(['0', '1', '2']);
    reads.length = 0;
    expect(preview({ k: big, l: big }, 10)).toBe('{"k": [0, …');
    expect(reads).toEqual(['0', '1']);
  });

  it('renders values as JSON-like text', () => {
    expect(preview('ab')).toBe('"ab"');
    expect(preview(12n)).toBe('12');
    expect(preview([2n ** 64n, true])).toBe('[18446744073709551616, true]');
    expect(preview(null)).toBe('null');
    expect(preview(undefined)).toBe('undefined');
    expect(preview(1.5)).toBe('1.5');
    expect(preview([1, 'a', [true]])).toBe('[1, "a", [true]]');
    expect(preview({ a: 1, b: [2] })).toBe('{"a": 1, "b": [2]}');
    expect(preview([])).toBe('[]');
    expect(preview({})).toBe('{}');
  });
  it('cuts deep, long and large values', () => {
    expect(preview([[[[1]]]])).toBe('[[[[…]]]]');
    expect(preview({ a: { b: { c: { d: 1 } } } })).toBe('{"a": {"b": {"c": {…}}}}');
    // At most `max` characters, then "…".
    expect(preview('x'.repeat(100))).toBe(`"${'x'.repeat(79)}…`);
    expect(preview('x'.repeat(10), 5)).toBe('"xxxx…');
    expect(preview('xxx', 5)).toBe('"xxx"');
    expect(preview('xxxx', 5)).toBe('"xxxx…');
    const big = preview(Array.from({ length: 1000 }, (_, i) => i));
    expect(big.length).toBe(81);
    expect(big.endsWith('…')).toBe(true);
    expect(big.startsWith('[0, 1, 2, 3')).toBe(true);
    expect(preview([1, 2, 3], 3)).toBe('[1,…');
    expect(preview([1, 2], 6)).toBe('[1, 2]');
    // Cut exactly at `max` characters: still marked as cut.
    expect(preview([1, 2, 3], 4)).toBe('[1, …');
    expect(preview([10, 20], 3)).toBe('[10…');
    expect(preview({ a: 1, b: 2 }, 6)).toBe('{"a": …');
    expect(preview({ a: 1 }, 8)).toBe('{"a": 1}');
    // Escapes count: a cut string keeps as much of its quoted form as fits.
    expect(preview('"'.repeat(10), 5)).toBe('"\\"\\"…');
    expect(preview(['ab', 'x'.repeat(10)], 8)).toBe('["ab", "…');
    // 20 000 levels: no stack overflow.
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    expect(preview(deep)).toBe('[[[[…]]]]');
  });
});
