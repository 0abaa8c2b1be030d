import { describe, expect, it } from 'vitest';
import { decodeStrings, elementCount, encodeStrings, tensorFromBytes, type Tensor } from '../../queue/tensor';
import { decodeAnswer, encodeAnswer } from '../../queue/replies';
import { mapValues, packTensors, unpackTensors, type WireTensor } from '../../queue/wire';

/** One tensor alone on the wire, its blob inline as base64 (as a small job's inputs travel). */
const toWire = (t: Tensor): WireTensor & { b64: string } => {
  const p = packTensors({ t });
  return { ...p.tensors.t!, b64: p.blob.toString('base64') };
};
const fromWire = (w: Omit<WireTensor, 'offset' | 'byteLength'> & { b64: string }): Tensor => {
  const blob = Buffer.from(w.b64, 'base64');
  return unpackTensors({ t: { type: w.type, dims: w.dims, offset: 0, byteLength: blob.byteLength } }, blob).t!;
};

/** One tensor per element type, with edge values, as the queue must carry them bit for bit. */
const TENSORS: Tensor[] = [
  { type: 'float32', dims: [2, 2], data: Float32Array.from([0.1, -0, NaN, -Infinity]) },
  { type: 'float64', dims: [3], data: Float64Array.from([Math.PI, -1e-300, Number.MAX_VALUE]) },
  { type: 'float16', dims: [2], data: Uint16Array.from([0x3c00, 0xfc00]) },
  { type: 'int8', dims: [2], data: Int8Array.from([-128, 127]) },
  { type: 'uint8', dims: [2], data: Uint8Array.from([0, 255]) },
  { type: 'int16', dims: [2], data: Int16Array.from([-32768, 32767]) },
  { type: 'uint16', dims: [2], data: Uint16Array.from([0, 65535]) },
  { type: 'int32', dims: [2], data: Int32Array.from([-2147483648, 2147483647]) },
  { type: 'uint32', dims: [2], data: Uint32Array.from([0, 4294967295]) },
  { type: 'int64', dims: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]) },
  { type: 'uint64', dims: [1, 2], data: BigUint64Array.from([0n, 2n ** 64n - 1n]) },
  { type: 'bool', dims: [3], data: Uint8Array.from([1, 0, 1]) },
  { type: 'string', dims: [3], data: ['', 'héllo', '日本'] },
];

describe('the queue wire format', () => {
  it.each(TENSORS.map((t) => [t.type, t] as const))('%s crosses as base64 of its little-endian bytes and comes back equal', (_type, t) => {
    const w = toWire(t);
    expect(w.type).toBe(t.type);
    expect(w.dims).toEqual(t.dims);
    // JSON, as BullMQ stores it.
    const back = fromWire(JSON.parse(JSON.stringify(w)));
    expect(back.type).toBe(t.type);
    expect(back.dims).toEqual(t.dims);
    expect(back.data.constructor).toBe(t.data.constructor);
    expect(Array.from(back.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
  });

  it('writes the bytes little-endian, exactly (literals)', () => {
    expect(toWire({ type: 'uint16', dims: [1], data: Uint16Array.from([0x0102]) }).b64).toBe(Buffer.from([0x02, 0x01]).toString('base64'));
    expect(toWire({ type: 'int32', dims: [1], data: Int32Array.from([-2]) }).b64).toBe(Buffer.from([0xfe, 0xff, 0xff, 0xff]).toString('base64'));
    expect(toWire({ type: 'float32', dims: [1], data: Float32Array.from([1]) }).b64).toBe(Buffer.from([0, 0, 0x80, 0x3f]).toString('base64'));
    // A view into a larger buffer sends only its own bytes.
    const big = Int16Array.from([1, 2, 3, 4]);
    expect(toWire({ type: 'int16', dims: [2], data: big.subarray(1, 3) }).b64).toBe(Buffer.from([2, 0, 3, 0]).toString('base64'));
  });

  it('reads bytes at an odd offset (Buffer pools are not aligned) into a fresh aligned array', () => {
    const raw = new Uint8Array(9);
    raw.set([0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f], 0);
    const t = tensorFromBytes('float64', [1], raw.subarray(1));
    expect(Array.from(t.data as Float64Array)).toEqual([1]);
    const aligned = new Uint8Array(8);
    aligned.set([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    const v = tensorFromBytes('float64', [1], aligned);
    expect((v.data as Float64Array).buffer).toBe(aligned.buffer); // viewed, not copied
  });

  it('refuses bytes that do not fit the dims, naming what they were', () => {
    expect(() => tensorFromBytes('int32', [3], new Uint8Array(8), 'a queued tensor')).toThrow(
      'a queued tensor: 8 bytes, but int32 of dims [3] takes 3 × 4 = 12 bytes',
    );
    expect(() => fromWire({ type: 'float32', dims: [2], b64: Buffer.from([1, 2, 3]).toString('base64') })).toThrow(/^a queued tensor: 3 bytes, but float32 of dims \[2\] takes 2 × 4 = 8 bytes$/);
  });

  it('strings: 4-byte little-endian length, then UTF-8', () => {
    expect(Array.from(encodeStrings(['ab', '']))).toEqual([2, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0]);
    expect(decodeStrings(Uint8Array.from([1, 0, 0, 0, 0x7a]), 1)).toEqual(['z']);
    expect(() => decodeStrings(Uint8Array.from([1, 0, 0]), 1, 'x')).toThrow('x: element 0 has a truncated 4-byte length prefix (3 bytes left)');
    expect(() => decodeStrings(Uint8Array.from([5, 0, 0, 0, 0x61]), 1, 'x')).toThrow('x: element 0 says 5 bytes, but only 1 remain');
    expect(() => decodeStrings(encodeStrings(['a', 'b']), 1, 'x')).toThrow(/^x: holds more than 1 elements, but the shape needs 1$/);
    expect(() => decodeStrings(encodeStrings(['a']), 2, 'x')).toThrow(/^x: holds 1 elements, but the shape needs 2$/);
  });

  it('counts elements and maps values', () => {
    expect(elementCount([2, 3, 4])).toBe(24);
    expect(elementCount([])).toBe(1);
    expect(elementCount([5, 0])).toBe(0);
    expect(mapValues({ a: 1, b: 2 }, (v) => v * 10)).toEqual({ a: 10, b: 20 });
  });
});

describe('an answer on the wire', () => {
  it('is a length, its JSON, padding to 8 bytes, then the blob as raw bytes', () => {
    const blob = Buffer.from([1, 2, 3, 250]);
    const buf = encodeAnswer({ ok: { a: 1 }, blob });
    // {"ok":{"a":1}} is 14 bytes: 4 + 14 = 18, padded to 24.
    expect(buf.readUInt32LE(0)).toBe(14);
    expect(buf.toString('utf8', 4, 18)).toBe('{"ok":{"a":1}}');
    expect(buf.subarray(18, 24).toString()).toBe('      ');
    expect([...buf.subarray(24)]).toEqual([1, 2, 3, 250]);
    const back = decodeAnswer(buf);
    expect(back).toEqual({ ok: { a: 1 }, blob });
  });

  it('an error or an answer without a blob decodes without one', () => {
    expect(decodeAnswer(encodeAnswer({ error: 'TIMEOUT: late' }))).toEqual({ error: 'TIMEOUT: late' });
    expect(decodeAnswer(encodeAnswer({ ok: { dropped: 0 } }))).toEqual({ ok: { dropped: 0 } });
  });
});
