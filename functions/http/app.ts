import { Hono, type Context } from 'hono';
import { TrieRouter } from 'hono/router/trie-router';
import type { Logger } from 'pino';
import { BruleeError } from '../../errors';
import type { InvokeResult, Tensor } from '../../queue/wire';
import type { Metrics } from '../../runtime/metrics';
import type { DataPlane, Invocation } from '../dataplane';
import type { FunctionStats } from '../../runtime/stats';
import { batchingOf, type FunctionMeta } from '../registry';
import { decodeJsonInputs, type JsonTensor } from './json-tensors';
import { answerBody, JsonAnswer, JsonData, streamedAnswer, whenAnswerSent } from './answer';
import type { Authorize } from '../auth';
import { requireKey } from './auth';
import { admitRequestBytes, closeWhenBodyUnread, refuseWhenDraining } from './connection';
import { onError } from './errors';
import { bodyBytes, check, InvokeBody, InvokeQuery, jsonText, limit, parseJson, RegisterQuery } from './parse';
import { duplicateKeyIn } from './exact-json';
import { inputGivenTwice } from '../signature';
import { v2Routes } from './v2';
import { dashboardApp } from '../../dashboard';
import { docsApp } from '../../dashboard/docs';
import { QUEUES_PATH, queuesApp } from '../../dashboard/queues';
import { openApiDocument } from './openapi';

export interface AppOptions {
  dataPlane: DataPlane;
  metrics: Metrics;
  log: Logger;
  /** The key check every front end shares (functions/auth.ts). */
  authorize: Authorize;
  maxModelBytes: number;
  maxRequestBytes: number;
  /** Bytes of request bodies read and held at once (MAX_PENDING_REQUEST_BYTES). @default 4 × maxRequestBytes */
  maxPendingRequestBytes?: number;
  /**
   * Counts the requests being handled (the app keeps it), so a shutdown can wait for them; while
   * `draining`, new requests are refused with 503 SHUTTING_DOWN.
   */
  requests?: { inFlight: number; draining?: boolean };
  /** `/metrics` needs no key (METRICS_AUTH=open, the default). */
  metricsOpen?: boolean;
}

/** Routes that never need a key: probes, and pages that hold no data (the dashboard's files, the API docs). */
const OPEN = new Set(['/', '/healthz', '/v2/health/live', '/v2/health/ready', '/openapi.json', '/docs', '/docs/']);
const isOpen = (path: string, metricsOpen: boolean) => OPEN.has(path) || path.startsWith('/ui/') || path.startsWith('/docs/') || (metricsOpen && path === '/metrics');

/**
 * The methods an app has a route for at a path, for a 405's Allow (HEAD wherever GET is: Hono
 * answers it from the GET route). Read from the app's routes on first use, once all are added;
 * middleware (method ALL) is no route.
 */
function methodsAt(app: Hono): (path: string) => string[] {
  let router: TrieRouter<string> | undefined;
  let methods: string[] = [];
  return (path) => {
    if (!router) {
      router = new TrieRouter<string>();
      const seen = new Set<string>();
      for (const r of app.routes) {
        if (r.method === 'ALL') continue;
        router.add(r.method, r.path, r.method);
        seen.add(r.method);
      }
      methods = [...seen].sort();
    }
    const allow = methods.filter((m) => router!.match(m, path)[0].length > 0);
    if (allow.includes('GET')) allow.splice(allow.indexOf('GET') + 1, 0, 'HEAD');
    return allow;
  };
}

/** A function as `GET /functions`, `PUT /functions/{name}` and `GET /functions/{name}` show it (the CLI reads this type). */
export type FunctionJson = ReturnType<typeof describe>;
/** `GET /functions/{name}`: the function, its counts and where it is resident. */
export type FunctionDetailJson = FunctionJson & { stats: FunctionStats; residentOn: string[] };
/** The answer of a sync `POST /functions/{name}/invoke`. */
export type InvokeJson = { function: string; version: number; outputs: Record<string, JsonTensor>; coldStart: boolean; node: string; timings: Invocation['timings'] };

function describe(fn: FunctionMeta) {
  return {
    name: fn.name,
    version: fn.version,
    sha256: fn.sha256,
    sizeBytes: fn.sizeBytes,
    signature: fn.signature,
    profile: fn.profile,
    options: fn.options,
    batching: batchingOf(fn),
    versions: fn.versions,
    createdAt: fn.createdAt,
    updatedAt: fn.updatedAt,
  };
}

/** Outputs, cold start, node and timings, as the invoke routes answer them (the data written late: answer.ts). */
function resultJson<T extends InvokeResult['timings']>(r: { outputs: Record<string, Tensor>; coldStart: boolean; node: string; timings: T }) {
  return { outputs: outputsJson(r.outputs), coldStart: r.coldStart, node: r.node, timings: r.timings };
}

function outputsJson(outputs: Record<string, Tensor>): Record<string, { type: Tensor['type']; dims: number[]; data: JsonData }> {
  const out: Record<string, { type: Tensor['type']; dims: number[]; data: JsonData }> = {};
  for (const k of Object.keys(outputs)) {
    const t = outputs[k]!;
    out[k] = { type: t.type, dims: t.dims, data: new JsonData(t) };
  }
  return out;
}

/** An answer with tensors, streamed when large (answer.ts). */
function answerJson(c: Context, value: unknown): Response {
  const body = answerBody(new JsonAnswer(value));
  return c.body(body instanceof ReadableStream ? streamedAnswer(c, body) : (body as Uint8Array<ArrayBuffer>), 200, { 'content-type': 'application/json' });
}

/**
 * The HTTP front door (DESIGN.md, HTTP contract v1). Handlers decode, call one data plane
 * method, and encode; errors go to the one `onError`.
 */
export function createApp(o: AppOptions): Hono {
  const { dataPlane } = o;
  const app = new Hono();
  const auth = requireKey(o.authorize, 'admin');
  app.onError(onError(o.log));
  app.use(closeWhenBodyUnread());
  const requests = o.requests;
  if (requests) {
    app.use(refuseWhenDraining(requests));
    app.use(async (c, next) => {
      requests.inFlight++;
      let sending = false;
      try {
        await next();
        // A streamed answer is still being written when its handler returns: it stays in flight
        // (a drain waits for it) until its last byte is taken, or the client goes away.
        const body = whenAnswerSent(c, () => requests.inFlight--);
        if (body) {
          c.res = new Response(body, c.res);
          sending = true;
        }
      } finally {
        if (!sending) requests.inFlight--;
      }
    });
  }
  app.use(admitRequestBytes(o.maxPendingRequestBytes ?? 4 * o.maxRequestBytes, Math.max(o.maxRequestBytes, o.maxModelBytes)));
  // Changes check their own key here, once, before the read check below, so a change sent without
  // a key is told it needs API_KEY, not the invoke key (which it would then refuse with a 403).
  app.on(['PUT', 'DELETE'], '/functions/:name', auth);
  app.on('POST', ['/v2/repository/models/:name/load', '/v2/repository/models/:name/unload'], auth);
  // Reads and invocations need INVOKE_API_KEY when it is set (functions/auth.ts); changes check
  // their own scope on top. Browsers reach bull-board with HTTP Basic (the key as password).
  app.use(async (c, next) => {
    if (isOpen(c.req.path, o.metricsOpen ?? true)) return next();
    try {
      o.authorize('invoke', c.req.header('authorization'));
    } catch (e) {
      if (c.req.path === QUEUES_PATH || c.req.path.startsWith(`${QUEUES_PATH}/`)) {
        return c.json({ error: (e as BruleeError).toJSON() }, 401, { 'WWW-Authenticate': 'Basic realm="brulee", charset="UTF-8"' });
      }
      throw e;
    }
    return next();
  });
  const allowedAt = methodsAt(app);
  app.notFound((c) => {
    const { method, path } = c.req;
    const allow = allowedAt(path);
    // A route that exists for other methods: 405 with Allow (a route of this method that found nothing is a 404).
    if (allow.length > 0 && !allow.includes(method)) {
      throw new BruleeError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}; it takes ${allow.join(', ')} (see README for the API)`, { allow });
    }
    throw new BruleeError('NOT_FOUND', `no route ${method} ${path}; see README for the API`);
  });

  app.put('/functions/:name', limit(o.maxModelBytes, 'model upload', 'MAX_MODEL_BYTES'), async (c) => {
    const name = c.req.param('name');
    const opts = check(RegisterQuery, c.req.query(), 'query parameters', 'INVALID_OPTION');
    const bytes = await bodyBytes(c, o.maxModelBytes, 'MAX_MODEL_BYTES');
    const r = await dataPlane.register(name, bytes, opts);
    return c.json({ ...describe(r.fn), created: r.created, newVersion: r.newVersion }, r.created ? 201 : 200);
  });

  app.get('/functions', async (c) => c.json({ functions: (await dataPlane.list()).map(describe) }));

  app.get('/functions/:name', async (c) => {
    const { fn, stats, residentOn } = await dataPlane.describe(c.req.param('name'));
    return c.json({ ...describe(fn), stats, residentOn } satisfies FunctionDetailJson);
  });

  app.delete('/functions/:name', async (c) => {
    const { fn, unloaded } = await dataPlane.delete(c.req.param('name'));
    return c.json({ deleted: fn.name, versions: fn.versions.length, unloaded });
  });

  app.post('/functions/:name/invoke', limit(o.maxRequestBytes, 'request body', 'MAX_REQUEST_BYTES'), async (c) => {
    const name = c.req.param('name');
    const query = check(InvokeQuery, c.req.query(), 'query parameters', 'INVALID_OPTION');
    const text = await jsonText(c, o.maxRequestBytes);
    const body = check(InvokeBody, parseJson(text), 'request body');
    // Two equal keys in "inputs" are one to JSON.parse (the last): a name given twice is refused, as v2 and gRPC do.
    const twice = duplicateKeyIn(text, 'inputs', Object.keys(body.inputs));
    if (twice !== undefined) throw inputGivenTwice(twice);
    const fn = await dataPlane.get(name);
    const inputs = decodeJsonInputs(body.inputs, fn.signature.inputs);
    const opts = { outputs: body.outputs };
    if (query.async) {
      const { id } = await dataPlane.submit(name, inputs, opts);
      return c.json({ id, status: 'waiting', href: `/invocations/${id}` }, 202);
    }
    const r = await dataPlane.invoke(name, inputs, opts);
    // Written out, not spread from resultJson (a hot path: see queue/admission.ts ticketOf).
    return answerJson(c, { function: r.fn.name, version: r.fn.version, outputs: outputsJson(r.outputs), coldStart: r.coldStart, node: r.node, timings: r.timings });
  });

  app.get('/invocations/:id', async (c) => {
    const s = await dataPlane.status(c.req.param('id'));
    if (s.status === 'completed') return answerJson(c, { id: s.id, status: s.status, function: s.function, version: s.version, ...resultJson(s) });
    if (s.status === 'failed') return c.json({ id: s.id, status: s.status, error: s.error.toJSON() });
    return c.json({ id: s.id, status: s.status });
  });

  app.get('/stats', async (c) => c.json(await dataPlane.stats()));

  app.get('/metrics', async (c) => {
    const text = await o.metrics.text();
    return c.body(text, 200, { 'Content-Type': o.metrics.contentType });
  });

  // Readiness, with the reason: a call can be served now (Redis and a live node), as
  // /v2/health/ready judges it (which answers the protocol's 400); liveness is /v2/health/live. 503
  // with no live node, so a load balancer that probes here sends calls to a gateway that can serve them.
  app.get('/healthz', async (c) => {
    const { redis, nodes } = await dataPlane.health();
    const status = !redis ? 'redis unreachable' : nodes === 0 ? 'no live node' : 'ok';
    return c.json({ status, redis: redis ? 'ok' : 'unreachable', nodes }, status === 'ok' ? 200 : 503);
  });

  app.get('/functions/:name/example', async (c) => {
    const fn = await dataPlane.get(c.req.param('name'));
    return c.json({ function: fn.name, version: fn.version, inputs: await dataPlane.example(fn.name) });
  });

  app.route('/', v2Routes({ dataPlane, maxRequestBytes: o.maxRequestBytes }));
  app.get('/openapi.json', (c) => c.json(openApiDocument()));
  app.route('/', dashboardApp());
  app.route('/', docsApp());
  // bull-board links to its root with a trailing slash ("/queues/", "/queues/?status=active"): a
  // reload there, or such a link opened in a new tab, must reach the page, not a 404.
  app.get(`${QUEUES_PATH}/`, (c) => c.redirect(`${QUEUES_PATH}${new URL(c.req.url).search}`));
  app.route(QUEUES_PATH, queuesApp(() => dataPlane.queues()));
  return app;
}
