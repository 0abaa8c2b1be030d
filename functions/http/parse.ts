import buffer from 'node:buffer';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { parseBytes } from '../../config';
import { BruleeError } from '../../errors';
import { parseJsonExact } from './exact-json';

/** Parses a JSON body with a clear error on malformed JSON; a compressed body (`Content-Encoding`) is decompressed first, to at most `max` bytes. */
export async function jsonBody(c: Context, max = Infinity): Promise<unknown> {
  return parseJson(await jsonText(c, max));
}

/** A JSON body's text (decompressed as `jsonBody` does), refused when empty. */
export async function jsonText(c: Context, max = Infinity): Promise<string> {
  const text = isEncoded(c) ? Buffer.from(await bodyBytes(c, max)).toString('utf8') : await c.req.text();
  if (text.trim() === '') throw new BruleeError('MALFORMED_JSON', 'the request body is empty; send a JSON object');
  return text;
}

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const inflateRaw = promisify(zlib.inflateRaw);

function isEncoded(c: Context): boolean {
  const enc = c.req.header('content-encoding')?.trim().toLowerCase();
  return enc !== undefined && enc !== '' && enc !== 'identity';
}

/**
 * The request body, decompressed when `Content-Encoding` says gzip or deflate (zlib-wrapped, as
 * tritonclient sends it, or raw), never past `max` bytes (`setting` raises it). Every route that
 * reads a body takes it so: one that ignored the header read compressed bytes as JSON or ONNX.
 */
export async function bodyBytes(c: Context, max: number, setting = 'MAX_REQUEST_BYTES'): Promise<Uint8Array> {
  const body = new Uint8Array(await c.req.arrayBuffer());
  if (!isEncoded(c)) return body;
  const encoding = c.req.header('content-encoding')!;
  const enc = encoding.trim().toLowerCase();
  const opts = { maxOutputLength: Math.min(max, buffer.kMaxLength) };
  try {
    if (enc === 'gzip' || enc === 'x-gzip') return await gunzip(body, opts);
    if (enc === 'deflate') {
      try {
        return await inflate(body, opts);
      } catch (e) {
        if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw e;
        return await inflateRaw(body, opts);
      }
    }
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw payloadTooLarge('decompressed request body', max, setting);
    }
    throw new BruleeError('BAD_REQUEST', `the request body is not valid ${enc} data: ${e instanceof Error ? e.message : String(e)}`);
  }
  throw new BruleeError('BAD_REQUEST', `Content-Encoding ${JSON.stringify(encoding)} is not supported; send gzip, deflate or an uncompressed body`);
}

/** Parses JSON, keeping integers past 2^53 exact (as BigInts; see exact-json.ts). */
export function parseJson(text: string): unknown {
  try {
    return parseJsonExact(text);
  } catch (e) {
    throw new BruleeError('MALFORMED_JSON', `the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Runs a zod schema; its first issues become one BAD_REQUEST message that names the fields. */
export function check<T>(schema: z.ZodType<T>, value: unknown, what: string, code: 'BAD_REQUEST' | 'INVALID_OPTION' = 'BAD_REQUEST'): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.length ? i.path.join('.') : what}: ${i.message}`);
  throw new BruleeError(code, `invalid ${what}: ${issues.join('; ')}`);
}

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const posInt = (max: number) => z.string().regex(/^\d+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(1).max(max));
const byteCount = z.string().transform((s, ctx) => {
  const n = parseBytes(s);
  if (!(n > 0)) ctx.addIssue({ code: 'custom', message: 'must be a byte count like 104857600 or 100MiB' });
  return n;
});
/** `x:1x3x32x32;y:1x4` */
const dimsSpec = z.string().transform((s, ctx) => {
  const out: Record<string, number[]> = {};
  for (const part of s.split(';').filter(Boolean)) {
    const m = /^([^:]+):(\d+(?:x\d+)*)?$/.exec(part.trim());
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not input:dims, for example img:1x3x32x32` });
      return z.NEVER;
    }
    out[m[1]!] = m[2] ? m[2].split('x').map(Number) : [];
  }
  return out;
});

/** Query parameters of PUT /functions/{name}. */
export const RegisterQuery = z
  .object({
    timeoutMs: posInt(3_600_000).optional(),
    pinned: bool.optional(),
    memoryBytes: byteCount.optional(),
    profileDims: dimsSpec.optional(),
    threads: posInt(64).optional(),
    arena: bool.optional(),
    maxBatch: posInt(1024).optional(),
    maxDelayMs: z.string().regex(/^\d+$/, 'must be a whole number of ms').transform(Number).pipe(z.number().int().min(0).max(1000)).optional(),
  })
  .strict();

/** Query parameters of POST /functions/{name}/invoke: a misspelt or unknown one is refused, not run as a sync call the client did not ask for. */
export const InvokeQuery = z.object({ async: bool.optional() }).strict();

export const InvokeBody = z.object({
  inputs: z.record(z.string(), z.unknown()),
  outputs: z.array(z.string()).optional(),
});

/**
 * The 413 of something larger than a limit, naming the setting that raises it (and, when known,
 * the size received): REST bodies here, gRPC messages in functions/grpc/server.ts.
 */
export function payloadTooLarge(what: string, maxSize: number, setting: string, size?: number): BruleeError {
  const got = size === undefined ? '' : ` (${size} bytes)`;
  return new BruleeError('PAYLOAD_TOO_LARGE', `the ${what}${got} is larger than the limit of ${maxSize} bytes (${setting})`);
}

/**
 * A body-size limit whose 413 names the setting that raises it. A body with a Content-Length (and
 * no Transfer-Encoding; node's parser reads no more than it says) is judged by the header alone,
 * without touching the body: @hono/node-server then reads it straight from the socket, with no web
 * Request, stream or AbortSignal built for it (about a tenth of a loaded server's CPU). A chunked
 * body is counted as it is read (hono's `bodyLimit`).
 */
export const limit = (maxSize: number, what: string, setting: string): MiddlewareHandler => {
  const tooLarge = () => payloadTooLarge(what, maxSize, setting);
  const chunked = bodyLimit({
    maxSize,
    onError: () => {
      throw tooLarge();
    },
  });
  return async (c, next) => {
    const length = declaredLength(c);
    if (length === undefined) return chunked(c, next);
    if (length > maxSize) throw tooLarge();
    await next();
  };
};

/** The body's length as its Content-Length declares it; undefined for a chunked body (or none declared). */
export function declaredLength(c: Context): number | undefined {
  const length = c.req.header('content-length');
  if (length === undefined || c.req.header('transfer-encoding') !== undefined) return undefined;
  const n = Number(length);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}
