import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError } from '../errors';
import { modelKey, type Dispatcher, type InvokeRequest } from '../queue/dispatcher';
import type { Keys } from '../queue/keys';
import { fromWire, mapValues, toWire, type InvokeResult, type Tensor } from '../queue/wire';
import { readFunctionStats, recentEvictions, type FunctionStats } from '../runtime/stats';
import { modelRefOf, type FunctionMeta, type FunctionRegistry, type RegisterOptions, type RegisterResult } from './registry';
import { parseInputs } from './signature';
import type { TraceRecorder } from './trace-recorder';

export interface GatewayOptions {
  redis: Redis;
  keys: Keys;
  registry: FunctionRegistry;
  dispatcher: Dispatcher;
  /** Invocation timeout when the function sets none, ms. */
  defaultTimeoutMs: number;
  log: Logger;
  recorder?: TraceRecorder;
}

export interface Invocation {
  fn: FunctionMeta;
  outputs: Record<string, Tensor>;
  coldStart: boolean;
  node: string;
  timings: InvokeResult['timings'] & { totalMs: number };
}

/**
 * The front door's work, one method per route: validate against the function's signature, then
 * hand the invocation to the queue. The HTTP layer only parses and formats.
 */
export class Gateway {
  private readonly learnedExec = new Map<string, { at: number; ms: number | undefined }>();

  constructor(private readonly o: GatewayOptions) {}

  get registry(): FunctionRegistry {
    return this.o.registry;
  }

  get dispatcher(): Dispatcher {
    return this.o.dispatcher;
  }

  async register(name: string, bytes: Uint8Array, opts: RegisterOptions): Promise<RegisterResult> {
    const r = await this.o.registry.register(name, bytes, opts);
    if (r.replaced) {
      // Nodes also retire an old version when they next see the new one; this just frees it sooner.
      const job = { fn: name, belowVersion: r.fn.version, cause: 'retired', reason: `replaced by version ${r.fn.version}` } as const;
      this.o.dispatcher.unload(job, 10_000).catch((e: unknown) => this.o.log.warn({ err: e, fn: name }, 'retiring the old version failed'));
    }
    if (this.o.recorder) await this.o.recorder.writeCatalog(await this.o.registry.list());
    return r;
  }

  async delete(name: string): Promise<{ fn: FunctionMeta; unloaded: number }> {
    const fn = await this.o.registry.delete(name);
    const unloaded = await this.o.dispatcher.unload({ fn: name, cause: 'unload', reason: 'function deleted' }, 10_000).catch(() => 0);
    return { fn, unloaded };
  }

  /** Validates inputs and runs one invocation; `async` enqueues it and returns its id. */
  async invoke(name: string, rawInputs: Record<string, unknown>, opts: { outputs?: string[] } = {}): Promise<Invocation> {
    const t0 = performance.now();
    const { fn, job } = await this.prepare(name, rawInputs, opts.outputs);
    const r = await this.o.dispatcher.invoke(job, fn.options.timeoutMs ?? this.o.defaultTimeoutMs);
    return {
      fn,
      outputs: mapValues(r.outputs, fromWire),
      coldStart: r.coldStart,
      node: r.node,
      timings: { ...r.timings, totalMs: performance.now() - t0 },
    };
  }

  async submit(name: string, rawInputs: Record<string, unknown>, opts: { outputs?: string[] } = {}): Promise<string> {
    const { job } = await this.prepare(name, rawInputs, opts.outputs);
    return this.o.dispatcher.submit(job);
  }

  /** Prewarms a function on the node routing picks. */
  async load(name: string): Promise<{ node: string; loaded: boolean }> {
    const fn = await this.o.registry.get(name);
    return this.o.dispatcher.load(modelRefOf(fn, await this.execEstimate(fn)), fn.options.timeoutMs ?? this.o.defaultTimeoutMs);
  }

  async unload(name: string): Promise<number> {
    await this.o.registry.get(name);
    return this.o.dispatcher.unload({ fn: name, cause: 'unload', reason: 'unloaded on request' }, 10_000);
  }

  /** Where each function is resident, by node. */
  async residency(): Promise<Map<string, string[]>> {
    const where = new Map<string, string[]>();
    for (const n of await this.o.dispatcher.nodes(true)) {
      for (const r of n.resident) if (r.state === 'resident') where.set(r.fn, [...(where.get(r.fn) ?? []), n.id]);
    }
    return where;
  }

  async functionStats(name: string): Promise<FunctionStats> {
    return readFunctionStats(this.o.redis, this.o.keys, name);
  }

  /** Everything GET /stats shows: per function, per node, queue depth, recent evictions. */
  async stats() {
    const { redis, keys } = this.o;
    const [fns, depth, nodes, popularity, evictions, where] = await Promise.all([
      this.o.registry.list(),
      this.o.dispatcher.depth(),
      this.o.dispatcher.nodes(true),
      redis.hgetall(keys.popularity),
      recentEvictions(redis, keys, 50),
      this.residency(),
    ]);
    const functions: Record<string, unknown> = {};
    for (const f of fns) {
      functions[f.name] = {
        version: f.version,
        sizeBytes: f.sizeBytes,
        ...(await readFunctionStats(redis, keys, f.name)),
        popularity: Number(popularity[f.name] ?? 0),
        resident: (where.get(f.name) ?? []).length > 0,
        residentOn: where.get(f.name) ?? [],
      };
    }
    return {
      queue: depth.total,
      queueByNode: depth.byNode,
      functions,
      nodes: nodes.map((n) => ({
        id: n.id,
        policy: n.policy,
        budgetBytes: n.budgetBytes,
        usedBytes: n.usedBytes,
        loads: n.loads,
        evictions: n.evictions,
        residentModels: n.resident,
        heartbeatAt: new Date(n.heartbeatAt).toISOString(),
      })),
      recentEvictions: evictions,
    };
  }

  private async prepare(name: string, rawInputs: Record<string, unknown>, outputs: string[] | undefined) {
    const fn = await this.o.registry.get(name);
    const inputs = parseInputs(fn.signature, rawInputs);
    if (outputs) {
      const names = fn.signature.outputs.map((o) => o.name);
      const bad = outputs.filter((o) => !names.includes(o));
      if (bad.length > 0) {
        throw new BruleeError('INVALID_INPUT', `unknown output ${bad.map((b) => `"${b}"`).join(', ')}: the model's outputs are ${names.map((n) => `"${n}"`).join(', ')}`);
      }
    }
    const job: InvokeRequest = {
      model: modelRefOf(fn, await this.execEstimate(fn)),
      inputs: mapValues(inputs, toWire),
      ...(outputs ? { outputs } : {}),
      acceptedAt: Date.now(),
    };
    this.o.recorder?.record(name, job.acceptedAt);
    return { fn, job };
  }

  /** Exec time learned from live invocations, for models whose profile run failed. */
  private async execEstimate(fn: FunctionMeta): Promise<number | undefined> {
    if (fn.profile.execMs !== null) return undefined;
    const key = modelKey({ fn: fn.name, sha256: fn.sha256 });
    const hit = this.learnedExec.get(key);
    if (hit && Date.now() - hit.at < 10_000) return hit.ms;
    const ms = (await readFunctionStats(this.o.redis, this.o.keys, fn.name)).execMs.p50 ?? undefined;
    this.learnedExec.set(key, { at: Date.now(), ms });
    return ms;
  }
}
