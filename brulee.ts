import { join } from 'node:path';
import type { Hono } from 'hono';
import pino, { type Logger } from 'pino';
import type { Config } from './config';
import { authorizer, type Authorize } from './functions/auth';
import { DataPlane } from './functions/dataplane';
import { createApp } from './functions/http/app';
import { FunctionRegistry, modelRefOf, readFunction, readFunctions } from './functions/registry';
import { TraceRecorder } from './functions/trace-recorder';
import { RedisClock } from './queue/clock';
import { closeRedis, createRedis, waitForRedis } from './queue/connection';
import { Dispatcher } from './queue/dispatcher';
import { keys as makeKeys } from './queue/keys';
import { failoverCounts, MISSED_BEATS } from './queue/nodes';
import { Reaper } from './queue/reaper';
import { createModelStore, LocalModels, type ModelStore } from './store';
import { startPopularityCron } from './runtime/cron';
import { Metrics } from './runtime/metrics';
import { closeInOrder } from './runtime/close';
import { RuntimeNode } from './runtime/node';

export interface Brulee {
  app: Hono;
  /** What every front end calls. */
  dataPlane: DataPlane;
  /** The key check every front end shares. */
  authorize: Authorize;
  /** Where model bytes live. */
  store: ModelStore;
  /** Present when ROLE is `all` or `worker`. */
  node?: RuntimeNode;
  metrics: Metrics;
  log: Logger;
  /**
   * Drains and closes everything; idempotent. Calls already accepted get up to `drainMs` to
   * finish (their jobs still run on this node) before the node stops taking jobs; new requests
   * meanwhile get 503 SHUTTING_DOWN. Bounded in every state (Redis unreachable included): at most
   * about `drainMs` + 25 s, each close step being forced past its own limit.
   */
  close(opts?: { drainMs?: number }): Promise<void>;
}

export interface BruleeDeps {
  log?: Logger;
  /** The process is this node's alone (server.ts, ROLE=worker): its warm pool charges the process's overhead too (`RuntimeNodeOptions.chargeProcess`). */
  chargeProcess?: boolean;
}

/**
 * Wires one brulee process from its configuration: the gateway (Hono app, registry, dispatcher)
 * and, by ROLE, a runtime node; plus the popularity cron. `config.redisUrl` must be set here
 * (server.ts resolves it, starting a private redis-server when needed).
 */
export async function createBrulee(config: Config, deps: BruleeDeps = {}): Promise<Brulee> {
  if (!config.redisUrl) throw new Error('createBrulee: config.redisUrl is required');
  const redisUrl = config.redisUrl;
  const log = deps.log ?? pino({ level: config.logLevel });
  const k = makeKeys(config.keyPrefix);
  // Request/response commands fail fast while Redis is away: the HTTP answer is a 503, not a hang.
  const redis = createRedis(redisUrl, { name: 'brulee', failFast: true });
  await waitForRedis(redis, config.redisWaitMs ?? 10_000);
  const metrics = new Metrics();
  metrics.failover(() => failoverCounts(redis, k));
  // One clock for deadlines across machines: Redis TIME (queue/clock.ts).
  const clock = new RedisClock(redis);
  await clock.start();
  const deadAfterMs = config.heartbeatMs * MISSED_BEATS;
  const store = createModelStore(config.modelStore, config.s3);
  const models = new LocalModels({ store, dir: join(config.dataDir, 'model-cache'), maxBytes: config.modelCacheBytes });

  let node: RuntimeNode | undefined;
  if (config.role !== 'gateway') {
    node = new RuntimeNode({
      id: config.nodeId,
      redisUrl,
      redis,
      keys: k,
      models,
      budgetBytes: config.memoryBudget,
      ...(config.parkBudget === undefined ? {} : { parkBytes: config.parkBudget }),
      policy: config.evictionPolicy,
      ttlMs: config.ttlMs,
      concurrency: config.workerConcurrency,
      maxOutputBytes: config.maxOutputBytes,
      heartbeatMs: config.heartbeatMs,
      maxDeathsPerJob: config.maxNodeDeathsPerJob,
      jobLockMs: config.jobLockMs,
      offThread: { mode: config.offThread, limits: { runMs: config.offThreadMs, loadMs: config.offThreadLoadMs }, threads: config.offThreadThreads },
      chargeProcess: deps.chargeProcess === true && config.role === 'worker',
      findFunction: (name) => readFunction(redis, k, name),
      prePark: config.prePark,
      listFunctions: async () => (await readFunctions(redis, k)).map((f) => ({ model: modelRefOf(f), mapped: f.profile.artifact?.form === 'mapped' })),
      clock,
      metrics,
      log: log.child({ node: config.nodeId }),
    });
    await node.start();
  }

  const grace = config.restartGraceMs === undefined ? {} : { restartGraceMs: config.restartGraceMs };
  const dispatcher = new Dispatcher({ redisUrl, redis, keys: k, clock, deadAfterMs, ...grace, log, ...(node ? { local: node } : {}) });
  // Every process (gateway or node) offers to run failover; a Redis lock lets one run at a time.
  const reaper = new Reaper({ redis, keys: k, dispatcher, log, everyMs: config.heartbeatMs, deadAfterMs, ...grace, maxDeathsPerJob: config.maxNodeDeathsPerJob });
  reaper.start();
  metrics.onCollect(async () => {
    const { total } = await dispatcher.depth();
    for (const [state, n] of Object.entries(total)) metrics.queueDepth.set({ state }, n);
  });
  const registry = new FunctionRegistry({
    redis,
    keys: k,
    models,
    budgets: async () => (await dispatcher.nodes(true)).map((n) => n.budgetBytes),
    log,
    maxInputBytes: config.maxRequestBytes,
    ...(config.registrationLeaseMs === undefined ? {} : { leaseMs: config.registrationLeaseMs }),
  });
  await registry.watch(createRedis(redisUrl, { name: 'brulee-registry-sub' }));
  const recorder = config.traceRecord ? new TraceRecorder(config.dataDir) : undefined;
  if (recorder) await recorder.writeCatalog(await registry.list());
  const dataPlane = new DataPlane({ redis, keys: k, registry, dispatcher, defaultTimeoutMs: config.invokeTimeoutMs, maxQueuedPerFunction: config.maxQueuedPerFunction, maxQueuedInputBytes: config.maxQueuedInputBytes, log, ...(recorder ? { recorder } : {}) });
  metrics.functions(async () => (await dataPlane.list()).map((f) => f.name));
  const authorize = authorizer({ apiKey: config.apiKey, invokeApiKey: config.invokeApiKey });
  const requests = { inFlight: 0, draining: false };
  const app = createApp({
    dataPlane,
    metrics,
    log,
    authorize,
    maxModelBytes: config.maxModelBytes,
    maxRequestBytes: config.maxRequestBytes,
    maxPendingRequestBytes: config.maxPendingRequestBytes,
    requests,
    metricsOpen: config.metricsAuth === 'open',
  });
  const cron = startPopularityCron(config.popularityCron, redis, k, log);

  let closing: Promise<void> | undefined;
  const close = (opts: { drainMs?: number } = {}) =>
    (closing ??= (async () => {
      const drainMs = opts.drainMs ?? 0;
      const until = Date.now() + drainMs;
      // New requests get 503 SHUTTING_DOWN with Connection: close from here on; requests already
      // read (parsing, checking, waiting for their result) are answered first.
      requests.draining = true;
      while ((requests.inFlight > 0 || dispatcher.pending > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      // Every step is bounded: with Redis unreachable a quit would wait for it forever.
      await closeInOrder(
        [
          { name: 'popularity cron', run: () => cron.stop() },
          { name: 'reaper', run: () => reaper.close() },
          { name: 'runtime node', run: () => node?.close({ drainMs: Math.max(0, until - Date.now()) }), timeoutMs: Math.max(0, until - Date.now()) + 10_000 },
          { name: 'trace catalogue', run: () => dataPlane.writeTraceCatalog() },
          { name: 'dispatcher', run: () => dispatcher.close() },
          { name: 'clock', run: () => clock.stop() },
          { name: 'registry', run: () => registry.close() },
          { name: 'trace recorder', run: () => recorder?.close() },
          { name: 'redis', run: () => closeRedis(redis), force: () => redis.disconnect() },
        ],
        log,
      );
    })());
  return { app, dataPlane, authorize, store, ...(node ? { node } : {}), metrics, log, close };
}
