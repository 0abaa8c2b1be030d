import { Hono } from 'hono';
import type { Logger } from 'pino';
import { BruleeError } from '../../errors';
import { fromWire, mapValues, type Tensor } from '../../queue/wire';
import type { Metrics } from '../../runtime/metrics';
import type { Gateway } from '../gateway';
import type { FunctionMeta } from '../registry';
import { toJsonTensor } from '../signature';
import { requireKey } from './auth';
import { onError } from './errors';
import { check, InvokeBody, jsonBody, limit, RegisterQuery } from './parse';
import { v2Routes } from './v2';

export interface AppOptions {
  gateway: Gateway;
  metrics: Metrics;
  log: Logger;
  apiKey?: string | undefined;
  maxModelBytes: number;
  maxRequestBytes: number;
  /** Is Redis answering? For /healthz. */
  redisOk: () => Promise<boolean>;
  /** Counts the requests being handled (the app keeps it), so a shutdown can wait for them. */
  requests?: { inFlight: number };
}

function describe(fn: FunctionMeta) {
  return {
    name: fn.name,
    version: fn.version,
    sha256: fn.sha256,
    sizeBytes: fn.sizeBytes,
    signature: fn.signature,
    profile: fn.profile,
    options: fn.options,
    versions: fn.versions,
    createdAt: fn.createdAt,
    updatedAt: fn.updatedAt,
  };
}

/** Outputs, cold start, node and timings, as the invoke routes answer them. */
function resultJson(r: { outputs: Record<string, Tensor>; coldStart: boolean; node: string; timings: object }) {
  return {
    outputs: Object.fromEntries(Object.entries(r.outputs).map(([k, t]) => [k, toJsonTensor(t)])),
    coldStart: r.coldStart,
    node: r.node,
    timings: r.timings,
  };
}

/**
 * The HTTP front door (DESIGN.md, HTTP contract v1). Handlers parse, call one Gateway method,
 * and format; errors go to the one `onError`.
 */
export function createApp(o: AppOptions): Hono {
  const { gateway } = o;
  const app = new Hono();
  const auth = requireKey(o.apiKey);
  app.onError(onError(o.log));
  const requests = o.requests;
  if (requests) {
    app.use(async (_c, next) => {
      requests.inFlight++;
      try {
        await next();
      } finally {
        requests.inFlight--;
      }
    });
  }
  app.notFound((c) => {
    throw new BruleeError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}; see README for the API`);
  });

  app.put('/functions/:name', auth, limit(o.maxModelBytes, 'model upload', 'MAX_MODEL_BYTES'), async (c) => {
    const name = c.req.param('name');
    const opts = check(RegisterQuery, c.req.query(), 'query parameters', 'INVALID_OPTION');
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const r = await gateway.register(name, bytes, opts);
    return c.json({ ...describe(r.fn), created: r.created, newVersion: r.newVersion }, r.created ? 201 : 200);
  });

  app.get('/functions', async (c) => c.json({ functions: (await gateway.registry.list()).map(describe) }));

  app.get('/functions/:name', async (c) => {
    const fn = await gateway.registry.get(c.req.param('name'));
    const [stats, where] = await Promise.all([gateway.functionStats(fn.name), gateway.residency()]);
    return c.json({ ...describe(fn), stats, residentOn: where.get(fn.name) ?? [] });
  });

  app.delete('/functions/:name', auth, async (c) => {
    const { fn, unloaded } = await gateway.delete(c.req.param('name'));
    return c.json({ deleted: fn.name, versions: fn.versions.length, unloaded });
  });

  app.post('/functions/:name/invoke', limit(o.maxRequestBytes, 'request body', 'MAX_REQUEST_BYTES'), async (c) => {
    const name = c.req.param('name');
    const body = check(InvokeBody, await jsonBody(c), 'request body');
    const opts = body.outputs ? { outputs: body.outputs } : {};
    const asyncMode = c.req.query('async');
    if (asyncMode === 'true' || asyncMode === '1') {
      const id = await gateway.submit(name, body.inputs, opts);
      return c.json({ id, status: 'waiting', href: `/invocations/${id}` }, 202);
    }
    const r = await gateway.invoke(name, body.inputs, opts);
    return c.json({ function: r.fn.name, version: r.fn.version, ...resultJson(r) });
  });

  app.get('/invocations/:id', async (c) => {
    const s = await gateway.dispatcher.status(c.req.param('id'));
    if (s.status === 'completed') {
      return c.json({ id: s.id, status: s.status, ...resultJson({ ...s.result, outputs: mapValues(s.result.outputs, fromWire) }) });
    }
    if (s.status === 'failed') return c.json({ id: s.id, status: s.status, error: s.error.toJSON() });
    return c.json({ id: s.id, status: s.status });
  });

  app.get('/stats', async (c) => c.json(await gateway.stats()));

  app.get('/metrics', async (c) => {
    const text = await o.metrics.text();
    return c.body(text, 200, { 'Content-Type': o.metrics.contentType });
  });

  app.get('/healthz', async (c) => {
    const redis = await o.redisOk();
    const nodes = redis ? (await gateway.dispatcher.nodes(true)).length : 0;
    return c.json({ status: redis ? 'ok' : 'degraded', redis: redis ? 'ok' : 'unreachable', nodes }, redis ? 200 : 503);
  });

  app.route('/', v2Routes({ gateway, auth, maxRequestBytes: o.maxRequestBytes, redisOk: o.redisOk }));
  return app;
}
