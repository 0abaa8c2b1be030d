import { describe, expect, it } from 'vitest';
import { decodeStrings, elementCount, encodeStrings, tensorFromBytes, type Tensor } from '../../queue/tensor';
import { decodeAnswer, encodeAnswer } from '../../queue/replies';
import { decodeLaneJob, encodeLaneJob, type LaneJob } from '../../queue/lane';
import { decodeFrame, encodeFrame, layoutTensors, mapValues, packTensors, unpackTensors, type WireTensor } from '../../queue/wire';

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

  it("outputs written straight into the frame (layoutTensors): the same bytes as packing them first, padding zeroed whatever the frame's memory held", () => {
    const ts: Record<string, Tensor> = {
      flags: { type: 'bool', dims: [3], data: new Uint8Array([1, 0, 1]) },
      x: { type: 'float32', dims: [2], data: new Float32Array([1.5, -2]) },
      s: { type: 'string', dims: [1], data: ['hé'] },
    };
    const { tensors, blob } = layoutTensors(ts);
    // bool at 0 (3 bytes), 5 bytes of padding, float32 at 8, the string (4 + 3 bytes) at 16.
    expect(mapValues(tensors, (w) => [w.offset, w.byteLength])).toEqual({ flags: [0, 3], x: [8, 8], s: [16, 7] });
    const expected = Buffer.alloc(23);
    expected.set([1, 0, 1], 0);
    expected.set(new Uint8Array(new Float32Array([1.5, -2]).buffer), 8);
    expected.set([3, 0, 0, 0, 0x68, 0xc3, 0xa9], 16);
    const out = Buffer.alloc(2 + 23 + 2, 0xaa);
    blob.writeTo(out, 2);
    expect([...out.subarray(2, 25)]).toEqual([...expected]);
    expect([out[0], out[1], out[25], out[26]]).toEqual([0xaa, 0xaa, 0xaa, 0xaa]);
    expect(blob.byteLength).toBe(23);
    // As an answer: the same frame as with a packed blob, and it decodes to the same tensors.
    const frame = encodeAnswer({ ok: { outputs: { tensors } }, blob });
    expect(frame).toEqual(encodeAnswer({ ok: { outputs: { tensors } }, blob: expected }));
    const back = decodeAnswer(frame) as { ok: unknown; blob: Buffer };
    expect(unpackTensors(tensors, back.blob)).toEqual(ts);
    expect(packTensors(ts).blob).toEqual(expected);
  });

  it('an error or an answer without a blob decodes without one', () => {
    // toStrictEqual: not even a `blob: undefined` key.
    expect(decodeAnswer(encodeAnswer({ error: 'TIMEOUT: late' }))).toStrictEqual({ error: 'TIMEOUT: late' });
    expect(decodeAnswer(encodeAnswer({ ok: { dropped: 0 } }))).toStrictEqual({ ok: { dropped: 0 } });
    expect(decodeAnswer(encodeAnswer({ ok: 1, blob: Buffer.alloc(0) }))).toStrictEqual({ ok: 1 });
    // An error's frame carries no blob, even one given to it by mistake.
    const bad = { error: 'E', blob: Buffer.from([1]) } as unknown as Parameters<typeof encodeAnswer>[0];
    expect([...encodeAnswer(bad)]).toEqual([...encodeFrame({ error: 'E' })]);
  });
});

describe('a frame (encodeFrame): 4-byte little-endian JSON length, the JSON, spaces to an 8-byte boundary, the blob', () => {
  const bytes = (s: string) => [...Buffer.from(s)];
  it('lays out every byte', () => {
    // {"a":1} is 7 bytes: 4 + 7 = 11, padded to 16.
    expect([...encodeFrame({ a: 1 }, Uint8Array.from([9, 8, 7]))]).toEqual([7, 0, 0, 0, ...bytes('{"a":1}'), 0x20, 0x20, 0x20, 0x20, 0x20, 9, 8, 7]);
    // JSON of 4 bytes ends on the boundary: no padding. A length past 255 takes two bytes.
    expect([...encodeFrame('ab', Uint8Array.from([1]))]).toEqual([4, 0, 0, 0, ...bytes('"ab"'), 1]);
    const long = 'x'.repeat(298); // "x...x" is 300 bytes: 4 + 300 = 304, a multiple of 8
    expect([...encodeFrame(long).subarray(0, 5)]).toEqual([300 & 0xff, 300 >> 8, 0, 0, 0x22]);
    expect(encodeFrame(long).byteLength).toBe(304);
    // The length counts UTF-8 bytes, not characters: "é" is 2 bytes, "日" 3; "é日" quoted is 7.
    expect([...encodeFrame('é日')]).toEqual([7, 0, 0, 0, ...bytes('"é日"'), 0x20, 0x20, 0x20, 0x20, 0x20]);
    // One byte short of a boundary: 4 + 3 = 7, one space.
    expect([...encodeFrame(123)]).toEqual([3, 0, 0, 0, ...bytes('123'), 0x20]);
    // One byte past it: 4 + 5 = 9, seven spaces.
    expect([...encodeFrame('abc')]).toEqual([5, 0, 0, 0, ...bytes('"abc"'), ...Array(7).fill(0x20)]);
  });
  it('without a blob or with an empty one, the frame ends at the boundary; the blob comes back only when it has bytes', () => {
    const none = encodeFrame({ a: 1 });
    expect(none.byteLength).toBe(16);
    expect([...encodeFrame({ a: 1 }, new Uint8Array(0))]).toEqual([...none]);
    expect(decodeFrame(none)).toStrictEqual({ head: { a: 1 } });
    expect(decodeFrame(encodeFrame('ab'))).toStrictEqual({ head: 'ab' });
    expect(decodeFrame(encodeFrame(null, new Uint8Array(0)))).toStrictEqual({ head: null });
  });
  it('decodes the head and views the blob in the frame itself', () => {
    const frame = encodeFrame({ k: 'é', n: [1, 2] }, Uint8Array.from([0, 255, 1]));
    const { head, blob } = decodeFrame<{ k: string; n: number[] }>(frame);
    expect(head).toEqual({ k: 'é', n: [1, 2] });
    expect([...blob!]).toEqual([0, 255, 1]);
    expect([blob!.buffer === frame.buffer, blob!.byteOffset - frame.byteOffset]).toEqual([true, 24]); // 4 + 20 bytes of JSON
    // A 1-byte blob after JSON that ends on the boundary.
    const one = decodeFrame(encodeFrame('ab', Uint8Array.from([42])));
    expect([one.head, [...one.blob!]]).toEqual(['ab', [42]]);
  });
  it('carries tensors packed with 0-byte ones among them, bit for bit', () => {
    const { tensors, blob } = packTensors({ e: { type: 'float32', dims: [0, 3], data: new Float32Array(0) }, d: { type: 'float64', dims: [1], data: Float64Array.from([-0]) } });
    const back = decodeFrame<{ tensors: typeof tensors }>(encodeFrame({ tensors }, blob));
    const t = unpackTensors(back.head.tensors, back.blob!);
    expect([t.e!.dims, t.e!.data.length, Object.is((t.d!.data as Float64Array)[0], -0)]).toEqual([[0, 3], 0, true]);
    // Only 0-byte tensors: an empty blob, so the frame has none, and they unpack from nothing.
    const empty = packTensors({ e: { type: 'int8', dims: [0], data: new Int8Array(0) } });
    const f = decodeFrame<{ tensors: typeof empty.tensors }>(encodeFrame({ tensors: empty.tensors }, empty.blob));
    expect(f.blob).toBeUndefined();
    expect(unpackTensors(f.head.tensors, new Uint8Array(0)).e!.data.length).toBe(0);
  });
});

describe('a sync job in a lane (encodeLaneJob)', () => {
  const data = { model: { fn: 'f', sha256: 'h', version: 1, sizeBytes: 1, loadMs: 1, execMs: 1, pinned: false }, inputs: { tensors: {} }, acceptedAt: 5, deadline: 9, reply: { id: 'j1' } } as LaneJob['data'];
  it('is a frame of {id, name, data} and the inline bytes', () => {
    const frame = encodeLaneJob('j1', 'invoke', data, Uint8Array.from([3, 4]));
    expect([...frame]).toEqual([...encodeFrame({ id: 'j1', name: 'invoke', data }, Uint8Array.from([3, 4]))]);
    expect(decodeLaneJob(frame, 1234)).toStrictEqual({ id: 'j1', name: 'invoke', data, inline: Buffer.from([3, 4]), frame, processedOn: 1234 });
  });
  it('without inline bytes (they have a key of their own) it has no inline, and processedOn is now by default', () => {
    const frame = encodeLaneJob('j2', 'invoke', data);
    expect(decodeLaneJob(frame, 7)).toStrictEqual({ id: 'j2', name: 'invoke', data, frame, processedOn: 7 });
    const before = Date.now();
    const job = decodeLaneJob(frame);
    expect(job.processedOn).toBeGreaterThanOrEqual(before);
    expect(job.processedOn).toBeLessThanOrEqual(Date.now());
  });
});
