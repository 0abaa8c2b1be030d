import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import cron from 'node-cron';
import { z } from 'zod';
import { RUNTIME_POLICIES } from './runtime/policies';

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: 1024 ** 3, gib: 1024 ** 3, ti: 1024 ** 4, tib: 1024 ** 4,
};

/** Parses `1073741824`, `512MiB`, `2GiB`, `1.5GB`; returns NaN when it cannot. */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return NaN;
  const unit = UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? NaN : Math.floor(Number(m[1]) * unit);
}

/** A byte count; with `zeroIsOff`, 0 too (no limit). */
const bytes = (what: string, example: string, opts: { zeroIsOff?: boolean; zeroMeans?: string } = {}) =>
  z.string().transform((s, ctx) => {
    if (opts.zeroIsOff && s.trim() === '0') return 0;
    const n = parseBytes(s);
    if (!(n > 0)) {
      const off = opts.zeroIsOff ? ` (or 0: ${opts.zeroMeans ?? 'no limit'})` : '';
      ctx.addIssue({ code: 'custom', message: `${what} must be a positive byte count like ${example}${off} (units B, KB, MB, GB, KiB, MiB, GiB), got "${s}"` });
      return z.NEVER;
    }
    return n;
  });

const int = (what: string, min: number, max: number) =>
  z.string().transform((s, ctx) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `${what} must be an integer from ${min} to ${max}, got "${s}"` });
      return z.NEVER;
    }
    return n;
  });

const EnvSchema = z.object({
  REDIS_URL: z.string().url({ message: 'REDIS_URL must be a URL like redis://127.0.0.1:6379' }).optional(),
  PORT: int('PORT', 0, 65535).default(8080),
  GRPC_PORT: int('GRPC_PORT', 0, 65535).default(8081),
  HOST: z.string().min(1).optional(),
  MEMORY_BUDGET: bytes('MEMORY_BUDGET', '2GiB').default(2 * 1024 ** 3),
  PARK_BUDGET: bytes('PARK_BUDGET', '64MiB', { zeroIsOff: true, zeroMeans: 'park none' }).optional(),
  PREPARK: z.enum(['on', 'off'], { message: 'PREPARK must be on or off' }).default('on'),
  EVICTION_POLICY: z
    .enum(RUNTIME_POLICIES, { message: `EVICTION_POLICY must be one of ${RUNTIME_POLICIES.join(', ')}` })
    .default('cremebrulee'),
  DATA_DIR: z.string().min(1).default('./data'),
  MODEL_STORE: z
    .string()
    .regex(
      /^(file:\/\/.+|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?|[^:]+)$/,
      'MODEL_STORE must be file://DIR (default: file://DATA_DIR/models) or s3://bucket/prefix (a bucket name of 3-63 lower-case letters, digits, dots or hyphens)',
    )
    .optional(),
  // The standard AWS variables, for an s3:// MODEL_STORE (the SDK's own chain covers the rest:
  // AWS_PROFILE, web identity, instance roles).
  AWS_ENDPOINT_URL: z.string().regex(/^https?:\/\/[^/\s]+(\/\S*)?$/, 'AWS_ENDPOINT_URL must be a URL like http://minio:9000').optional(),
  AWS_ENDPOINT_URL_S3: z.string().regex(/^https?:\/\/[^/\s]+(\/\S*)?$/, 'AWS_ENDPOINT_URL_S3 must be a URL like http://minio:9000').optional(),
  AWS_REGION: z.string().regex(/^[a-z0-9-]{2,32}$/, 'AWS_REGION must be a region name like us-east-1').optional(),
  AWS_DEFAULT_REGION: z.string().regex(/^[a-z0-9-]{2,32}$/, 'AWS_DEFAULT_REGION must be a region name like us-east-1').optional(),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  AWS_SESSION_TOKEN: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: z.enum(['0', '1', 'true', 'false'], { message: 'S3_FORCE_PATH_STYLE must be true or false' }).optional(),
  MODEL_CACHE_BYTES: bytes('MODEL_CACHE_BYTES', '20GiB').default(20 * 1024 ** 3),
  ROLE: z.enum(['all', 'gateway', 'worker'], { message: 'ROLE must be all, gateway or worker' }).default('all'),
  API_KEY: z.string().min(1).optional(),
  INVOKE_API_KEY: z.string().min(1).optional(),
  METRICS_AUTH: z.enum(['open', 'key'], { message: 'METRICS_AUTH must be open or key' }).default('open'),
  POPULARITY_CRON: z
    .string()
    .refine((s) => cron.validate(s), { message: 'POPULARITY_CRON must be a node-cron expression, for example "*/10 * * * * *" (every 10 s)' })
    .default('*/10 * * * * *'),
  KEY_PREFIX: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'KEY_PREFIX must be 1-64 letters, digits, _ or -')
    .default('brulee'),
  NODE_ID: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/, 'NODE_ID must be 1-63 letters, digits, _ or -')
    .optional(),
  MAX_MODEL_BYTES: bytes('MAX_MODEL_BYTES', '512MiB').default(512 * 1024 ** 2),
  MAX_REQUEST_BYTES: bytes('MAX_REQUEST_BYTES', '64MiB').default(64 * 1024 ** 2),
  MAX_OUTPUT_BYTES: bytes('MAX_OUTPUT_BYTES', '64MiB').default(64 * 1024 ** 2),
  MAX_PENDING_REQUEST_BYTES: bytes('MAX_PENDING_REQUEST_BYTES', '256MiB').default(256 * 1024 ** 2),
  MAX_QUEUED_PER_FUNCTION: int('MAX_QUEUED_PER_FUNCTION', 0, 10_000_000).default(1000),
  MAX_QUEUED_INPUT_BYTES: bytes('MAX_QUEUED_INPUT_BYTES', '1GiB', { zeroIsOff: true }).default(1024 ** 3),
  INVOKE_TIMEOUT_MS: int('INVOKE_TIMEOUT_MS', 1, 3_600_000).default(30_000),
  REQUEST_READ_TIMEOUT_MS: int('REQUEST_READ_TIMEOUT_MS', 1000, 3_600_000).default(60_000),
  HEADERS_READ_TIMEOUT_MS: int('HEADERS_READ_TIMEOUT_MS', 1000, 600_000).default(10_000),
  DRAIN_TIMEOUT_MS: int('DRAIN_TIMEOUT_MS', 0, 600_000).default(30_000),
  WORKER_CONCURRENCY: int('WORKER_CONCURRENCY', 1, 1024).default(16),
  HEARTBEAT_MS: int('HEARTBEAT_MS', 50, 60_000).default(1000),
  REDIS_WAIT_MS: int('REDIS_WAIT_MS', 0, 3_600_000).optional(),
  RESTART_GRACE_MS: int('RESTART_GRACE_MS', 0, 3_600_000).optional(),
  MAX_NODE_DEATHS_PER_JOB: int('MAX_NODE_DEATHS_PER_JOB', 0, 1000).default(2),
  JOB_LOCK_MS: int('JOB_LOCK_MS', 500, 3_600_000).default(30_000),
  REGISTRATION_LEASE_MS: int('REGISTRATION_LEASE_MS', 1000, 3_600_000).optional(),
  TTL_MS: int('TTL_MS', 1, 86_400_000).default(600_000),
  ORT_OFF_THREAD: z.enum(['auto', 'always', 'never'], { message: 'ORT_OFF_THREAD must be auto, always or never' }).default('auto'),
  ORT_OFF_THREAD_MS: int('ORT_OFF_THREAD_MS', 0, 3_600_000).default(10),
  ORT_OFF_THREAD_LOAD_MS: int('ORT_OFF_THREAD_LOAD_MS', 0, 3_600_000).default(100),
  ORT_OFF_THREAD_THREADS: int('ORT_OFF_THREAD_THREADS', 1, 64).default(1),
  TRACE_RECORD: z.enum(['0', '1', 'true', 'false']).default('0').transform((v) => v === '1' || v === 'true'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/**
 * Every environment variable brulee reads (the AWS ones for an s3:// store included), for tools
 * that check a deployment's environment; anything else in the environment is ignored.
 */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(EnvSchema.shape);

/** How to reach an s3:// model store (the same shape as `store/`'s S3StoreOptions). */
export interface S3Config {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

export interface Config {
  /** Redis to use; absent means "127.0.0.1:6379 if it answers, else a private redis-server". */
  redisUrl: string | undefined;
  port: number;
  /** Port of the KServe v2 gRPC service (gateway roles). */
  grpcPort: number;
  host: string;
  memoryBudget: number;
  /**
   * The most bytes sessions of evicted models (mapped, or small and kept whole) may hold while
   * parked (`PARK_BUDGET`; 0: none; runtime/parked.ts). Undefined: the node's default, 5 % of
   * `memoryBudget`.
   */
  parkBudget?: number;
  /** Pre-park registered mapped models in idle time (`PREPARK`, runtime/prepark.ts). */
  prePark: boolean;
  evictionPolicy: (typeof RUNTIME_POLICIES)[number];
  dataDir: string;
  /** Where model bytes live (`file://DIR` or `s3://bucket/prefix`); see store/. */
  modelStore: string;
  /** How to reach an s3:// model store, from the AWS variables. */
  s3: S3Config;
  /** Local disk cache of model bytes in this process (`DATA_DIR/model-cache`), bytes. */
  modelCacheBytes: number;
  role: 'all' | 'gateway' | 'worker';
  /** Guards changes (register, delete, load, unload); with INVOKE_API_KEY unset, only those. */
  apiKey: string | undefined;
  /** Guards reads and invocations when set (API_KEY is accepted there too). */
  invokeApiKey: string | undefined;
  /** `/metrics` open (Prometheus' default) or behind the invoke key. */
  metricsAuth: 'open' | 'key';
  /** HOST was not set: loopback chosen because no key is set (server.ts says how to open it up). */
  hostDefaulted: boolean;
  popularityCron: string;
  nodeId: string;
  /** Namespace of every Redis key (several clusters can share one Redis). */
  keyPrefix: string;
  maxModelBytes: number;
  maxRequestBytes: number;
  /** Bytes the output tensors of one invocation may take (422 OUTPUT_TOO_LARGE past it). */
  maxOutputBytes: number;
  /** Bytes of request bodies a gateway reads and holds at once (503 with Retry-After past it). */
  maxPendingRequestBytes: number;
  /** Invocations of one function waiting or running at once, cluster-wide (429 QUEUE_FULL past it); 0: no limit. */
  maxQueuedPerFunction: number;
  /** Input bytes of invocations accepted and not yet answered, cluster-wide, all functions (503 OVERLOADED past it); 0: no limit. */
  maxQueuedInputBytes: number;
  invokeTimeoutMs: number;
  /** Time to receive a whole request (headers and body) before a 408, ms. */
  requestReadTimeoutMs: number;
  /** Time to receive a request's headers before a 408, ms. */
  headersReadTimeoutMs: number;
  /** On SIGTERM, how long accepted calls get to finish, ms. */
  drainTimeoutMs: number;
  workerConcurrency: number;
  /** Node heartbeat period, ms; a node silent for 3 beats is declared dead. The same on every process of a cluster. */
  heartbeatMs: number;
  /**
   * How long after a node's death a call it had taken (and, when no live node can take them, the
   * async calls left on its queue) is kept for a node restarted under the same NODE_ID before it is
   * answered 503 / failed NO_NODE_AVAILABLE (`RESTART_GRACE_MS`; queue/dispatcher.ts ORPHAN_GRACE).
   * Undefined: `ORPHAN_GRACE` dead-after times (12 s at the default `heartbeatMs`). The same on every
   * process of a cluster.
   */
  restartGraceMs?: number;
  /**
   * Nodes that may die while running one job before it is not run again (its caller gets 500
   * NODE_CRASHED; queue/reaper.ts); 0: no limit. The same on every process of a cluster. @default 2
   */
  maxNodeDeathsPerJob: number;
  /**
   * How long a node's hold on a job of its BullMQ queue (async invocations, loads, unloads) lasts
   * unless renewed (every half of it while the node's event loop runs; BullMQ's lockDuration), and
   * how often the node looks for jobs whose hold lapsed (its stalledInterval), which it runs again:
   * those of a predecessor under the same NODE_ID after a restart, or its own after its event loop
   * was blocked longer than this. @default 30 000
   */
  jobLockMs: number;
  /**
   * How long a registration's or deletion's hold on a function's name and its bytes lasts unless
   * renewed (every third of it while it runs): one whose process died holds them this long at most
   * (`REGISTRATION_LEASE_MS`; functions/model-bytes.ts). Undefined: REGISTRATION_LEASE_MS, 15 s.
   */
  registrationLeaseMs?: number;
  /**
   * How long start-up waits for Redis to answer before it gives up (exit 1, naming REDIS_URL):
   * longer where Redis may start after brulee (compose, Kubernetes). Undefined: REDIS_WAIT_MS, 10 s.
   */
  redisWaitMs?: number;
  ttlMs: number;
  /**
   * Where a node loads and runs a model's onnxruntime session: `auto` puts it in the node's
   * session host thread (runtime/session-host.ts) when registration measured its run at
   * `offThreadMs` or more or its load at `offThreadLoadMs` or more, or a run in this node took
   * `offThreadMs` or more (from its next load), so that the main thread (HTTP, heartbeats, Redis)
   * goes on while it computes; models with short runs stay on the main thread. `always`, `never`:
   * every model. @default 'auto'
   */
  offThread: 'auto' | 'always' | 'never';
  /** `offThread`'s threshold for a run, ms (`ORT_OFF_THREAD_MS`). @default 10 */
  offThreadMs: number;
  /** `offThread`'s threshold for a load, ms (`ORT_OFF_THREAD_LOAD_MS`). @default 100 */
  offThreadLoadMs: number;
  /**
   * Threads of a node's session host (`ORT_OFF_THREAD_THREADS`): sessions in two threads run at
   * once; each thread holds ~9 MiB and takes 40-100 ms to start, at the node's start. @default 1
   */
  offThreadThreads: number;
  traceRecord: boolean;
  logLevel: string;
}

/**
 * A URL as logs and messages may show it: its password (REDIS_URL=redis://:secret@host, as managed
 * Redis services hand them out) replaced by `***`.
 */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses the environment once, at start-up; throws ConfigError listing every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = EnvSchema.safeParse(present);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = r.data;
  const problems: string[] = [];
  if ((e.AWS_ACCESS_KEY_ID === undefined) !== (e.AWS_SECRET_ACCESS_KEY === undefined)) {
    problems.push('  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: set both or neither (neither: the SDK looks for a profile, web identity or instance role)');
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
  const endpoint = e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL;
  const region = e.AWS_REGION ?? e.AWS_DEFAULT_REGION;
  const s3: S3Config = {
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    ...(e.S3_FORCE_PATH_STYLE ? { forcePathStyle: e.S3_FORCE_PATH_STYLE === '1' || e.S3_FORCE_PATH_STYLE === 'true' } : {}),
    ...(e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY
      ? { credentials: { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY, ...(e.AWS_SESSION_TOKEN ? { sessionToken: e.AWS_SESSION_TOKEN } : {}) } }
      : {}),
  };
  return {
    redisUrl: e.REDIS_URL,
    port: e.PORT,
    grpcPort: e.GRPC_PORT,
    // With no key, nothing guards the API: listen on loopback unless told otherwise.
    host: e.HOST ?? (e.API_KEY || e.INVOKE_API_KEY ? '0.0.0.0' : '127.0.0.1'),
    hostDefaulted: e.HOST === undefined && !e.API_KEY && !e.INVOKE_API_KEY,
    memoryBudget: e.MEMORY_BUDGET,
    ...(e.PARK_BUDGET === undefined ? {} : { parkBudget: e.PARK_BUDGET }),
    prePark: e.PREPARK === 'on',
    evictionPolicy: e.EVICTION_POLICY,
    dataDir: resolve(e.DATA_DIR),
    modelStore: e.MODEL_STORE ?? pathToFileURL(resolve(e.DATA_DIR, 'models')).href,
    s3,
    modelCacheBytes: e.MODEL_CACHE_BYTES,
    role: e.ROLE,
    apiKey: e.API_KEY,
    invokeApiKey: e.INVOKE_API_KEY,
    metricsAuth: e.METRICS_AUTH,
    popularityCron: e.POPULARITY_CRON,
    // Unset, the id is the host name plus a random suffix: two processes on one host never merge.
    nodeId: e.NODE_ID ?? `${hostname().replace(/[^a-zA-Z0-9_-]/g, '-').slice(0, 56)}-${randomBytes(3).toString('hex')}`,
    keyPrefix: e.KEY_PREFIX,
    maxModelBytes: e.MAX_MODEL_BYTES,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    maxOutputBytes: e.MAX_OUTPUT_BYTES,
    maxPendingRequestBytes: e.MAX_PENDING_REQUEST_BYTES,
    maxQueuedPerFunction: e.MAX_QUEUED_PER_FUNCTION,
    maxQueuedInputBytes: e.MAX_QUEUED_INPUT_BYTES,
    invokeTimeoutMs: e.INVOKE_TIMEOUT_MS,
    requestReadTimeoutMs: e.REQUEST_READ_TIMEOUT_MS,
    headersReadTimeoutMs: e.HEADERS_READ_TIMEOUT_MS,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    workerConcurrency: e.WORKER_CONCURRENCY,
    heartbeatMs: e.HEARTBEAT_MS,
    ...(e.RESTART_GRACE_MS === undefined ? {} : { restartGraceMs: e.RESTART_GRACE_MS }),
    maxNodeDeathsPerJob: e.MAX_NODE_DEATHS_PER_JOB,
    jobLockMs: e.JOB_LOCK_MS,
    ...(e.REGISTRATION_LEASE_MS === undefined ? {} : { registrationLeaseMs: e.REGISTRATION_LEASE_MS }),
    ...(e.REDIS_WAIT_MS === undefined ? {} : { redisWaitMs: e.REDIS_WAIT_MS }),
    ttlMs: e.TTL_MS,
    offThread: e.ORT_OFF_THREAD,
    offThreadMs: e.ORT_OFF_THREAD_MS,
    offThreadLoadMs: e.ORT_OFF_THREAD_LOAD_MS,
    offThreadThreads: e.ORT_OFF_THREAD_THREADS,
    traceRecord: e.TRACE_RECORD,
    logLevel: e.LOG_LEVEL,
  };
}
