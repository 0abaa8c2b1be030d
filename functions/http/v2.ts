import zlib from 'node:zlib';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { BruleeError, preview } from '../../errors';
import type { Tensor } from '../../queue/wire';
import type { DataPlane } from '../dataplane';
import type { FunctionMeta } from '../registry';
import { checkShape, decodeRaw, elementTypeOf, rawElementSize, rawOf, requestedOutputs, tritonModelConfig, V2_DATATYPE, v2TensorMetadata } from '../v2-tensors';
import { inputGivenTwice } from '../signature';
import { decodeJsonTensor } from './json-tensors';
import { byteStream, compressedStream, JsonAnswer, JsonData, STREAM_FROM_BYTES, streamedAnswer } from './answer';
import { bodyBytes, check, jsonBody, limit, parseJson } from './parse';

/**
 * The Open Inference Protocol (KServe v2 REST) over the same functions, so Triton and KServe
 * clients work unchanged. Errors on these routes take the protocol's form `{"error": "..."}`
 * (errors.ts does that for every `/v2` path).
 */

const Parameters = z.record(z.string(), z.unknown());

export const InferRequest = z.object({
  id: z.string().optional(),
  parameters: Parameters.optional(),
  inputs: z
    .array(
      z.object({
        name: z.string(),
        shape: z.array(z.number().int().min(0)),
        datatype: z.string(),
        parameters: Parameters.optional(),
        data: z.unknown().optional(),
      }),
    )
    .min(1),
  outputs: z.array(z.object({ name: z.string(), parameters: Parameters.optional() })).optional(),
});
type InferRequest = z.infer<typeof InferRequest>;

export interface V2Options {
  dataPlane: DataPlane;
  maxRequestBytes: number;
}

const bad = (message: string) => new BruleeError('BAD_REQUEST', message);

/** The response encoding `Accept-Encoding` asks for, of the ones brulee sends (gzip first). */
function responseEncoding(accept: string | undefined): 'gzip' | 'deflate' | undefined {
  if (!accept) return undefined;
  const offered = new Map<string, number>();
  for (const part of accept.toLowerCase().split(',')) {
    const [name, ...params] = part.trim().split(';');
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)).find(Boolean);
    offered.set(name!.trim(), q ? Number(q[1]) : 1);
  }
  const star = offered.get('*') ?? 0;
  const want = (n: string) => (offered.get(n) ?? star) > 0;
  return want('gzip') ? 'gzip' : want('deflate') ? 'deflate' : undefined;
}

function isTrue(v: unknown): boolean {
  return v === true || v === 'true';
}

/**
 * Inputs of a request: JSON `data`, or binary data after the JSON header (`binary_data_size`,
 * in the order of the inputs). Every binary byte must belong to some input.
 */
function decodeInputs(req: InferRequest, binary: Uint8Array): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = {};
  let at = 0;
  for (const i of req.inputs) {
    if (i.name in inputs) throw inputGivenTwice(i.name);
    const size = i.parameters?.binary_data_size;
    if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
        throw bad(`input ${preview(i.name)}: parameters.binary_data_size must be a non-negative integer, not ${preview(size)}`);
      }
      if (at + size > binary.byteLength) {
        throw bad(`input ${preview(i.name)}: binary_data_size ${size} runs past the binary data after the JSON header (${binary.byteLength - at} bytes left); check Inference-Header-Content-Length`);
      }
      if (i.data !== undefined) throw bad(`input ${preview(i.name)} has both data and binary_data_size; send one`);
      inputs[i.name] = decodeRaw(i.name, i.datatype, i.shape, binary.subarray(at, at + size));
      at += size;
      continue;
    }
    if (i.datatype === 'BF16') throw new BruleeError('INVALID_INPUT', `input ${preview(i.name)}: BF16 has no JSON form; send it as binary data (parameters.binary_data_size)`);
    const type = elementTypeOf(i.name, i.datatype);
    inputs[i.name] = decodeJsonTensor(i.name, { type, dims: checkShape(i.name, i.shape), data: i.data });
  }
  if (at !== binary.byteLength) {
    throw bad(`${binary.byteLength - at} bytes after the JSON header belong to no input: the inputs' binary_data_size add up to ${at}`);
  }
  return inputs;
}

/**
 * The raw binary request (Inference-Header-Content-Length: 0): the whole body is the one input's
 * bytes, its datatype and shape from the model, a dynamic dim (at most one, for fixed-size
 * types) taken from the byte count.
 */
function rawBodyInput(fn: FunctionMeta, body: Uint8Array): Record<string, Tensor> {
  const ins = fn.signature.inputs;
  if (ins.length !== 1) {
    throw bad(`a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; "${fn.name}" has ${ins.length}: send a JSON header`);
  }
  const spec = ins[0]!;
  const datatype = V2_DATATYPE[spec.type] ?? spec.type;
  const dynamic = spec.dims.filter((d) => typeof d !== 'number' || d < 0).length;
  const fixed = spec.dims.reduce<number>((a, d) => (typeof d === 'number' && d >= 0 ? a * d : a), 1);
  const size = rawElementSize(datatype);
  let dims: number[];
  if (dynamic === 0) dims = spec.dims as number[];
  else if (dynamic === 1 && size !== undefined && fixed > 0 && body.byteLength % (fixed * size) === 0) {
    const free = body.byteLength / (fixed * size);
    dims = spec.dims.map((d) => (typeof d === 'number' && d >= 0 ? d : free));
  } else {
    throw bad(`a raw binary request cannot infer the shape of input "${spec.name}" (${datatype} ${JSON.stringify(spec.dims)}) from ${body.byteLength} bytes: send a JSON header`);
  }
  return { [spec.name]: decodeRaw(spec.name, datatype, dims, body) };
}

export function v2Routes({ dataPlane, maxRequestBytes }: V2Options): Hono {
  const app = new Hono();

  /** The function named in the path, at the version asked for. */
  const model = (c: Context): Promise<FunctionMeta> => dataPlane.get(c.req.param('name')!, c.req.param('version'));

  app.get('/v2', (c) => c.json({ name: 'brulee', version: '0.1.0', extensions: ['model_repository', 'binary_tensor_data', 'statistics', 'model_configuration'] }));
  app.get('/v2/health/live', (c) => c.json({ live: true }));
  // Not ready is a 4xx, as the protocol says (a 200 status code indicates true, a 4xx false) and
  // Triton answers (400); any non-2xx fails a Kubernetes probe. /healthz says 503 with the reason.
  app.get('/v2/health/ready', async (c) => {
    const ready = await dataPlane.ready();
    return c.json({ ready }, ready ? 200 : 400);
  });
  // Statistics extension: every model (before /v2/models/:name would take "stats" as a name: the
  // registry refuses that name, RESERVED_NAMES in functions/registry.ts).
  app.get('/v2/models/stats', async (c) => c.json(await dataPlane.modelStatistics()));

  for (const base of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    app.get(base, async (c) => {
      const fn = await model(c);
      return c.json({
        name: fn.name,
        // Only the current version is served, so only it is listed (older ones answer 404).
        versions: [String(fn.version)],
        platform: 'onnxruntime_onnx',
        inputs: fn.signature.inputs.map(v2TensorMetadata),
        outputs: fn.signature.outputs.map(v2TensorMetadata),
      });
    });
    // Registered means ready while some node is alive: a model loads on demand (a cold start). Not
    // ready is a 400, as for the server (Triton's too).
    app.get(`${base}/ready`, async (c) => {
      const fn = await model(c);
      const ready = await dataPlane.ready();
      return c.json({ name: fn.name, ready }, ready ? 200 : 400);
    });
    app.get(`${base}/config`, async (c) => {
      const fn = await model(c);
      return c.json(tritonModelConfig(fn.name, fn.signature));
    });
    app.get(`${base}/stats`, async (c) => c.json(await dataPlane.modelStatistics(c.req.param('name')!, c.req.param('version'))));
    app.post(`${base}/infer`, limit(maxRequestBytes, 'request body', 'MAX_REQUEST_BYTES'), async (c) => {
      const fn = await model(c);
      const body = await bodyBytes(c, maxRequestBytes);
      const headerLength = c.req.header('inference-header-content-length');
      let req: InferRequest;
      let inputs: Record<string, Tensor>;
      if (headerLength !== undefined && headerLength.trim() === '0') {
        req = { inputs: [] };
        inputs = rawBodyInput(fn, body);
      } else {
        let json = body;
        let binary: Uint8Array = new Uint8Array(0);
        if (headerLength !== undefined) {
          const n = /^\s*\d+\s*$/.test(headerLength) ? Number(headerLength) : NaN;
          if (!Number.isSafeInteger(n) || n > body.byteLength) {
            throw bad(`Inference-Header-Content-Length ${preview(headerLength)} must be the byte length of the JSON header, at most the body's ${body.byteLength} bytes`);
          }
          json = body.subarray(0, n);
          binary = body.subarray(n);
        }
        const text = Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8');
        if (text.trim() === '') throw new BruleeError('MALFORMED_JSON', 'the request body is empty; send a JSON inference request');
        req = check(InferRequest, parseJson(text), 'inference request');
        inputs = decodeInputs(req, binary);
      }
      const wanted = requestedOutputs(req.outputs ?? []);
      const outputs = wanted.map((o) => o.name);
      const r = await dataPlane.invoke(fn.name, inputs, { outputs, version: c.req.param('version') });
      const order = outputs.length > 0 ? outputs : fn.signature.outputs.map((o) => o.name);
      // Binary outputs: each one asking for it, or all with binary_data_output (an output may still say false).
      const allBinary = isTrue(req.parameters?.binary_data_output);
      const asked = new Map(wanted.map((o) => [o.name, o.parameters?.binary_data]));
      const chunks: Uint8Array[] = [];
      const answer = new JsonAnswer({
        model_name: fn.name,
        model_version: String(r.fn.version),
        ...(req.id !== undefined ? { id: req.id } : {}),
        outputs: order
          .filter((n) => r.outputs[n])
          .map((n) => {
            const t = r.outputs[n]!;
            const head = { name: n, datatype: V2_DATATYPE[t.type] ?? t.type, shape: t.dims };
            const want = asked.get(n);
            if (want === undefined ? allBinary : isTrue(want)) {
              const raw = rawOf(t);
              chunks.push(raw);
              return { ...head, parameters: { binary_data_size: raw.byteLength } };
            }
            // INT64 beyond 2^53 goes out as JSON numbers, as the protocol says, not as strings.
            return { ...head, data: new JsonData(t, 'raw') };
          }),
      });
      const headers: Record<string, string> = {};
      const enc = responseEncoding(c.req.header('accept-encoding'));
      if (enc) {
        headers['content-encoding'] = enc;
        headers.vary = 'Accept-Encoding';
      }
      const binaryBytes = chunks.reduce((s, b) => s + b.byteLength, 0);
      const large = binaryBytes + answer.dataBytes > STREAM_FROM_BYTES;
      let pieces: Iterable<string | Uint8Array>;
      if (chunks.length > 0) {
        // The JSON header, then each output's bytes as they are (views of the answer from Redis).
        const header = answer.bytes();
        headers['content-type'] = 'application/octet-stream';
        headers['inference-header-content-length'] = String(header.byteLength);
        pieces = [header, ...chunks];
        if (!enc) headers['content-length'] = String(header.byteLength + binaryBytes);
      } else {
        headers['content-type'] = 'application/json';
        pieces = large ? answer.pieces() : [answer.bytes()];
      }
      if (large) return c.body(streamedAnswer(c, enc ? compressedStream(pieces, enc) : byteStream(pieces)), 200, headers);
      // Small: one buffer, compressed whole; Inference-Header-Content-Length still counts the uncompressed header.
      let out: Uint8Array = Buffer.concat([...pieces].map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
      if (enc) out = enc === 'gzip' ? zlib.gzipSync(out, { level: 1 }) : zlib.deflateSync(out, { level: 1 });
      return c.body(out as Uint8Array<ArrayBuffer>, 200, headers);
    });
  }

  // Model repository extension: index, load (prewarm), unload (evict). Load and unload need the
  // admin key, which the app checks before any route (app.ts).
  app.post('/v2/repository/index', async (c) => {
    const text = await c.req.text();
    const body = text.trim() ? check(z.object({ ready: z.boolean().optional() }), parseJson(text), 'index request') : {};
    return c.json(await dataPlane.repositoryIndex({ ready: body.ready ?? false }));
  });
  app.post('/v2/repository/models/:name/load', async (c) => {
    await dataPlane.load(c.req.param('name'));
    return c.json({});
  });
  app.post('/v2/repository/models/:name/unload', async (c) => {
    await dataPlane.unload(c.req.param('name'));
    return c.json({});
  });
  return app;
}
