import { z } from 'zod';
import { ErrorCode } from '../../errors';
import { InvokeBody, InvokeQuery, RegisterQuery } from './parse';
import { InferRequest } from './v2';

/**
 * GET /openapi.json: OpenAPI 3.1, built from the zod schemas that validate requests
 * (`parse.ts`, `v2.ts`) and the response schemas below. test/integration/openapi.test.ts checks
 * that every route the app serves is here and that real answers validate against it.
 */

// ---------------------------------------------------------------------------
// Response shapes. Loose objects: a field added later is not a break.

const ErrorBody = z.looseObject({
  error: z.looseObject({
    code: z.enum(Object.keys(ErrorCode) as [keyof typeof ErrorCode, ...Array<keyof typeof ErrorCode>]),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});
const V2Error = z.looseObject({ error: z.string() }).meta({ description: 'the Open Inference Protocol error form' });

const Ready = z.looseObject({ ready: z.boolean() });
const ModelReady = z.looseObject({ name: z.string(), ready: z.boolean() });
const Healthz = z.looseObject({ status: z.enum(['ok', 'redis unreachable', 'no live node']), redis: z.string(), nodes: z.number().int() });

const TensorSpec = z.looseObject({ name: z.string(), type: z.string(), dims: z.array(z.union([z.number().int(), z.string()])) });
const JsonTensor = z
  .looseObject({ type: z.string(), dims: z.array(z.number().int().min(0)), data: z.array(z.union([z.number(), z.string(), z.boolean()])) })
  .meta({ example: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } });
const Dist = z.looseObject({ p50: z.number().nullable(), p95: z.number().nullable(), samples: z.number().int() });

const Profile = z.looseObject({
  loadMs: z.number(),
  execMs: z.number().nullable(),
  execError: z.string().nullable(),
  profiledDims: z.record(z.string(), z.array(z.number().int())),
  residentBytes: z.number(),
  fileBytes: z.number(),
  memoryFactor: z.number().nullable().meta({ description: 'residentBytes / fileBytes; null for files under 1 MiB, where the ratio means nothing (see memoryNote)' }),
  memoryNote: z.string().optional(),
});

const FunctionBody = z.looseObject({
  name: z.string(),
  version: z.number().int(),
  sha256: z.string(),
  sizeBytes: z.number(),
  signature: z.looseObject({ inputs: z.array(TensorSpec), outputs: z.array(TensorSpec) }),
  profile: Profile,
  options: z.looseObject({ timeoutMs: z.number().optional(), pinned: z.boolean().optional(), memoryBytes: z.number().optional() }),
  versions: z.array(z.looseObject({ version: z.number().int(), sha256: z.string(), fileBytes: z.number(), createdAt: z.string() })),
  createdAt: z.string(),
  updatedAt: z.string(),
});

const FunctionStats = z.looseObject({
  invocations: z.number().int(),
  failures: z.number().int(),
  loads: z.number().int(),
  prewarms: z.number().int(),
  coldStarts: z.number().int(),
  warmHits: z.number().int(),
  evictions: z.number().int(),
  executions: z.number().int(),
  execMsTotal: z.number(),
  loadWaitMsTotal: z.number(),
  loadMs: Dist,
  execMs: Dist,
});

const Timings = z.looseObject({ queueMs: z.number(), loadMs: z.number(), execMs: z.number(), totalMs: z.number() });
const InvokeResult = z.looseObject({
  function: z.string(),
  version: z.number().int(),
  outputs: z.record(z.string(), JsonTensor),
  coldStart: z.boolean(),
  node: z.string(),
  timings: Timings,
});
const Depth = z.record(z.string(), z.number().int());

const Stats = z.looseObject({
  queue: Depth,
  queueByNode: z.record(z.string(), Depth),
  functions: z.record(z.string(), FunctionStats.extend({ version: z.number().int(), sizeBytes: z.number(), popularity: z.number(), resident: z.boolean(), residentOn: z.array(z.string()) })),
  nodes: z.array(
    z.looseObject({
      id: z.string(),
      policy: z.string(),
      budgetBytes: z.number(),
      usedBytes: z.number(),
      loads: z.number().int(),
      evictions: z.number().int(),
      residentModels: z.array(z.looseObject({ fn: z.string(), sizeBytes: z.number(), state: z.string(), pinned: z.boolean() })),
      parked: z
        .looseObject({
          parked: z.number().int(),
          taken: z.number().int(),
          held: z.number().int(),
          bytes: z.number(),
          pre: z.looseObject({ parked: z.number().int(), taken: z.number().int(), dropped: z.number().int(), held: z.number().int(), bytes: z.number(), noRoom: z.number().int(), seconds: z.number(), cpuSeconds: z.number() }),
        })
        .optional()
        .meta({ description: 'Parked sessions of evicted mapped models (runtime/parked.ts) at the last heartbeat, and of pre-parked ones (pre: created before any call, PREPARK; dropped: disposed with no call having taken them; seconds, cpuSeconds: what their creates took)' }),
      heartbeatAt: z.string(),
    }),
  ),
  recentEvictions: z.array(z.looseObject({ at: z.string(), node: z.string(), fn: z.string(), sizeBytes: z.number(), reason: z.string(), cause: z.string() })),
});

const V2Tensor = z.looseObject({ name: z.string(), datatype: z.string(), shape: z.array(z.number().int()) });
const V2ModelMetadata = z.looseObject({ name: z.string(), versions: z.array(z.string()), platform: z.string(), inputs: z.array(V2Tensor), outputs: z.array(V2Tensor) });
const V2InferResponse = z.looseObject({ model_name: z.string(), model_version: z.string(), id: z.string().optional(), outputs: z.array(V2Tensor.extend({ data: z.array(z.unknown()) })) });
const Empty = z.looseObject({});
const V2Stats = z.looseObject({ model_stats: z.array(z.looseObject({ name: z.string(), version: z.string() })) });
const V2Config = z.looseObject({ name: z.string(), platform: z.string(), input: z.array(z.unknown()), output: z.array(z.unknown()) });

// ---------------------------------------------------------------------------

type Scope = 'open' | 'invoke' | 'admin';

interface Op {
  summary: string;
  scope: Scope;
  query?: z.ZodObject;
  body?: { schema: z.ZodType; type?: string; example?: unknown };
  ok: Array<[number, z.ZodType | 'text' | 'html' | 'binary' | 'asset']>;
  v2?: boolean;
  /** Takes and answers Triton's binary tensor data extension too (a JSON header, then raw bytes). */
  binaryTensors?: boolean;
}

const HEADER_LENGTH_NOTE =
  "binary tensor data extension: the byte length of the JSON header that starts the body, the rest being the inputs' raw bytes (parameters.binary_data_size each, in order); 0: the whole body is a one-input model's tensor";

const name = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' } };
const version = { name: 'version', in: 'path', required: true, schema: { type: 'string' } };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };

const invokeExample = { inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } };
const inferExample = { id: '1', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

/** Every route, by path and method. `{param}` paths, as OpenAPI writes them. */
const ROUTES: Record<string, Record<string, Op>> = {
  '/': { get: { summary: 'the dashboard (HTML)', scope: 'open', ok: [[200, 'html']] } },
  '/ui/{file}': { get: { summary: "the dashboard's ES modules, styles and uPlot", scope: 'open', ok: [[200, 'asset']] } },
  '/docs': { get: { summary: 'these docs (Swagger UI, served locally)', scope: 'open', ok: [[200, 'html']] } },
  '/openapi.json': { get: { summary: 'this document', scope: 'open', ok: [[200, z.looseObject({ openapi: z.string() })]] } },
  '/queues': { get: { summary: 'bull-board, read-only: the BullMQ queue of each live node (HTML; HTTP Basic with the key as password when keys are set)', scope: 'invoke', ok: [[200, 'html']] } },
  '/functions': { get: { summary: 'list functions', scope: 'invoke', ok: [[200, z.looseObject({ functions: z.array(FunctionBody) })]] } },
  '/functions/{name}': {
    put: {
      summary: 'register raw ONNX bytes as a function: inspected and profiled before the answer; 201 new, 200 same bytes (options updated) or a new version',
      scope: 'admin',
      query: RegisterQuery,
      body: { schema: z.string().meta({ format: 'binary' }), type: 'application/octet-stream' },
      ok: [[201, FunctionBody.extend({ created: z.boolean(), newVersion: z.boolean() })], [200, FunctionBody.extend({ created: z.boolean(), newVersion: z.boolean() })]],
    },
    get: { summary: 'a function: description, counts, where it is resident', scope: 'invoke', ok: [[200, FunctionBody.extend({ stats: FunctionStats, residentOn: z.array(z.string()) })]] },
    delete: { summary: 'delete a function (unloaded everywhere)', scope: 'admin', ok: [[200, z.looseObject({ deleted: z.string(), versions: z.number().int(), unloaded: z.number().int() })]] },
  },
  '/functions/{name}/example': {
    get: { summary: 'a valid input for the function, from its signature and the dims profiling ran with', scope: 'invoke', ok: [[200, z.looseObject({ function: z.string(), version: z.number().int(), inputs: z.record(z.string(), JsonTensor) })]] },
  },
  '/functions/{name}/invoke': {
    post: {
      summary: 'invoke; with ?async=true answers 202 with an id for GET /invocations/{id}',
      scope: 'invoke',
      query: InvokeQuery,
      body: { schema: InvokeBody, example: invokeExample },
      ok: [[200, InvokeResult], [202, z.looseObject({ id: z.string(), status: z.literal('waiting'), href: z.string() })]],
    },
  },
  '/invocations/{id}': {
    get: {
      summary: 'an async invocation: waiting, active, delayed, then completed (with its result) or failed (with its error)',
      scope: 'invoke',
      ok: [
        [
          200,
          z.union([
            InvokeResult.extend({ id: z.string(), status: z.literal('completed'), timings: Timings.omit({ totalMs: true }) }),
            z.looseObject({ id: z.string(), status: z.literal('failed'), error: ErrorBody.shape.error }),
            z.looseObject({ id: z.string(), status: z.enum(['waiting', 'active', 'delayed']) }),
          ]),
        ],
      ],
    },
  },
  '/stats': { get: { summary: 'queue depth, per-function counts and latencies, nodes, recent evictions', scope: 'invoke', ok: [[200, Stats]] } },
  '/metrics': { get: { summary: 'Prometheus metrics (open unless METRICS_AUTH=key)', scope: 'open', ok: [[200, 'text']] } },
  '/healthz': { get: { summary: "readiness with its reason: 200 when Redis answers and some node is alive, else 503 (status 'redis unreachable' or 'no live node'); always open", scope: 'open', ok: [[200, Healthz], [503, Healthz]] } },
  '/v2': { get: { summary: 'server metadata', scope: 'invoke', v2: true, ok: [[200, z.looseObject({ name: z.string(), version: z.string(), extensions: z.array(z.string()) })]] } },
  '/v2/health/live': { get: { summary: 'liveness (always open)', scope: 'open', v2: true, ok: [[200, z.looseObject({ live: z.boolean() })]] } },
  '/v2/health/ready': { get: { summary: 'readiness: 200 when Redis answers and some node is alive, else 400 (the protocol\'s 4xx, as Triton answers; always open)', scope: 'open', v2: true, ok: [[200, Ready], [400, Ready]] } },
  '/v2/models/{name}': { get: { summary: 'model metadata', scope: 'invoke', v2: true, ok: [[200, V2ModelMetadata]] } },
  '/v2/models/{name}/versions/{version}': { get: { summary: 'model metadata of a version', scope: 'invoke', v2: true, ok: [[200, V2ModelMetadata]] } },
  '/v2/models/{name}/ready': { get: { summary: 'model readiness: 200 when some node is alive, else 400', scope: 'invoke', v2: true, ok: [[200, ModelReady], [400, ModelReady]] } },
  '/v2/models/{name}/versions/{version}/ready': { get: { summary: 'model readiness of a version: 200 when some node is alive, else 400', scope: 'invoke', v2: true, ok: [[200, ModelReady], [400, ModelReady]] } },
  '/v2/models/stats': { get: { summary: "statistics extension, every model (Triton's format, with brulee's cold starts)", scope: 'invoke', v2: true, ok: [[200, V2Stats]] } },
  '/v2/models/{name}/stats': { get: { summary: 'statistics extension, one model', scope: 'invoke', v2: true, ok: [[200, V2Stats]] } },
  '/v2/models/{name}/versions/{version}/stats': { get: { summary: 'statistics extension, one version', scope: 'invoke', v2: true, ok: [[200, V2Stats]] } },
  '/v2/models/{name}/config': { get: { summary: "model configuration extension (Triton's shape)", scope: 'invoke', v2: true, ok: [[200, V2Config]] } },
  '/v2/models/{name}/versions/{version}/config': { get: { summary: 'model configuration of a version', scope: 'invoke', v2: true, ok: [[200, V2Config]] } },
  '/v2/models/{name}/infer': {
    post: { summary: 'inference (JSON, or the binary tensor data extension: see README)', scope: 'invoke', v2: true, binaryTensors: true, body: { schema: InferRequest, example: inferExample }, ok: [[200, V2InferResponse]] },
  },
  '/v2/models/{name}/versions/{version}/infer': {
    post: { summary: 'inference on a version', scope: 'invoke', v2: true, binaryTensors: true, body: { schema: InferRequest, example: inferExample }, ok: [[200, V2InferResponse]] },
  },
  '/v2/repository/index': {
    post: {
      summary: 'model repository index, with state',
      scope: 'invoke',
      v2: true,
      body: { schema: z.object({ ready: z.boolean().optional() }) },
      ok: [[200, z.array(z.looseObject({ name: z.string(), version: z.string(), state: z.string(), reason: z.string() }))]],
    },
  },
  '/v2/repository/models/{name}/load': { post: { summary: 'prewarm a model on the node routing picks', scope: 'admin', v2: true, ok: [[200, Empty]] } },
  '/v2/repository/models/{name}/unload': { post: { summary: 'unload a model everywhere', scope: 'admin', v2: true, ok: [[200, Empty]] } },
};

function jsonSchema(s: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const SECURITY: Record<Scope, unknown[]> = { open: [], invoke: [{}, { bearer: [] }], admin: [{}, { bearer: [] }] };
const KEY_NOTE: Record<Scope, string> = {
  open: 'Open: no key.',
  invoke: 'With INVOKE_API_KEY set: Authorization: Bearer <INVOKE_API_KEY or API_KEY>.',
  admin: 'With API_KEY set: Authorization: Bearer <API_KEY> (with only INVOKE_API_KEY set, that key).',
};

let cached: Record<string, unknown> | undefined;

/** The OpenAPI 3.1 document (built once). */
export function openApiDocument(): Record<string, unknown> {
  if (cached) return cached;
  const paths: Record<string, unknown> = {};
  for (const [path, ops] of Object.entries(ROUTES)) {
    const item: Record<string, unknown> = {};
    for (const [method, op] of Object.entries(ops)) {
      const params: unknown[] = [];
      if (path.includes('{name}')) params.push(name);
      if (path.includes('{version}')) params.push(version);
      if (path.includes('{id}')) params.push(idParam);
      if (path.includes('{file}')) params.push({ name: 'file', in: 'path', required: true, schema: { type: 'string' } });
      if (op.query) {
        const q = jsonSchema(op.query, 'input') as { properties?: Record<string, unknown> };
        for (const [k, v] of Object.entries(q.properties ?? {})) params.push({ name: k, in: 'query', required: false, schema: v });
      }
      const errorSchema = jsonSchema(op.v2 ? V2Error : ErrorBody, 'output');
      const responses: Record<string, unknown> = {};
      for (const [status, s] of op.ok) {
        const content =
          s === 'html' ? { 'text/html': { schema: { type: 'string' } } }
          : s === 'text' ? { 'text/plain': { schema: { type: 'string' } } }
          : s === 'asset' ? Object.fromEntries(['text/javascript', 'text/css', 'image/svg+xml'].map((t) => [t, { schema: { type: 'string' } }]))
          : s === 'binary' ? { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } }
          : { 'application/json': { schema: jsonSchema(s, 'output') } };
        responses[String(status)] = { description: status === 202 ? 'accepted' : status === 201 ? 'created' : status === 503 || status === 400 ? 'not ready' : 'ok', content };
      }
      if (op.binaryTensors) {
        // Outputs asked in binary (binary_data, binary_data_output) come after the JSON header, as inputs may.
        params.push({ name: 'Inference-Header-Content-Length', in: 'header', required: false, description: HEADER_LENGTH_NOTE, schema: { type: 'string', pattern: '^\\d+$' } });
        const ok = responses['200'] as { content: Record<string, unknown>; headers?: Record<string, unknown> };
        ok.content['application/octet-stream'] = { schema: { type: 'string', format: 'binary' } };
        ok.headers = { 'Inference-Header-Content-Length': { description: 'with binary outputs (Content-Type application/octet-stream): the byte length of the JSON header before their bytes', schema: { type: 'string' } } };
      }
      responses.default = { description: `an error; ${op.v2 ? '{"error": "<message>"}' : '{"error": {"code", "message"}}'} with the code's status (README, HTTP API)`, content: { 'application/json': { schema: errorSchema } } };
      item[method] = {
        summary: op.summary,
        description: KEY_NOTE[op.scope],
        tags: [op.v2 ? 'Open Inference Protocol (v2)' : path.startsWith('/functions') || path.startsWith('/invocations') ? 'functions' : 'operations'],
        ...(params.length ? { parameters: params } : {}),
        ...(op.body
          ? {
              requestBody: {
                required: true,
                content: {
                  [op.body.type ?? 'application/json']: { schema: jsonSchema(op.body.schema, 'input'), ...(op.body.example ? { example: op.body.example } : {}) },
                  ...(op.binaryTensors ? { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } : {}),
                },
              },
            }
          : {}),
        responses,
        security: SECURITY[op.scope],
      };
    }
    paths[path] = item;
  }
  cached = {
    openapi: '3.1.0',
    info: {
      title: 'brulee',
      version: '0.1.0',
      description: 'Register ONNX models as functions, invoke them over HTTP, watch queue depth and cold starts. Keys: API_KEY guards changes, INVOKE_API_KEY guards reads and invocations; health routes and /metrics stay open.',
    },
    paths,
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
  };
  return cached;
}
