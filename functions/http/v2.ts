import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { BruleeError, preview } from '../../errors';
import type { Tensor } from '../../queue/wire';
import type { DataPlane } from '../dataplane';
import type { FunctionMeta } from '../registry';
import { elementTypeOf, V2_DATATYPE, v2TensorMetadata } from '../v2-tensors';
import { decodeJsonTensor, jsonValues, stringifyWithBigInts } from './json-tensors';
import { check, jsonBody, limit, parseJson } from './parse';

/**
 * The Open Inference Protocol (KServe v2 REST) over the same functions, so Triton and KServe
 * clients work unchanged. Errors on these routes take the protocol's form `{"error": "..."}`
 * (errors.ts does that for every `/v2` path).
 */

const InferRequest = z.object({
  id: z.string().optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
  inputs: z
    .array(
      z.object({
        name: z.string(),
        shape: z.array(z.number().int().min(0)),
        datatype: z.string(),
        parameters: z.record(z.string(), z.unknown()).optional(),
        data: z.unknown(),
      }),
    )
    .min(1),
  outputs: z.array(z.object({ name: z.string(), parameters: z.record(z.string(), z.unknown()).optional() })).optional(),
});

export interface V2Options {
  dataPlane: DataPlane;
  auth: MiddlewareHandler;
  maxRequestBytes: number;
}

export function v2Routes({ dataPlane, auth, maxRequestBytes }: V2Options): Hono {
  const app = new Hono();

  /** The function named in the path, at the version asked for. */
  const model = (c: Context): Promise<FunctionMeta> => dataPlane.get(c.req.param('name')!, c.req.param('version'));

  app.get('/v2', (c) => c.json({ name: 'brulee', version: '0.1.0', extensions: ['model_repository'] }));
  app.get('/v2/health/live', (c) => c.json({ live: true }));
  app.get('/v2/health/ready', async (c) => {
    const ready = await dataPlane.ready();
    return c.json({ ready }, ready ? 200 : 503);
  });

  for (const base of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    app.get(base, async (c) => {
      const fn = await model(c);
      return c.json({
        name: fn.name,
        versions: fn.versions.map((v) => String(v.version)),
        platform: 'onnxruntime_onnx',
        inputs: fn.signature.inputs.map(v2TensorMetadata),
        outputs: fn.signature.outputs.map(v2TensorMetadata),
      });
    });
    // Registered means ready while some node is alive: a model loads on demand (a cold start).
    app.get(`${base}/ready`, async (c) => {
      const fn = await model(c);
      const ready = await dataPlane.ready();
      return c.json({ name: fn.name, ready }, ready ? 200 : 503);
    });
    app.post(`${base}/infer`, limit(maxRequestBytes, 'request body', 'MAX_REQUEST_BYTES'), async (c) => {
      const fn = await model(c);
      const req = check(InferRequest, await jsonBody(c), 'inference request');
      const inputs: Record<string, Tensor> = {};
      for (const i of req.inputs) {
        const type = elementTypeOf(i.name, i.datatype);
        if (i.name in inputs) throw new BruleeError('INVALID_INPUT', `input ${preview(i.name)} is given twice`);
        inputs[i.name] = decodeJsonTensor(i.name, { type, dims: i.shape, data: i.data });
      }
      const outputs = req.outputs?.map((o) => o.name);
      const r = await dataPlane.invoke(fn.name, inputs, { outputs, version: c.req.param('version') });
      const order = outputs && outputs.length > 0 ? outputs : fn.signature.outputs.map((o) => o.name);
      const body = {
        model_name: fn.name,
        model_version: String(r.fn.version),
        ...(req.id !== undefined ? { id: req.id } : {}),
        outputs: order
          .filter((n) => r.outputs[n])
          .map((n) => {
            const t = r.outputs[n]!;
            return { name: n, datatype: V2_DATATYPE[t.type] ?? t.type, shape: t.dims, data: jsonValues(t, { bigint: 'raw' }) };
          }),
      };
      // INT64 beyond 2^53 goes out as JSON numbers, as the protocol says, not as strings.
      return c.body(stringifyWithBigInts(body), 200, { 'content-type': 'application/json' });
    });
  }

  // Model repository extension: index, load (prewarm), unload (evict).
  app.post('/v2/repository/index', async (c) => {
    const text = await c.req.text();
    const body = text.trim() ? check(z.object({ ready: z.boolean().optional() }), parseJson(text), 'index request') : {};
    return c.json(await dataPlane.repositoryIndex({ ready: body.ready ?? false }));
  });
  app.post('/v2/repository/models/:name/load', auth, async (c) => {
    await dataPlane.load(c.req.param('name'));
    return c.json({});
  });
  app.post('/v2/repository/models/:name/unload', auth, async (c) => {
    await dataPlane.unload(c.req.param('name'));
    return c.json({});
  });
  return app;
}
