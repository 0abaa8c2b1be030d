import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encodeModel } from '../../models/onnx-builder';
import { createRedis } from '../../queue/connection';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { until } from '../support/within';

/** One request must not take the process's memory: output size, request bytes held, Redis. */

// 81 bytes that answer as many zeros as asked for.
const cosbomb = encodeModel({
  inputs: [{ name: 'shape', type: 'int64', shape: [1] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['n'] }],
  nodes: [{ op: 'ConstantOfShape', inputs: ['shape'], outputs: ['y'] }],
  graphName: 'cosbomb',
});
const identity = encodeModel({
  inputs: [{ name: 'x', type: 'float32', shape: ['n'] }],
  outputs: [{ name: 'y', type: 'float32', shape: ['n'] }],
  nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
  graphName: 'identity',
});

let b: TestBrulee;
let server: ServerType;
let port: number;
/**
 * Requests handed to the app so far. The app counts a body by its Content-Length as it takes the
 * request, before reading any of it (functions/http/connection.ts): once a slow client's request is
 * counted here, its bytes are held.
 */
let arrived = 0;
beforeAll(async () => {
  b = await startBrulee({ MAX_OUTPUT_BYTES: '1MiB', MAX_REQUEST_BYTES: '2MiB', MAX_PENDING_REQUEST_BYTES: '1MiB' });
  expect((await b.put('cosbomb', cosbomb)).status).toBe(201);
  expect((await b.put('identity', identity)).status).toBe(201);
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: (req, env) => (arrived++, b.app.fetch(req, env)), port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await b?.destroy();
});

const shape = (n: number) => ({ shape: { type: 'int64', dims: [1], data: [n] } });

describe('MAX_OUTPUT_BYTES', () => {
  it('outputs past the limit are a 422 OUTPUT_TOO_LARGE that names the limit, on v1 and v2; below it they come back', async () => {
    const big = await b.invoke('cosbomb', shape(1_000_000));
    expect(big.status).toBe(422);
    expect(big.body.error.code).toBe('OUTPUT_TOO_LARGE');
    expect(big.body.error.message).toMatch(/take 4000000 bytes, more than the limit of 1048576 bytes \(MAX_OUTPUT_BYTES\)/);
    const v2 = await b.json('POST', '/v2/models/cosbomb/infer', { inputs: [{ name: 'shape', shape: [1], datatype: 'INT64', data: [1_000_000] }] });
    expect(v2.status).toBe(422);
    expect(v2.body.error).toMatch(/MAX_OUTPUT_BYTES/);
    const ok = await b.invoke('cosbomb', shape(1000));
    expect(ok.status).toBe(200);
    expect(ok.body.outputs.y.dims).toEqual([1000]);
    expect(ok.body.outputs.y.data).toEqual(new Array(1000).fill(0));
  });
});

describe('MAX_PENDING_REQUEST_BYTES', () => {
  it('while two 400 KB bodies are being read, a third one gets 503 OVERLOADED with Retry-After; once they are read, it is served', async () => {
    // Two clients that declare 400 KB bodies and send them slowly: the gateway holds their bytes.
    const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [100_000], data: new Array(100_000).fill(0.5) } } });
    const before = arrived;
    const slow = [0, 1].map(() => {
      const sock = connect(port, '127.0.0.1');
      sock.write(`POST /functions/identity/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body.slice(0, 1000)}`);
      let text = '';
      sock.on('data', (d) => (text += d.toString()));
      return { sock, done: new Promise<string>((resolve) => sock.on('close', () => resolve(text))) };
    });
    await until('the two slow requests to reach the app', () => arrived >= before + 2, 10_000);
    const third = await fetch(`http://127.0.0.1:${port}/functions/identity/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(third.status).toBe(503);
    expect(third.headers.get('retry-after')).toBe('1');
    expect(((await third.json()) as any).error.code).toBe('OVERLOADED');

    for (const s of slow) s.sock.write(body.slice(1000));
    const answers = await Promise.all(slow.map((s) => s.done));
    for (const a of answers) expect(a).toMatch(/^HTTP\/1\.1 200/);
    const again = await fetch(`http://127.0.0.1:${port}/functions/identity/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(again.status).toBe(200);
    expect(((await again.json()) as any).outputs.y.dims).toEqual([100_000]);
  });
});

describe('MAX_PENDING_REQUEST_BYTES, chunked bodies (no Content-Length)', () => {
  /** A raw chunked request; `first` bytes of the body go out now, the rest on `finish()`. */
  function chunked(body: string, first: number) {
    const sock = connect(port, '127.0.0.1');
    const chunk = (t: string) => `${Buffer.byteLength(t).toString(16)}\r\n${t}\r\n`;
    sock.write(`POST /functions/identity/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk(body.slice(0, first))}`);
    let text = '';
    sock.on('data', (d) => (text += d.toString()));
    const done = new Promise<string>((resolve) => sock.on('close', () => resolve(text)));
    return { done, finish: () => sock.write(`${first < body.length ? chunk(body.slice(first)) : ''}0\r\n\r\n`) };
  }

  it('are counted as their chunks arrive: while 600 KB of one are held, a second 700 KB one gets 503 OVERLOADED; once the first is done, it is served', async () => {
    const n = 175_000; // "0.5," x 175000: ~700 KB of JSON, under MAX_REQUEST_BYTES (2 MiB); two pass MAX_PENDING_REQUEST_BYTES (1 MiB)
    const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [n], data: new Array(n).fill(0.5) } } });
    const a = chunked(body, 600_000);
    await new Promise((r) => setTimeout(r, 300));
    const b2 = chunked(body, body.length);
    b2.finish();
    const refused = await b2.done;
    expect(refused).toMatch(/^HTTP\/1\.1 503/);
    expect(refused).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(refused).toMatch(/"code":"OVERLOADED"/);
    a.finish();
    expect(await a.done).toMatch(/^HTTP\/1\.1 200/);
    // Its bytes were given back: the same chunked body alone is served.
    const alone = chunked(body, body.length);
    alone.finish();
    const answer = await alone.done;
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(answer).toMatch(/"dims":\[175000\]/);
  });
});

describe('MAX_PENDING_REQUEST_BYTES, clients that go away', () => {
  it('a client that disconnects mid-body frees its share', async () => {
    const body = JSON.stringify({ inputs: { x: { type: 'float32', dims: [100_000], data: new Array(100_000).fill(0.5) } } });
    for (let i = 0; i < 2; i++) {
      const before = arrived;
      const sock = connect(port, '127.0.0.1');
      sock.write(`POST /functions/identity/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 1000)}`);
      await until('the slow request to reach the app (its bytes counted)', () => arrived > before, 10_000);
      sock.destroy();
    }
    // Their shares are given back once the server has seen the disconnects: two bodies at once are
    // served then (with either share still held, one of the two is refused), within 10 s.
    let statuses: number[] = [];
    await until(
      'two 400 KB bodies at once to be served after the disconnects',
      async () => {
        const answers = await Promise.all([0, 1].map(() => fetch(`http://127.0.0.1:${port}/functions/identity/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })));
        statuses = answers.map((a) => a.status);
        await Promise.all(answers.map((a) => a.arrayBuffer()));
        return statuses.every((s) => s === 200);
      },
      10_000,
    ).catch(() => undefined);
    expect(statuses).toEqual([200, 200]);
  });
});

describe('async inputs in Redis', () => {
  it('are gone once the invocation has run: only the answer is kept', async () => {
    const n = 250_000; // 1 MB of float32
    const r = await b.json('POST', '/functions/identity/invoke?async=true', { inputs: { x: { type: 'float32', dims: [n], data: new Array(n).fill(0.25) } } });
    expect(r.status).toBe(202);
    let status = '';
    for (let i = 0; i < 200 && status !== 'completed'; i++) {
      await new Promise((res) => setTimeout(res, 50));
      status = (await b.json('GET', `/invocations/${r.body.id}`)).body.status;
    }
    expect(status).toBe('completed');
    // Outputs equal inputs here (1 MB): what Redis holds for this namespace is the answer, not the inputs too.
    const redis = createRedis(inject('redisUrl'));
    try {
      let cursor = '0';
      const big: Record<string, number> = {};
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${b.namespace}:*`, 'COUNT', 1000);
        for (const k of found) {
          const m = Number(await redis.memory('USAGE', k)) || 0;
          if (m > 100_000) big[k.slice(b.namespace.length + 1).replace(r.body.id, '<id>')] = m;
        }
        cursor = next;
      } while (cursor !== '0');
      // The answer (1 MB of float32, as base64), and nothing else that size: the job with its inputs is gone.
      expect(big).toEqual({ 'result:<id>': expect.any(Number) });
      expect(big['result:<id>']).toBeLessThan(n * 4 * 1.6);
    } finally {
      redis.disconnect();
    }
  });
});
