import type { Http2Server, ServerHttp2Session } from 'node:http2';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from 'pino';
import { BruleeError, grpcStatusOf } from '../../errors';
import { asBruleeError } from '../http/errors';
import { payloadTooLarge } from '../http/parse';
import { ARRAY_OF, type NumericType, type Tensor, type TypedArray } from '../../queue/wire';
import type { DataPlane } from '../dataplane';
import type { Authorize } from '../auth';
import { inputGivenTwice } from '../signature';
import { checkShape, decodeRaw, elementTypeOf, rawOf, requestedOutputs, tritonModelConfig, V2_DATATYPE, v2TensorMetadata } from '../v2-tensors';

/**
 * The KServe v2 gRPC front end (`inference.GRPCInferenceService`, see inference.proto). Like the
 * REST routes, it only decodes a request, calls the data plane and encodes the answer; errors
 * become gRPC status codes through the same table as HTTP statuses (errors.ts).
 */

const PROTO = fileURLToPath(new URL('./inference.proto', import.meta.url));

/** int64/uint64 travel as decimal strings (exact), bytes as Buffers, enums as names. */
const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export interface GrpcOptions {
  dataPlane: DataPlane;
  log: Logger;
  /** Largest message accepted, bytes (the REST side's MAX_REQUEST_BYTES). */
  maxRequestBytes: number;
}

export interface GrpcServer {
  /** The port bound (useful with port 0). */
  port: number;
  /** Stops taking calls and waits for those in flight, up to `graceMs`, then cuts the rest. */
  close(graceMs?: number): Promise<void>;
}

type Contents = Record<string, unknown[] | undefined>;
interface InferInput {
  name: string;
  datatype: string;
  shape: string[];
  contents: Contents | null;
}
interface InferRequest {
  model_name: string;
  model_version: string;
  id: string;
  inputs: InferInput[];
  outputs: Array<{ name: string; parameters?: Record<string, unknown> | null }>;
  raw_input_contents: Buffer[];
}

/** Which `InferTensorContents` field holds each element type, and how a value is read from it. */
const CONTENTS_FIELD: Record<string, { field: string; read: (v: unknown) => number | bigint }> = {
  bool: { field: 'bool_contents', read: (v) => (v ? 1 : 0) },
  int8: { field: 'int_contents', read: Number },
  int16: { field: 'int_contents', read: Number },
  int32: { field: 'int_contents', read: Number },
  uint8: { field: 'uint_contents', read: Number },
  uint16: { field: 'uint_contents', read: Number },
  uint32: { field: 'uint_contents', read: Number },
  int64: { field: 'int64_contents', read: (v) => BigInt(v as string) },
  uint64: { field: 'uint64_contents', read: (v) => BigInt(v as string) },
  float32: { field: 'fp32_contents', read: Number },
  float64: { field: 'fp64_contents', read: Number },
};

const INT_RANGE: Record<string, [number, number]> = { int8: [-128, 127], int16: [-32768, 32767], uint8: [0, 255], uint16: [0, 65535] };

function decodeInput(i: InferInput, raw: Buffer | undefined): Tensor {
  // The typed contents fields that hold values: one only, and none beside raw contents (as Triton
  // answers), rather than data silently ignored.
  const given = Object.entries(i.contents ?? {}).filter(([, v]) => Array.isArray(v) && v.length > 0).map(([k]) => k);
  if (raw) {
    if (given.length > 0) throw new BruleeError('INVALID_INPUT', `input "${i.name}": data in both raw_input_contents and contents.${given[0]}; send it in one of them`);
    return decodeRaw(i.name, i.datatype, i.shape.map(Number), raw);
  }
  const type = elementTypeOf(i.name, i.datatype);
  const dims = checkShape(i.name, i.shape.map(Number));
  const how = CONTENTS_FIELD[type];
  if (!how) {
    throw new BruleeError('INVALID_INPUT', `input "${i.name}": ${i.datatype} has no typed contents field; send it in raw_input_contents`);
  }
  const other = given.find((f) => f !== how.field);
  if (other) throw new BruleeError('INVALID_INPUT', `input "${i.name}": ${i.datatype} data goes in contents.${how.field}, not contents.${other}`);
  const values = i.contents?.[how.field] ?? [];
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) {
    throw new BruleeError('INVALID_INPUT', `input "${i.name}": contents.${how.field} has ${values.length} elements, but shape ${JSON.stringify(dims)} needs ${count}`);
  }
  const range = INT_RANGE[type];
  // No typed contents field for BYTES here (how is undefined): strings come in raw_input_contents.
  const numeric = type as NumericType;
  const data = new ARRAY_OF[numeric](count) as TypedArray & { [k: number]: number | bigint };
  for (let k = 0; k < count; k++) {
    const v = how.read(values[k]);
    if (range && (typeof v !== 'number' || v < range[0] || v > range[1])) {
      throw new BruleeError('INVALID_INPUT', `input "${i.name}": element ${k} is ${String(v)}, out of ${type}'s range ${range[0]} to ${range[1]}`);
    }
    data[k] = v;
  }
  return { type: numeric, dims, data };
}

/**
 * The one place errors become gRPC statuses: the code errors.ts's table gives, the message, and
 * the error's code in the `brulee-error-code` trailer (REST's `error.code`).
 */
function statusOf(err: BruleeError): grpc.StatusObject {
  const metadata = new grpc.Metadata();
  metadata.set('brulee-error-code', err.code);
  return { code: grpcStatusOf(err.code), details: err.message, metadata };
}

/** grpc-js's refusal of a message over grpc.max_receive_message_length (stream-decoder.js, server-interceptors.js). */
const OVER_LIMIT = /^Received message (?:larger than max \((\d+) vs|that decompresses to a size larger than)/;
/** grpc-js's INTERNAL statuses for a message it could not read (server-interceptors.js): the client's fault, not ours. */
const UNREADABLE: readonly [RegExp, string][] = [
  [/^Error deserializing request/, 'is not a protobuf of its request type in inference.proto (KServe v2 / Triton GRPCInferenceService); build it from that file'],
  [/^Failed to decompress message/, 'could not be decompressed with the grpc-encoding it names; send it uncompressed, or compressed as its header says'],
];

/**
 * grpc-js refuses some messages itself, before any handler, with its own text and no
 * `brulee-error-code`: one over `grpc.max_receive_message_length` (RESOURCE_EXHAUSTED, 'Received
 * message larger than max (N vs M)': nothing said which setting raises the limit), and one it
 * cannot decode or inflate (INTERNAL, 'Error deserializing request': a server fault to the client,
 * which would retry it). This turns the first into PAYLOAD_TOO_LARGE (as REST's 413 for a body
 * over MAX_REQUEST_BYTES), naming the limit and the size received, and the others into BAD_REQUEST
 * (INVALID_ARGUMENT, as REST's 400 for a body that is not JSON), saying what to send. grpc-js sends
 * them from its innermost call object, which is the `call` the first interceptor is given: its
 * sendStatus is wrapped on the instance, so grpc-js's own `this.sendStatus` goes through it.
 */
function refusals(maxRequestBytes: number): grpc.ServerInterceptor {
  return (method, call) => {
    const send = call.sendStatus.bind(call);
    const what = () => `${method.path.slice(method.path.lastIndexOf('/') + 1)} message`;
    call.sendStatus = (status) => {
      const details = status.details ?? '';
      if (status.code === grpc.status.RESOURCE_EXHAUSTED) {
        const m = OVER_LIMIT.exec(details);
        if (m) return send(statusOf(payloadTooLarge(what(), maxRequestBytes, 'MAX_REQUEST_BYTES', m[1] === undefined ? undefined : Number(m[1]))));
      } else if (status.code === grpc.status.INTERNAL) {
        const fix = UNREADABLE.find(([re]) => re.test(details))?.[1];
        if (fix !== undefined) return send(statusOf(new BruleeError('BAD_REQUEST', `the ${what()} ${fix}`)));
      }
      send(status);
    };
    return new grpc.ServerInterceptingCall(call);
  };
}

/** Runs a handler and turns what it throws into a gRPC status (the same codes as HTTP's table). */
function unary<Req, Res>(log: Logger, f: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const answer = async () => {
      let res: Res;
      try {
        res = await f(call.request, call);
      } catch (e) {
        callback(statusOf(asBruleeError(e, log)));
        return;
      }
      callback(null, res);
    };
    answer().catch((e: unknown) => {
      // Never leave a call unanswered, even when answering itself failed.
      log.error({ err: e }, 'gRPC handler failed while answering');
      callback({ code: grpc.status.INTERNAL, details: 'internal error; see the server log' });
    });
  };
}

/** `Authorization: Bearer <key>` from a call's metadata (the header gRPC clients send). */
function bearer(call: grpc.ServerUnaryCall<unknown, unknown>): string | undefined {
  const v = call.metadata.get('authorization')[0];
  return typeof v === 'string' ? v : v?.toString();
}

/** Builds the service's handlers over the data plane. */
function handlers(o: GrpcOptions & { authorize: Authorize }): grpc.UntypedServiceImplementation {
  const { dataPlane: dp, log, authorize } = o;
  return {
    // Probes, open as /v2/health/live and /v2/health/ready are; the rest need the invoke key when
    // it is set, as their REST twins do (ModelReady answered NOT_FOUND or ready to anyone: which
    // function names exist, to a caller REST turns away).
    ServerLive: unary(log, async () => ({ live: true })),
    ServerReady: unary(log, async () => ({ ready: await dp.ready() })),
    ModelReady: unary<{ name: string; version: string }, object>(log, async (req, call) => {
      authorize('invoke', bearer(call));
      await dp.get(req.name, req.version || undefined);
      return { ready: await dp.ready() };
    }),
    ServerMetadata: unary(log, async (_req, call) => {
      authorize('invoke', bearer(call));
      return { name: 'brulee', version: SERVER_VERSION, extensions: EXTENSIONS };
    }),
    ModelMetadata: unary<{ name: string; version: string }, object>(log, async (req, call) => {
      authorize('invoke', bearer(call));
      const fn = await dp.get(req.name, req.version || undefined);
      return {
        name: fn.name,
        versions: [String(fn.version)],
        platform: 'onnxruntime_onnx',
        inputs: fn.signature.inputs.map(v2TensorMetadata),
        outputs: fn.signature.outputs.map(v2TensorMetadata),
      };
    }),
    ModelInfer: unary<InferRequest, object>(log, async (req, call) => {
      authorize('invoke', bearer(call));
      const raw = req.raw_input_contents;
      if (raw.length > 0 && raw.length !== req.inputs.length) {
        throw new BruleeError('INVALID_INPUT', `raw_input_contents has ${raw.length} entries, but there are ${req.inputs.length} inputs: send one per input, in order, or none`);
      }
      const inputs: Record<string, Tensor> = {};
      req.inputs.forEach((i, k) => {
        if (i.name in inputs) throw inputGivenTwice(i.name);
        inputs[i.name] = decodeInput(i, raw[k]);
      });
      const wanted = requestedOutputs(req.outputs).map((x) => x.name);
      const r = await dp.invoke(req.model_name, inputs, { outputs: wanted, version: req.model_version || undefined });
      const order = wanted.length > 0 ? wanted : r.fn.signature.outputs.map((x) => x.name);
      const names = order.filter((n) => r.outputs[n]);
      return {
        model_name: r.fn.name,
        model_version: String(r.fn.version),
        id: req.id,
        outputs: names.map((n) => ({ name: n, datatype: V2_DATATYPE[r.outputs[n]!.type], shape: r.outputs[n]!.dims.map(String) })),
        // Views of the outputs' memory: protobufjs copies each into the message once, so no copy here.
        raw_output_contents: names.map((n) => {
          const raw = rawOf(r.outputs[n]!);
          return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
        }),
      };
    }),
    ModelConfig: unary<{ name: string; version: string }, object>(log, async (req, call) => {
      authorize('invoke', bearer(call));
      const fn = await dp.get(req.name, req.version || undefined);
      const config = tritonModelConfig(fn.name, fn.signature);
      return { config: { ...config, input: config.input.map((i) => ({ ...i, dims: i.dims.map(String) })), output: config.output.map((i) => ({ ...i, dims: i.dims.map(String) })) } };
    }),
    ModelStatistics: unary<{ name: string; version: string }, object>(log, async (req, call) => {
      authorize('invoke', bearer(call));
      return dp.modelStatistics(req.name || undefined, req.version || undefined);
    }),
    RepositoryIndex: unary<{ ready: boolean }, object>(log, async (req, call) => {
      authorize('invoke', bearer(call));
      return { models: await dp.repositoryIndex({ ready: req.ready }) };
    }),
    RepositoryModelLoad: unary<{ model_name: string }, object>(log, async (req, call) => {
      authorize('admin', bearer(call));
      await dp.load(req.model_name);
      return {};
    }),
    RepositoryModelUnload: unary<{ model_name: string }, object>(log, async (req, call) => {
      authorize('admin', bearer(call));
      await dp.unload(req.model_name);
      return {};
    }),
  };
}

/**
 * HTTP/2 flow-control window the server grants each connection and stream, bytes. Node's default
 * (65 535, HTTP/2's) is smaller than one PP-OCR cls request (110 KB): the client sends 64 KB, then
 * waits for the server's WINDOW_UPDATE, a round trip between two processes mid-request.
 */
export const FLOW_CONTROL_WINDOW = 4 << 20;

/**
 * Grants every new connection FLOW_CONTROL_WINDOW, for the connection and for each stream.
 * grpc-js takes no option for it, so this reaches its http2 servers (a private field, there in
 * grpc-js 1.14; without it nothing changes but the windows).
 */
function widenFlowControl(server: grpc.Server): void {
  const http2Servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  for (const s of http2Servers?.keys() ?? []) {
    s.on('session', (session: ServerHttp2Session) => {
      session.settings({ initialWindowSize: FLOW_CONTROL_WINDOW });
      session.setLocalWindowSize(FLOW_CONTROL_WINDOW);
    });
  }
}

const SERVER_VERSION = '0.1.0';
/** The protocol extensions the gRPC service serves. */
const EXTENSIONS = ['model_repository', 'model_configuration', 'statistics'];

/**
 * Starts the gRPC service on `host:port` (port 0: any free port).
 * @throws when the port cannot be bound (its message names the address).
 */
export async function startGrpcServer(o: GrpcOptions & { authorize: Authorize; host: string; port: number }): Promise<GrpcServer> {
  const def = protoLoader.loadSync(PROTO, LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': o.maxRequestBytes,
    'grpc.max_send_message_length': -1,
    // Channelz (gRPC's introspection service, which brulee does not serve) tracks every call:
    // off, a PP-OCR cls call costs ~0.1 ms less (bench:rest's grpc floor, 110 KB, one caller).
    'grpc.enable_channelz': 0,
    interceptors: [refusals(o.maxRequestBytes)],
  });
  server.addService(pkg.inference.GRPCInferenceService.service, handlers(o));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(new Error(`gRPC cannot listen on ${o.host}:${o.port}: ${e.message}`)) : resolve(p)));
  });
  widenFlowControl(server);
  let closing: Promise<void> | undefined;
  return {
    port,
    close(graceMs = 30_000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}
