import { createHash } from 'node:crypto';
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * `Content-Encoding` on the v1 routes, as on /v2 (README: gzip or deflate bodies): a client whose
 * HTTP library compresses what it sends got its gzip bytes read as JSON (400 MALFORMED_JSON with
 * the bytes echoed) or as an ONNX file (422 "not an ONNX model").
 */
let b: TestBrulee;
const mlp = mlpModel({ inputSize: 4, hidden: [8], outputSize: 3 });
beforeAll(async () => {
  b = await startBrulee({ MAX_REQUEST_BYTES: '64KiB' });
});
afterAll(async () => {
  await b?.destroy();
});

const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } });
const read = async (r: Response): Promise<any> => r.json();
const invoke = (bytes: Uint8Array | string, encoding?: string) =>
  b.req('/functions/m/invoke', { method: 'POST', headers: { 'content-type': 'application/json', ...(encoding ? { 'content-encoding': encoding } : {}) }, body: bytes });

describe('compressed request bodies on v1', () => {
  it('a gzip or deflate registration stores the model itself', async () => {
    const r = await b.put('m', gzipSync(mlp), '', { 'content-encoding': 'gzip' });
    expect(r.status).toBe(201);
    expect(r.body.sha256).toBe(createHash('sha256').update(mlp).digest('hex'));
    const again = await b.put('m', deflateSync(mlp), '', { 'content-encoding': 'deflate' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ version: 1, newVersion: false });
  });

  it('a gzip or deflate invocation answers as the plain one does', async () => {
    const plain = await invoke(body);
    expect(plain.status).toBe(200);
    const want = (await read(plain)).outputs;
    for (const [enc, bytes] of [['gzip', gzipSync(body)], ['deflate', deflateSync(body)], ['x-gzip', gzipSync(body)]] as const) {
      const r = await invoke(bytes, enc);
      expect(r.status, enc).toBe(200);
      expect((await read(r)).outputs, enc).toEqual(want);
    }
  });

  it('an unknown encoding, bytes that are not what the header says, and a body past the limit once decompressed are 4xx that say so', async () => {
    const br = await invoke(body, 'br');
    expect(br.status).toBe(400);
    expect((await read(br)).error).toEqual({ code: 'BAD_REQUEST', message: 'Content-Encoding "br" is not supported; send gzip, deflate or an uncompressed body' });
    const notGzip = await invoke(body, 'gzip');
    expect(notGzip.status).toBe(400);
    expect((await read(notGzip)).error.message).toMatch(/^the request body is not valid gzip data/);
    // 1 MB of JSON compresses to ~1 KB: under the 64 KiB limit as sent, past it decompressed.
    const bomb = gzipSync(JSON.stringify({ inputs: {}, pad: ' '.repeat(1_000_000) }));
    expect(bomb.byteLength).toBeLessThan(64 * 1024);
    const big = await invoke(bomb, 'gzip');
    expect(big.status).toBe(413);
    expect((await read(big)).error).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: 'the decompressed request body is larger than the limit of 65536 bytes (MAX_REQUEST_BYTES)' });
    expect((await invoke(body)).status).toBe(200);
  });
});
