import { connect, type AddressInfo } from 'node:net';
import { request } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/** How the gateway treats connections, over a real socket. */

let b: TestBrulee;
let server: ServerType;
let port: number;

beforeAll(async () => {
  b = await startBrulee({ MAX_REQUEST_BYTES: '512KiB' });
  expect((await b.put('m', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }))).status).toBe(201);
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: b.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await b?.destroy();
});

function post(path: string, body: Uint8Array | string, method = 'POST'): Promise<{ status: number; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('an answer sent before the body was read closes the connection (no reset for the next request on it)', () => {
  it('an unknown model on /v2 with a 400 KB body', async () => {
    const r = await post('/v2/models/nope/infer', new Uint8Array(400_000).fill(0x20));
    expect(r).toEqual({ status: 404, connection: 'close' });
  });
  it('a body past MAX_REQUEST_BYTES', async () => {
    const r = await post('/functions/m/invoke', new Uint8Array(1_000_000).fill(0x20));
    expect(r).toEqual({ status: 413, connection: 'close' });
  });
  it('a client that writes its whole body before reading gets the 413, not a reset', async () => {
    // As tritonclient.http (geventhttpclient) and python's http.client do: all of the body, then
    // read. The body comes after the server's 500 ms of draining, as a body past the default
    // MAX_REQUEST_BYTES (64 MiB) always does, at the 64 MiB it drains at most.
    const r = await new Promise<{ error?: string; answer: string }>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.pause(); // read nothing until the body is written
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, answer }));
      socket.on('end', () => resolve({ answer }));
      socket.write('POST /functions/m/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n');
      setTimeout(() => socket.write(new Uint8Array(1_000_000).fill(0x20), () => socket.resume()), 1_000);
    });
    expect(r.error).toBeUndefined();
    expect(r.answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.answer).toContain('PAYLOAD_TOO_LARGE');
  });
  it('a GET with a body keeps the connection (node reads and drops the body; closing would reset the client)', async () => {
    expect(await post('/healthz', '[[[[[[[[', 'GET')).toEqual({ status: 200, connection: 'keep-alive' });
  });
  it('an answer after the body was read keeps the connection', async () => {
    const ok = await post('/functions/m/invoke', JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } }));
    expect(ok).toEqual({ status: 200, connection: 'keep-alive' });
    const bad = await post('/functions/m/invoke', '{"inputs": 1}');
    expect(bad).toEqual({ status: 400, connection: 'keep-alive' });
  });
});
