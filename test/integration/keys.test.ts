import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer } from '../../functions/grpc/server';
import { createApp } from '../../functions/http/app';
import { loadConfig } from '../../config';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

const ADMIN = 'admin-key-0123456789';
const INVOKE = 'invoke-key-abcdefghij';
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const basic = (k: string) => ({ authorization: `Basic ${Buffer.from(`ops:${k}`).toString('base64')}` });
const x = { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } };

describe('keys: API_KEY for changes, INVOKE_API_KEY for reads and invocations', () => {
  let b: TestBrulee;
  beforeAll(async () => {
    b = await startBrulee({ API_KEY: ADMIN, INVOKE_API_KEY: INVOKE });
  });
  afterAll(async () => b?.destroy());

  const status = async (method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
    (await b.req(path, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body === undefined ? {} : { body }) })).status;

  it('closes every read and invocation route without a key, and keeps probes, metrics and static pages open', async () => {
    expect((await b.put('m', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2 }), '', bearer(ADMIN))).status).toBe(201);
    const infer = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    const closed: Array<[string, string, string?]> = [
      ['GET', '/functions'], ['GET', '/functions/m'], ['GET', '/functions/m/example'], ['GET', '/stats'],
      ['POST', '/functions/m/invoke', JSON.stringify({ inputs: x })], ['GET', '/invocations/00000000-0000-0000-0000-000000000000'],
      ['GET', '/v2'], ['GET', '/v2/models/m'], ['GET', '/v2/models/m/ready'], ['POST', '/v2/models/m/infer', infer], ['POST', '/v2/repository/index', '{}'],
    ];
    for (const [m, p, body] of closed) {
      expect([m, p, await status(m, p, {}, body)]).toEqual([m, p, 401]);
      expect([m, p, await status(m, p, bearer('wrong-key-0123456789'), body)]).toEqual([m, p, 403]);
      expect([m, p, await status(m, p, bearer(INVOKE), body)]).not.toEqual([m, p, 401]);
      expect([m, p, await status(m, p, bearer(INVOKE), body)]).not.toEqual([m, p, 403]);
    }
    // The admin key reads and invokes too.
    const r = await b.json('POST', '/functions/m/invoke', { inputs: x }, bearer(ADMIN));
    expect(r.status).toBe(200);
    expect(r.body.outputs.y.dims).toEqual([1, 2]);
    const err = await b.json('GET', '/stats');
    expect(err.body.error).toEqual({ code: 'UNAUTHORIZED', message: 'this call reads or invokes and needs the header Authorization: Bearer <INVOKE_API_KEY or API_KEY>' });
    // A 401 names the scheme that authenticates (RFC 9110), on v1, v2 and change routes alike; a 403 (a wrong key) has no challenge.
    for (const [m, p] of [['GET', '/stats'], ['POST', '/v2/models/m/infer'], ['PUT', '/functions/m'], ['POST', '/v2/repository/models/m/load']]) {
      const res = await b.req(p!, { method: m! });
      expect([m, p, res.status, res.headers.get('www-authenticate')]).toEqual([m, p, 401, 'Bearer realm="brulee"']);
    }
    expect((await b.req('/stats', { headers: bearer('wrong-key-0123456789') })).headers.get('www-authenticate')).toBeNull();

    for (const p of ['/healthz', '/v2/health/live', '/v2/health/ready', '/metrics', '/', '/ui/app.js', '/openapi.json', '/docs']) expect([p, await status('GET', p)]).toEqual([p, 200]);
  });

  it('gRPC: the same calls are closed as on REST (ModelReady, ServerMetadata too), the probes open', async () => {
    const server = await startGrpcServer({ dataPlane: b.dataPlane, authorize: b.authorize, log: b.log, host: '127.0.0.1', port: 0, maxRequestBytes: 1 << 20 });
    const def = protoLoader.loadSync(fileURLToPath(new URL('../../functions/grpc/inference.proto', import.meta.url)), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const call = (method: string, req: object, key?: string) =>
      new Promise<number>((resolve) => {
        const md = new grpc.Metadata();
        if (key) md.set('authorization', `Bearer ${key}`);
        client[method](req, md, (err: grpc.ServiceError | null) => resolve(err ? err.code : grpc.status.OK));
      });
    try {
      expect((await b.put('g', mlpModel({ inputSize: 4, hidden: [8], outputSize: 2 }), '', bearer(ADMIN))).status).toBeLessThan(300);
      for (const [method, req] of [['ModelReady', { name: 'g' }], ['ModelReady', { name: 'no-such-function' }], ['ServerMetadata', {}], ['ModelMetadata', { name: 'g' }], ['RepositoryIndex', {}]] as const) {
        expect([method, req, await call(method, req)]).toEqual([method, req, grpc.status.UNAUTHENTICATED]);
        expect([method, req, await call(method, req, 'wrong-key-0123456789')]).toEqual([method, req, grpc.status.PERMISSION_DENIED]);
      }
      expect(await call('ModelReady', { name: 'g' }, INVOKE)).toBe(grpc.status.OK);
      expect(await call('ModelReady', { name: 'no-such-function' }, INVOKE)).toBe(grpc.status.NOT_FOUND);
      expect(await call('ServerMetadata', {}, INVOKE)).toBe(grpc.status.OK);
      for (const method of ['ServerLive', 'ServerReady']) expect([method, await call(method, {})]).toEqual([method, grpc.status.OK]);
    } finally {
      client.close();
      await server.close(1000);
    }
  });

  it('changes need API_KEY: the invoke key is refused', async () => {
    const model = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 9 });
    expect((await b.put('n', model, '', bearer(INVOKE))).status).toBe(403);
    expect((await b.put('n', model)).status).toBe(401);
    // A change without a key is told the key it needs (API_KEY), not the invoke key it would refuse.
    const needsAdmin = { code: 'UNAUTHORIZED', message: 'this call changes state and needs the header Authorization: Bearer <API_KEY>' };
    expect((await b.put('n', model)).body.error).toEqual(needsAdmin);
    expect((await b.json('DELETE', '/functions/m')).body.error).toEqual(needsAdmin);
    for (const op of ['load', 'unload']) expect((await b.json('POST', `/v2/repository/models/m/${op}`)).body).toEqual({ error: needsAdmin.message });
    expect(await status('DELETE', '/functions/m', bearer(INVOKE))).toBe(403);
    expect(await status('POST', '/v2/repository/models/m/unload', bearer(INVOKE))).toBe(403);
    expect(await status('POST', '/v2/repository/models/m/unload', bearer(ADMIN))).toBe(200);
    expect(await status('DELETE', '/functions/m', bearer(ADMIN))).toBe(200);
  });

  it('checks the admin key once per change, and refuses a missing, wrong or invoke key on each change route', async () => {
    // The same app over the same data plane, its key check counted.
    const calls: string[] = [];
    const app = createApp({
      dataPlane: b.dataPlane, metrics: b.metrics, log: b.log, maxModelBytes: 1 << 26, maxRequestBytes: 1 << 20,
      authorize: (scope, authorization) => {
        calls.push(scope);
        b.authorize(scope, authorization);
      },
    });
    const model = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 11 });
    const changes: Array<[string, string, Uint8Array?]> = [
      ['PUT', '/functions/once', model], ['POST', '/v2/repository/models/once/load'], ['POST', '/v2/repository/models/once/unload'], ['DELETE', '/functions/once'],
    ];
    for (const [method, path, body] of changes) {
      const send = (headers: Record<string, string>) => app.request(path, { method, headers, ...(body ? { body } : {}) });
      for (const [key, want] of [[undefined, 401], ['wrong-key-0123456789', 403], [INVOKE, 403]] as const) {
        calls.length = 0;
        expect([method, path, key, (await send(key ? bearer(key) : {})).status]).toEqual([method, path, key, want]);
        expect(calls).toEqual(['admin']);
      }
      calls.length = 0;
      expect([method, path, (await send(bearer(ADMIN))).status]).toEqual([method, path, method === 'PUT' ? 201 : 200]);
      // The change's own check, then the read check every closed route has (which the admin key passes).
      expect([method, path, calls]).toEqual([method, path, ['admin', 'invoke']]);
    }
  });

  it('bull-board asks browsers for the key (HTTP Basic) and opens with it', async () => {
    const res = await b.req('/queues');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="brulee", charset="UTF-8"');
    expect(await status('GET', '/queues', basic('wrong'))).toBe(401);
    const ok = await b.req('/queues', { headers: basic(INVOKE) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('brulee queues');
  });
});

describe('METRICS_AUTH=key and INVOKE_API_KEY alone', () => {
  let b: TestBrulee;
  beforeAll(async () => {
    b = await startBrulee({ INVOKE_API_KEY: INVOKE, METRICS_AUTH: 'key' });
  });
  afterAll(async () => b?.destroy());

  it('puts /metrics behind the key, and changes behind the only key there is', async () => {
    expect((await b.req('/metrics')).status).toBe(401);
    expect((await b.req('/metrics', { headers: bearer(INVOKE) })).status).toBe(200);
    expect((await b.req('/healthz')).status).toBe(200);
    const model = mlpModel({ inputSize: 4, hidden: [4], outputSize: 2 });
    expect((await b.put('m', model)).status).toBe(401);
    expect((await b.put('m', model, '', bearer(INVOKE))).status).toBe(201);
  });
});

describe('where the server listens', () => {
  it('is 127.0.0.1 when no key is set, 0.0.0.0 with a key, and HOST wins', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
    expect(loadConfig({}).hostDefaulted).toBe(true);
    expect(loadConfig({ API_KEY: 'k' }).host).toBe('0.0.0.0');
    expect(loadConfig({ INVOKE_API_KEY: 'k' }).host).toBe('0.0.0.0');
    expect(loadConfig({ HOST: '0.0.0.0' }).host).toBe('0.0.0.0');
    expect(loadConfig({ HOST: '0.0.0.0' }).hostDefaulted).toBe(false);
  });
});
