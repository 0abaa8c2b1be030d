import { request as httpRequest, Agent } from 'node:http';
import fc from 'fast-check';
import { convModel, mlpModel, typesModel } from '../../models/generate';
import { encodeModel } from '../../models/onnx-builder';

/**
 * Fuzzed HTTP requests over every route of the app (random JSON, mutated valid requests, deeply
 * nested values, random bytes, wrong content types and encodings), sent over a real socket, and a
 * tally of the answers. Used by `test/fuzz/fuzz.test.ts` (a few thousand cases in `npm test`) and
 * `npm run fuzz` (the long run).
 */

/** The functions a fuzz target has registered (names, and the bytes to register them with). */
export const FUZZ_MODELS: Record<string, Uint8Array> = {
  m: mlpModel({ inputSize: 4, hidden: [4], outputSize: 2, seed: 1 }),
  types: typesModel(),
  conv: convModel(),
  id4: encodeModel({
    inputs: [{ name: 'x', type: 'float32', shape: ['a', 'b', 'c', 'd'] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['a', 'b', 'c', 'd'] }],
    nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
    graphName: 'identity4',
  }),
};
const NAMES = Object.keys(FUZZ_MODELS);

/** A valid v1 invoke body per function, and the same inputs as a v2 infer body: what mutations start from. */
const V1: Record<string, Record<string, unknown>> = {
  m: { inputs: { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } } },
  types: {
    inputs: {
      f32: { type: 'float32', dims: [2, 3], data: [1, 2, 3, 4, 5, 6] },
      f64: { type: 'float64', dims: [2], data: [0.5, -1] },
      i32: { type: 'int32', dims: [1, 2], data: [7, -7] },
      i64: { type: 'int64', dims: [4], data: [1, '9007199254740993', -3, 0] },
      u8: { type: 'uint8', dims: [2, 2], data: [0, 1, 254, 255] },
      b: { type: 'bool', dims: [3], data: [true, false, 1] },
    },
  },
  conv: { inputs: { img: { type: 'float32', dims: [1, 1, 3, 3], data: [1, 2, 3, 4, 5, 6, 7, 8, 9] } }, outputs: ['out'] },
  id4: { inputs: { x: { type: 'float32', dims: [1, 2, 1, 2], data: [[[[1, 2]], [[3, 4]]]] } } },
};
const V2_TYPE: Record<string, string> = { float32: 'FP32', float64: 'FP64', int32: 'INT32', int64: 'INT64', uint8: 'UINT8', bool: 'BOOL' };
const V2 = Object.fromEntries(
  Object.entries(V1).map(([fn, b]) => [
    fn,
    {
      id: 'fuzz',
      inputs: Object.entries(b.inputs as Record<string, { type: string; dims: number[]; data: unknown }>).map(([name, t]) => ({ name, shape: t.dims, datatype: V2_TYPE[t.type], data: t.data })),
    },
  ]),
);

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  /** What kind of case this is, for the tally. */
  kind: string;
}

export interface Route {
  method: string;
  path: string;
}

/** Values that have broken parsers before: odd numbers, odd strings, odd structures. */
const SPECIAL_VALUES: unknown[] = [
  1e300, -1, 0.5, -0, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 2 ** 64, 4294967296, 1e-300, null, true, '', 'NaN', '-Infinity',
  '9'.repeat(400), [], {}, [[]], [null], { type: 'float32' }, '__proto__', { __proto__: null, constructor: 1 }, 'constructor',
  '\u0000', '\ud800', 'é', [1e300, 0], [0, 3, 1e300, 1], [-1, 4], [1, 4.5], [2 ** 31, 2 ** 31, 0],
];

const deep = (depth: number, leaf: string, obj: boolean) => (obj ? '{"a":'.repeat(depth) + leaf + '}'.repeat(depth) : '['.repeat(depth) + leaf + ']'.repeat(depth));

/** Replaces (or deletes) the value at a path chosen by `picks` in a copy of `v`. */
function mutate(v: unknown, picks: number[], op: number, replacement: unknown): unknown {
  const root = structuredClone(v) as Record<string, unknown>;
  let parent: Record<string, unknown> | unknown[] = root;
  let key: string | number = '';
  let cur: unknown = root;
  for (const p of picks) {
    if (typeof cur !== 'object' || cur === null) break;
    const keys = Object.keys(cur);
    if (keys.length === 0) break;
    parent = cur as Record<string, unknown>;
    key = Array.isArray(cur) ? p % cur.length : keys[p % keys.length]!;
    cur = (cur as Record<string, unknown>)[key];
    if (p % 3 === 0) break;
  }
  if (key === '') return replacement;
  if (op % 5 === 0) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
  } else if (op % 5 === 1 && typeof cur === 'object' && cur !== null) {
    (cur as Record<string, unknown>)[`k${op}`] = replacement;
  } else {
    (parent as Record<string | number, unknown>)[key] = replacement;
  }
  return root;
}

const enc = new TextEncoder();

const name = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom('..', '%2e%2e', 'a%2F..%2Fb', '%00', 'nope', 'x'.repeat(300), '%', 'm%20', '\u00e9', '1', '-1', '00000000-0000-0000-0000-000000000000') },
);
/** Names for PUT and DELETE: never the fuzz target's own functions. */
const scratchName = fc.oneof(fc.constantFrom('fz', 'fz-2', '..', 'x'.repeat(200), '.hidden'), fc.string({ maxLength: 12 }).map((s) => `fz${s}`));

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'application/octet-stream', 'text/plain', 'application/json; charset=utf-16', 'application/json; charset=latin1',
      'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '', ';;;', 'application/json; charset="', '*/*',
    ),
  },
);
const extraHeaders = fc.oneof(
  { weight: 8, arbitrary: fc.constant({}) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<Record<string, string>>(
      { 'content-encoding': 'gzip' }, { 'content-encoding': 'br' }, { 'content-encoding': 'identity' }, { 'content-encoding': 'x-bogus' },
      { accept: 'application/xml' }, { 'accept-encoding': 'gzip' }, { authorization: 'Bearer wrong' }, { authorization: 'Basic Zm9vOmJhcg==' },
      { expect: '100-continue' }, { 'x-http-method-override': 'DELETE' }, { 'inference-header-content-length': '12' },
    ),
  },
);

const query = fc.oneof(
  { weight: 6, arbitrary: fc.constant('') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '?async=true', '?async=1', '?async=maybe', '?async=true&async=false', '?timeoutMs=0', '?timeoutMs=99999999999', '?pinned=yes',
      '?memoryBytes=1', '?memoryBytes=1e300', '?profileDims=x:1x4', '?profileDims=x:0x99999999999', '?profileDims=;;;:', '?%zz=1', '?a=%',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((s) => `?${encodeURIComponent(s)}=${encodeURIComponent(s)}`) },
);

/** JSON bodies: valid ones mutated, random JSON, valid ones with a deeply nested value spliced in, or text-level damage. */
function jsonBody(template: fc.Arbitrary<unknown>): fc.Arbitrary<{ body: Uint8Array; kind: string }> {
  const replacement = fc.oneof(fc.constantFrom(...SPECIAL_VALUES), fc.jsonValue({ maxDepth: 3 }));
  const mutated = fc
    .tuple(template, fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), fc.nat(), replacement, fc.nat({ max: 3 }))
    .map(([t, picks, op, r, times]) => {
      let v = t;
      for (let i = 0; i <= times; i++) v = mutate(v, picks.map((p) => p + i), op + i, r);
      return { body: enc.encode(JSON.stringify(v) ?? 'null'), kind: 'mutated' };
    });
  const random = fc.jsonValue({ maxDepth: 4 }).map((v) => ({ body: enc.encode(JSON.stringify(v) ?? 'null'), kind: 'random-json' }));
  const nested = fc
    .tuple(template, fc.integer({ min: 100, max: 30_000 }), fc.boolean(), fc.nat())
    .map(([t, depth, obj, at]) => {
      // Splice the nested value in place of a leaf of the valid body's text.
      const text = JSON.stringify(t);
      const spots = [...text.matchAll(/:(\d+|"[^"]*"|true|false)/g)];
      const spot = spots.length > 0 ? spots[at % spots.length]! : undefined;
      const nest = deep(depth, spot ? spot[1]! : '1', obj);
      const out = spot ? text.slice(0, spot.index + 1) + nest + text.slice(spot.index + spot[0].length) : nest;
      return { body: enc.encode(out), kind: 'nested' };
    });
  const damaged = fc
    .tuple(template, fc.nat(), fc.uint8Array({ maxLength: 8 }), fc.boolean())
    .map(([t, at, junk, cut]) => {
      const text = enc.encode(JSON.stringify(t));
      const i = at % (text.length + 1);
      const out = cut ? text.slice(0, i) : new Uint8Array([...text.slice(0, i), ...junk, ...text.slice(i)]);
      return { body: out, kind: 'damaged-json' };
    });
  return fc.oneof({ weight: 5, arbitrary: mutated }, { weight: 2, arbitrary: random }, { weight: 2, arbitrary: nested }, { weight: 2, arbitrary: damaged });
}

const bytesBody = fc
  .oneof(
    { weight: 5, arbitrary: fc.uint8Array({ maxLength: 512 }) },
    { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 1_500_000 }).map((n) => new Uint8Array(n).fill(0x5b)) },
    { weight: 1, arbitrary: fc.constantFrom(new Uint8Array([0xff, 0xfe, 0x7b, 0x00]), new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), enc.encode('{"inputs":{"x":\u00ff}}')) },
  )
  .map((b) => ({ body: b, kind: 'bytes' }));

/** ONNX uploads: a fuzz model with some bytes changed, or cut. */
const onnxBody = fc
  .tuple(fc.constantFrom(...Object.values(FUZZ_MODELS)), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.option(fc.nat()))
  .map(([m, flips, cut]) => {
    const b = m.slice();
    for (const [at, v] of flips) b[at % b.length] = v;
    return { body: cut === null ? b : b.slice(0, cut % b.length), kind: 'onnx' };
  });

/** Fills a route's `:params` (names, versions, ids). */
function fill(path: string, n: string, other: string): string {
  return path
    .replace(':name', encodeURIComponent(n).replace(/%25/g, n.startsWith('%') ? '%' : '%25'))
    .replace(':version', other)
    .replace(/:[a-zA-Z]+/g, other);
}

export interface FuzzOptions {
  /**
   * Weight of ONNX uploads among PUT bodies (bytes and JSON weigh 3 each). Each upload that parses
   * is profiled in a child process (about a second), so a short run keeps it low. @default 3
   */
  onnxWeight?: number;
}

/**
 * One fuzzed request over `routes` (as `app.routes` lists them, so routes added later are fuzzed
 * too), with `key` as the bearer token most of the time.
 */
export function requestArbitrary(routes: readonly Route[], key: string | undefined, opts: FuzzOptions = {}): fc.Arbitrary<FuzzRequest> {
  const onnxWeight = opts.onnxWeight ?? 3;
  const concrete = routes.filter((r) => r.method !== 'ALL');
  const route = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...concrete) },
    { weight: 1, arbitrary: fc.record({ method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'), path: fc.string({ maxLength: 40 }).map((s) => `/${encodeURIComponent(s)}`) }) },
  );
  const other = fc.oneof(fc.constantFrom('1', '2', '0', '-1', '999999999999999999999', 'latest', '00000000-0000-0000-0000-000000000000'), fc.uuid(), fc.string({ maxLength: 10 }).map(encodeURIComponent));
  return fc
    .tuple(route, name, scratchName, other, query, contentType, extraHeaders, fc.nat({ max: 9 }), fc.nat())
    .chain(([r, n, scratch, o, q, ct, extra, authRoll, pick]) => {
      const mutating = r.method === 'PUT' || r.method === 'DELETE';
      const fn = mutating ? scratch : n;
      const base = NAMES.includes(fn) ? fn : NAMES[pick % NAMES.length]!;
      const isV2 = r.path.startsWith('/v2');
      const template = fc.constant(isV2 ? V2[base] : V1[base]);
      const body =
        r.method === 'GET' || r.method === 'HEAD'
          ? fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: bytesBody })
          : r.method === 'PUT'
            ? fc.oneof({ weight: onnxWeight, arbitrary: onnxBody }, { weight: 3, arbitrary: bytesBody }, { weight: 3, arbitrary: jsonBody(template) })
            : fc.oneof({ weight: 8, arbitrary: jsonBody(template) }, { weight: 2, arbitrary: bytesBody }, { weight: 1, arbitrary: fc.constant({ body: new Uint8Array(0), kind: 'empty' }) });
      return body.map((b): FuzzRequest => {
        const headers: Record<string, string> = { ...extra };
        if (ct !== '' && b) headers['content-type'] = ct;
        if (key && authRoll < 8 && !headers.authorization) headers.authorization = `Bearer ${key}`;
        return {
          method: r.method,
          path: fill(r.path, fn, o) + q,
          headers,
          ...(b ? { body: b.body } : {}),
          kind: b ? b.kind : 'no-body',
        };
      });
    });
}

export interface Answer {
  status: number;
  ms: number;
  body: string;
  /** 'hang' (no answer in time) or 'reset' (the connection closed without an answer). */
  failure?: 'hang' | 'reset';
  /** On a reset: the request answered before it on the same connection, if any. */
  previous?: string;
}

/** The last request sent on each connection, to say what came before a reset. */
const lastOnSocket = new WeakMap<object, string>();

const agent = new Agent({ keepAlive: true, maxSockets: 8 });

/** Sends one request over HTTP/1.1 to `base` (http://host:port); a hang past `timeoutMs` is reported, not thrown. */
export function send(base: string, r: FuzzRequest, timeoutMs = 5000): Promise<Answer> {
  const t0 = performance.now();
  const url = new URL(base);
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: Omit<Answer, 'ms'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...a, ms: performance.now() - t0 });
    };
    const req = httpRequest(
      { host: url.hostname, port: url.port, method: r.method, path: r.path, headers: { ...r.headers, ...(r.body ? { 'content-length': String(r.body.byteLength) } : {}) }, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', () => done({ status: 0, body: '', failure: 'reset' }));
      },
    );
    const timer = setTimeout(() => {
      done({ status: 0, body: '', failure: 'hang' });
      req.destroy();
    }, timeoutMs);
    let previous: string | undefined;
    req.on('socket', (sock) => {
      previous = lastOnSocket.get(sock);
      lastOnSocket.set(sock, `${r.method} ${r.path.slice(0, 100)} [${r.kind}, ${r.body?.byteLength ?? 0} B, ${JSON.stringify(r.headers)}]`);
    });
    req.on('error', () => done({ status: 0, body: '', failure: 'reset', ...(previous ? { previous } : {}) }));
    req.end(r.body);
  });
}

export interface Tally {
  cases: number;
  byStatus: Record<string, number>;
  byKind: Record<string, number>;
  /** Answers >= 500, hangs and resets, with the request that caused them (body cut). */
  bad: Array<{ method: string; path: string; kind: string; status: number; failure?: string; previous?: string; ms: number; answer: string; body: string }>;
  /** The slowest answer, registrations apart. */
  slowestMs: number;
  slowestRegistrationMs: number;
}

/** How long a registration (PUT /functions/{name}) may take before it counts as a hang. */
export const REGISTRATION_LIMIT_MS = 30_000;

/** Sends `requests` with `concurrency` at a time and tallies the answers. */
export async function run(base: string, requests: readonly FuzzRequest[], concurrency = 4, onProgress?: (done: number) => void): Promise<Tally> {
  const t: Tally = { cases: 0, byStatus: {}, byKind: {}, bad: [], slowestMs: 0, slowestRegistrationMs: 0 };
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests.length) {
        const r = requests[next++]!;
        // A registration profiles the model in a child process (a second or more on a busy
        // machine): it has its own limit; every other answer must come within 5 s.
        const registration = r.method === 'PUT' && r.path.startsWith('/functions/');
        const a = await send(base, r, registration ? REGISTRATION_LIMIT_MS : 5000);
        if (registration && !a.failure) t.slowestRegistrationMs = Math.max(t.slowestRegistrationMs, a.ms);
        else if (!a.failure) t.slowestMs = Math.max(t.slowestMs, a.ms);
        t.cases++;
        const key = a.failure ?? String(a.status);
        t.byStatus[key] = (t.byStatus[key] ?? 0) + 1;
        t.byKind[r.kind] = (t.byKind[r.kind] ?? 0) + 1;
        if (a.failure || a.status >= 500) {
          const text = r.body ? Buffer.from(r.body.slice(0, 300)).toString('utf8') : '';
          t.bad.push({ method: r.method, path: r.path.slice(0, 200), kind: r.kind, status: a.status, ...(a.failure ? { failure: a.failure } : {}), ...(a.previous ? { previous: a.previous } : {}), ms: Math.round(a.ms), answer: a.body.slice(0, 300), body: text });
        }
        if (onProgress && t.cases % 1000 === 0) onProgress(t.cases);
      }
    }),
  );
  return t;
}

/** The requests of a run: the same seed gives the same requests. */
export function generate(routes: readonly Route[], key: string | undefined, cases: number, seed: number, opts: FuzzOptions = {}): FuzzRequest[] {
  return fc.sample(requestArbitrary(routes, key, opts), { numRuns: cases, seed });
}
