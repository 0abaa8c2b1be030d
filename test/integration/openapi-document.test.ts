import Ajv2020 from 'ajv/dist/2020';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }>; requestBody?: unknown }>>;
}

/** Hono's `/functions/:name` as OpenAPI writes it; the dashboard's files are one templated path. */
function openApiPath(path: string): string {
  if (path.startsWith('/ui/')) return '/ui/{file}';
  if (path === '/docs/' || path.startsWith('/docs/')) return '/docs';
  return path.replace(/:([A-Za-z]+)/g, '{$1}');
}

describe('GET /openapi.json (the OpenAPI document of every route)', () => {
  let b: TestBrulee;
  let doc: Doc;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const checked = new Set<string>();

  /** Sends a request and checks the answer against the document: its status is listed (or `default`), its JSON body fits the schema. */
  async function call(method: string, docPath: string, url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
    const res = await b.req(url, { method, ...init });
    const op = doc.paths[docPath]?.[method.toLowerCase()];
    expect(op, `${method} ${docPath} is in the document`).toBeDefined();
    const r = op!.responses[String(res.status)] ?? op!.responses.default;
    expect(r, `${method} ${docPath} ${res.status} is described`).toBeDefined();
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!;
    const text = await res.text();
    const body = type === 'application/json' ? JSON.parse(text) : text;
    if (type === 'application/json') {
      const schema = r!.content?.['application/json']?.schema;
      expect(schema, `${method} ${docPath} ${res.status} has a JSON schema`).toBeDefined();
      const validate = ajv.compile(schema!);
      expect(validate(body) ? [] : validate.errors, `${method} ${docPath} ${res.status}: ${text.slice(0, 200)}`).toEqual([]);
    } else {
      expect(Object.keys(r!.content ?? {})).toContain(type);
    }
    checked.add(`${method} ${docPath}`);
    return { status: res.status, body };
  }

  beforeAll(async () => {
    b = await startBrulee();
    doc = (await b.json('GET', '/openapi.json')).body;
  });
  afterAll(async () => b?.destroy());

  it('is OpenAPI 3.1 and lists every route the app serves', () => {
    expect(doc.openapi).toBe('3.1.0');
    const served = new Set<string>();
    for (const r of b.app.routes) {
      if (r.method === 'ALL' || r.path.includes('*')) continue; // middleware
      // bull-board's own API and assets under /queues/ are part of the one /queues page.
      if (r.path.startsWith('/queues/')) continue;
      served.add(`${r.method} ${openApiPath(r.path)}`);
    }
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
    expect([...served].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((r) => !served.has(r))).toEqual([]);
    expect(served.size).toBeGreaterThan(20);
  });

  it('answers of every route validate against the document', async () => {
    const model = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 3 });
    const put = (q = '') => call('PUT', '/functions/{name}', `/functions/m${q}`, { headers: { 'content-type': 'application/octet-stream' }, body: model });
    expect((await put('?pinned=true')).status).toBe(201);
    expect((await put()).status).toBe(200);
    expect((await call('PUT', '/functions/{name}', '/functions/m?bogus=1', { body: model })).status).toBe(400);
    expect((await call('GET', '/functions', '/functions')).body.functions).toHaveLength(1);
    expect((await call('GET', '/functions/{name}', '/functions/m')).body.name).toBe('m');
    expect((await call('GET', '/functions/{name}', '/functions/none')).status).toBe(404);
    const ex = await call('GET', '/functions/{name}/example', '/functions/m/example');
    expect(ex.body.inputs.x.dims).toEqual([1, 4]);
    const json = { 'content-type': 'application/json' };
    const inv = await call('POST', '/functions/{name}/invoke', '/functions/m/invoke', { headers: json, body: JSON.stringify({ inputs: ex.body.inputs }) });
    expect(inv.body.outputs.y.dims).toEqual([1, 2]);
    expect((await call('POST', '/functions/{name}/invoke', '/functions/m/invoke', { headers: json, body: '{"inputs": {"x": 1}}' })).status).toBe(422);
    const sub = await call('POST', '/functions/{name}/invoke', '/functions/m/invoke?async=true', { headers: json, body: JSON.stringify({ inputs: ex.body.inputs }) });
    expect(sub.status).toBe(202);
    let st: { status: number; body: any } | undefined;
    for (let i = 0; i < 100 && st?.body.status !== 'completed'; i++) {
      st = await call('GET', '/invocations/{id}', `/invocations/${sub.body.id}`);
      if (st.body.status !== 'completed') await new Promise((r) => setTimeout(r, 50));
    }
    expect(st!.body).toMatchObject({ status: 'completed', function: 'm', version: 1 });
    expect(st!.body.outputs.y.data).toEqual(inv.body.outputs.y.data);
    expect((await call('GET', '/invocations/{id}', '/invocations/nope')).status).toBe(404);
    expect((await call('GET', '/stats', '/stats')).body.functions.m.invocations).toBe(2);
    await call('GET', '/metrics', '/metrics');
    await call('GET', '/healthz', '/healthz');
    await call('GET', '/openapi.json', '/openapi.json');
    await call('GET', '/', '/');
    await call('GET', '/ui/{file}', '/ui/app.js');
    await call('GET', '/docs', '/docs');
    await call('GET', '/queues', '/queues');

    const v2 = { 'content-type': 'application/json' };
    const infer = JSON.stringify({ id: '7', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    await call('GET', '/v2', '/v2');
    await call('GET', '/v2/health/live', '/v2/health/live');
    await call('GET', '/v2/health/ready', '/v2/health/ready');
    await call('GET', '/v2/models/{name}', '/v2/models/m');
    expect((await call('GET', '/v2/models/{name}', '/v2/models/none')).status).toBe(404);
    await call('GET', '/v2/models/{name}/versions/{version}', '/v2/models/m/versions/1');
    await call('GET', '/v2/models/{name}/ready', '/v2/models/m/ready');
    await call('GET', '/v2/models/stats', '/v2/models/stats');
    await call('GET', '/v2/models/{name}/stats', '/v2/models/m/stats');
    await call('GET', '/v2/models/{name}/versions/{version}/stats', '/v2/models/m/versions/1/stats');
    await call('GET', '/v2/models/{name}/config', '/v2/models/m/config');
    await call('GET', '/v2/models/{name}/versions/{version}/config', '/v2/models/m/versions/1/config');
    await call('GET', '/v2/models/{name}/versions/{version}/ready', '/v2/models/m/versions/1/ready');
    expect((await call('POST', '/v2/models/{name}/infer', '/v2/models/m/infer', { headers: v2, body: infer })).body.id).toBe('7');
    await call('POST', '/v2/models/{name}/versions/{version}/infer', '/v2/models/m/versions/1/infer', { headers: v2, body: infer });
    // The binary tensor data extension, as tritonclient sends it: a JSON header, then the bytes; outputs back in binary.
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }], parameters: { binary_data_output: true } }));
    const binary = Buffer.concat([header, Buffer.from(new Float32Array([1, 2, 3, 4]).buffer)]);
    const op = doc.paths['/v2/models/{name}/infer']!.post as unknown as { parameters: Array<{ name: string; in: string }>; requestBody: { content: Record<string, unknown> }; responses: Record<string, { headers?: Record<string, unknown> }> };
    expect(Object.keys(op.requestBody.content)).toEqual(['application/json', 'application/octet-stream']);
    expect(op.parameters).toContainEqual(expect.objectContaining({ name: 'Inference-Header-Content-Length', in: 'header' }));
    expect(Object.keys(op.responses['200']!.headers ?? {})).toContain('Inference-Header-Content-Length');
    const bin = await call('POST', '/v2/models/{name}/infer', '/v2/models/m/infer', { headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) }, body: binary });
    expect(bin.status).toBe(200);
    await call('POST', '/v2/repository/index', '/v2/repository/index', { headers: v2, body: '{}' });
    await call('POST', '/v2/repository/models/{name}/unload', '/v2/repository/models/m/unload');
    await call('POST', '/v2/repository/models/{name}/load', '/v2/repository/models/m/load');
    expect((await call('DELETE', '/functions/{name}', '/functions/m')).body.deleted).toBe('m');

    const all = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    expect(all.filter((r) => !checked.has(r))).toEqual([]);
  });
});
