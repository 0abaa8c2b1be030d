import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { answerBody, byteStream, compressedStream, JsonAnswer, JsonData, STREAM_FROM_BYTES } from '../../functions/http/answer';
import { jsonValues, stringifyWithBigInts } from '../../functions/http/json-tensors';
import type { Tensor } from '../../queue/wire';

/**
 * Answers written in pieces (functions/http/answer.ts) are byte for byte what one JSON.stringify
 * of the whole answer writes, across piece boundaries, for every element type; a large one is
 * streamed in pieces of bounded size, never as one string.
 */

const N = 20_000; // over a piece of 16 384 elements
const f32 = Float32Array.from({ length: N }, (_, i) => (i % 7 === 0 ? NaN : i % 11 === 0 ? -Infinity : i % 13 === 0 ? -0 : Math.fround(Math.sin(i) * 1e3)));
const i64 = BigInt64Array.from({ length: N }, (_, i) => (i % 3 === 0 ? 2n ** 60n + BigInt(i) : BigInt(i - 5) * (i % 2 ? -1n : 1n)));
const tensors = {
  f32: { type: 'float32', dims: [N], data: f32 },
  f64: { type: 'float64', dims: [2, N / 2], data: Float64Array.from(f32, (v, i) => v / (i + 3)) },
  f16: { type: 'float16', dims: [N], data: Uint16Array.from({ length: N }, (_, i) => (i * 37) & 0xffff) },
  i64: { type: 'int64', dims: [N], data: i64 },
  u64: { type: 'uint64', dims: [N], data: BigUint64Array.from(i64, (v) => (v < 0n ? -v : v) * 9n) },
  i8: { type: 'int8', dims: [N], data: Int8Array.from({ length: N }, (_, i) => (i % 256) - 128) },
  u32: { type: 'uint32', dims: [N], data: Uint32Array.from({ length: N }, (_, i) => i * 100_003) },
  bool: { type: 'bool', dims: [N], data: Uint8Array.from({ length: N }, (_, i) => i % 3 & 1) },
  str: { type: 'string', dims: [N], data: Array.from({ length: N }, (_, i) => (i % 5 === 0 ? `"quoted" \\ é ${i}\n` : `s${i}`)) },
  empty: { type: 'float32', dims: [0, 3], data: new Float32Array(0) },
} as Record<string, Tensor>;

async function read(s: ReadableStream<Uint8Array>): Promise<{ bytes: Buffer; largest: number; pieces: number }> {
  const parts: Buffer[] = [];
  for await (const p of s as unknown as AsyncIterable<Uint8Array>) parts.push(Buffer.from(p));
  return { bytes: Buffer.concat(parts), largest: Math.max(...parts.map((p) => p.byteLength)), pieces: parts.length };
}

describe('JsonAnswer', () => {
  it('v1 form (INT64 past 2^53 as strings): text() and the stream equal JSON.stringify of the whole answer, for every element type', async () => {
    const value = (data: (t: Tensor) => unknown) => ({ function: 'f', version: 2, outputs: Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { type: t.type, dims: t.dims, data: data(t) }])), coldStart: false, node: 'n', timings: { execMs: 1.5 } });
    const want = JSON.stringify(value((t) => jsonValues(t)));
    const answer = new JsonAnswer(value((t) => new JsonData(t)));
    expect(answer.bytes().toString()).toBe(want);
    const got = await read(byteStream(answer.pieces()));
    expect(got.bytes.toString()).toBe(want);
    // Pieces of at most ~64 KiB of text plus one piece of elements: never the whole answer at once.
    expect(got.pieces).toBeGreaterThan(8);
    expect(got.largest).toBeLessThan(want.length / 4);
  });

  it('v2 form (INT64 as bare digits) equals stringifyWithBigInts of the whole answer', async () => {
    const value = (data: (t: Tensor) => unknown) => ({ model_name: 'm', model_version: '1', id: 'x"y', outputs: Object.entries(tensors).map(([name, t]) => ({ name, shape: t.dims, data: data(t) })) });
    const want = stringifyWithBigInts(value((t) => jsonValues(t, { bigint: 'raw' })));
    const answer = new JsonAnswer(value((t) => new JsonData(t, 'raw')));
    expect(answer.bytes().toString()).toBe(want);
    expect((await read(byteStream(answer.pieces()))).bytes.toString()).toBe(want);
    expect(gunzipSync((await read(compressedStream(answer.pieces(), 'gzip'))).bytes).toString()).toBe(want);
  });

  it('a small answer is one buffer; past STREAM_FROM_BYTES it is a stream', () => {
    const small = { type: 'float32', dims: [2], data: Float32Array.of(1.5, NaN) } as Tensor;
    expect(answerBody(new JsonAnswer({ y: new JsonData(small), n: 1, é: 'ü' })).toString()).toBe('{"y":[1.5,"NaN"],"n":1,"é":"ü"}');
    const at = { type: 'uint8', dims: [STREAM_FROM_BYTES], data: new Uint8Array(STREAM_FROM_BYTES) } as Tensor;
    expect(answerBody(new JsonAnswer({ y: new JsonData(at) }))).toBeInstanceOf(Buffer);
    const over = { type: 'uint8', dims: [STREAM_FROM_BYTES + 1], data: new Uint8Array(STREAM_FROM_BYTES + 1) } as Tensor;
    expect(answerBody(new JsonAnswer({ y: new JsonData(over) }))).toBeInstanceOf(ReadableStream);
  });

  it('a string in the answer that looks like a mark stays a string', () => {
    const t = { type: 'int8', dims: [1], data: Int8Array.of(3) } as Tensor;
    const value = { id: '\u0001abc:0', also: '"\\u0001', y: new JsonData(t) };
    expect(new JsonAnswer(value).bytes().toString()).toBe(JSON.stringify({ ...value, y: [3] }));
  });

  it('byteStream passes buffers as they are (no copy) and joins small strings', async () => {
    const big = new Uint8Array(3 * 1024 * 1024).fill(7);
    const parts: Uint8Array[] = [];
    for await (const p of byteStream(['{', '"a"', ':1}', big, 'x']) as unknown as AsyncIterable<Uint8Array>) parts.push(p);
    expect(parts.map((p) => Buffer.from(p).toString('latin1').slice(0, 8))).toEqual(['{"a":1}', '\x07'.repeat(8), 'x']);
    expect(parts[1]).toBe(big);
  });
});
