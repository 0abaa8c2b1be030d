import { randomUUID } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BruleeError } from '../errors';
import { closeRedis } from '../queue/connection';
import { controlType, type Keys } from '../queue/keys';
import { deleteOwn, extendOwn, Script } from '../queue/scripts';
import { ELEMENT_TYPES, type ModelRef } from '../queue/wire';
import { batchability } from '../runtime/batcher';
import { MAPPED_FILE_NAME } from '../runtime/mapped';
import { artifactKey, type SessionConfig, type Signature } from '../runtime/onnx';
import { keepAlive, ModelBytes, REGISTRATION_LEASE_MS } from './model-bytes';
import { checkModelShape } from './onnx-shape';
import { profileModel, type Profile } from './profile';
import { isElementType } from './signature';
import { sha256Of, type LocalModels, type ModelStore } from '../store';

/** Options a user sets at registration (query parameters of PUT /functions/{name}). */
export interface FunctionOptions {
  /** Invocation timeout, ms (504 past it). Defaults to the server's INVOKE_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Never evicted while registered. @default false */
  pinned?: boolean;
  /** Overrides the measured resident bytes the cache charges. */
  memoryBytes?: number;
  /** Intra-op threads of the function's sessions (`runtime/onnx.ts` DEFAULT_SESSION when absent). */
  threads?: number;
  /** onnxruntime's memory arena for the function's sessions. */
  arena?: boolean;
  /**
   * Dynamic batching: a node merges up to this many rows of concurrent calls into one run
   * (`runtime/batcher.ts`); only for models `batchability` accepts. @default 1 (off)
   */
  maxBatch?: number;
  /** How long a call waits for others to batch with, ms. @default 2 (when maxBatch > 1) */
  maxDelayMs?: number;
}

/** Waits for company when a function batches and says nothing of the delay, ms. */
export const DEFAULT_MAX_DELAY_MS = 2;

/** A function's batching as a node applies it, or undefined when it is off. */
export function batchOf(o: FunctionOptions): { maxBatch: number; maxDelayMs: number } | undefined {
  return o.maxBatch !== undefined && o.maxBatch > 1 ? { maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs ?? DEFAULT_MAX_DELAY_MS } : undefined;
}

/**
 * What a description says of batching: whether the model's signature allows it (and why not),
 * and what the function asked for (`null`: off).
 */
export function batchingOf(fn: Pick<FunctionMeta, 'signature' | 'options'>): { batchable: boolean; reason?: string; on: { maxBatch: number; maxDelayMs: number } | null } {
  const b = batchability(fn.signature);
  return { batchable: b.batchable, ...(b.batchable ? {} : { reason: b.reason }), on: batchOf(fn.options) ?? null };
}

/** Batching asked of a model that cannot be batched is refused, with the reason from its signature. */
function checkBatching(name: string, signature: Signature, o: FunctionOptions): void {
  if (!batchOf(o)) return;
  const b = batchability(signature);
  if (!b.batchable) throw new BruleeError('INVALID_OPTION', `"${name}" cannot be batched (maxBatch=${o.maxBatch}): ${b.reason}; register it without maxBatch`);
}

/** The session options a function's options ask for (the rest are brulee's defaults). */
export function sessionOf(o: FunctionOptions): Partial<SessionConfig> {
  return { ...(o.threads !== undefined ? { threads: o.threads } : {}), ...(o.arena !== undefined ? { arena: o.arena } : {}) };
}

export interface RegisterOptions extends FunctionOptions {
  /** Dims to profile with, per input (dynamic dims default to 1). */
  profileDims?: Record<string, number[]>;
}

export interface FunctionVersion {
  version: number;
  sha256: string;
  /** The store sha256 of its pre-optimized artifact, if it has one (removed with it). */
  artifactSha256?: string;
  fileBytes: number;
  createdAt: string;
}

/** A registered function, as stored in Redis and shown by GET /functions/{name}. */
export interface FunctionMeta {
  name: string;
  version: number;
  sha256: string;
  signature: Signature;
  profile: Profile;
  options: FunctionOptions;
  /** Bytes the cache charges for this function: `options.memoryBytes` or the measured resident bytes. */
  sizeBytes: number;
  createdAt: string;
  updatedAt: string;
  versions: FunctionVersion[];
}

export interface RegisterResult {
  /** The name was new. */
  created: boolean;
  /** A new version was made (false: the same bytes as the current version). */
  newVersion: boolean;
  fn: FunctionMeta;
  /** The version this one replaced, if any. */
  replaced?: FunctionMeta;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Names a route takes for itself, as a fixed path segment where other routes have a function's
 * name: a function so named would be shadowed there, so none is registered.
 */
const RESERVED_NAMES: ReadonlyMap<string, string> = new Map([['stats', 'GET /v2/models/stats is the statistics of every model (the statistics extension), so GET /v2/models/{name} could never describe it']]);

/**
 * A function's record as the registry stores it in Redis, or undefined when `name` is not
 * registered. The one reader of that stored form: a runtime node asks through it (brulee.ts hands
 * it over as `RuntimeNodeOptions.findFunction`) which versions a function has.
 */
export async function readFunction(redis: Redis, keys: Keys, name: string): Promise<FunctionMeta | undefined> {
  const raw = await redis.get(keys.fn(name));
  return raw ? (JSON.parse(raw) as FunctionMeta) : undefined;
}

/** Every registered function's record (the stored form's one reader, as `readFunction`), by name. */
export async function readFunctions(redis: Redis, keys: Keys): Promise<FunctionMeta[]> {
  const names = (await redis.smembers(keys.functions)).sort();
  if (names.length === 0) return [];
  const raws = await redis.mget(names.map((n) => keys.fn(n)));
  return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as FunctionMeta);
}

/**
 * A registration's or deletion's write of a function's record, fenced by its name lock: it is
 * made only while the lock still holds the request's token (and holds it a lease longer), in one
 * script, so a request that stalled past its lease (its process blocked, or its write delayed
 * while Redis was away) cannot write over what a newer request of the name did meanwhile.
 */
// KEYS: the lock, the record, the set of names. ARGV: token, lease ms, record JSON, name, control channel, message.
const SAVE_HELD = new Script(`if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1`);
// KEYS: the lock, the set of names, the two popularity hashes, then the record and its counts and samples. ARGV: token, name, control channel, message.
const DELETE_HELD = new Script(`if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS, 5))
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`);

/** A registration or deletion that lost its lease before it wrote. */
function lapsed(name: string, what: 'registration' | 'deletion', leaseMs: number): BruleeError {
  return new BruleeError(
    'CONFLICT',
    `the ${what} of "${name}" stalled past its ${leaseMs / 1000} s lease (its process blocked, or Redis away), so another request may have taken the name meanwhile; nothing was ${what === 'registration' ? 'saved' : 'deleted'}: retry`,
  );
}

function notFound(name: string): BruleeError {
  return new BruleeError('FUNCTION_NOT_FOUND', `no function named "${name}"; register it with PUT /functions/${name}`);
}

/** A request's hold on a function's name: its lock key and the token it holds it by. */
interface NameLock {
  key: string;
  token: string;
}

/** The bytes a function's versions name: each one's model and its artifact. */
function shasOf(fn: FunctionMeta): string[] {
  return fn.versions.flatMap((v) => [v.sha256, ...(v.artifactSha256 ? [v.artifactSha256] : [])]);
}

/**
 * A registration's scratch folder (the profiler writes the pre-optimized artifact there) is
 * `brulee-artifact-<pid namespace>-<pid>-<uuid>` in the OS temp folder: a registration whose
 * process was killed leaves it, and `removeDeadScratch` removes those whose process is gone.
 */
const SCRATCH = 'brulee-artifact-';
/** This process's pid namespace (its inode), so that a pid is only judged in the namespace it belongs to ('' where there is no /proc). */
const PID_NS = (() => {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '';
  } catch {
    return '';
  }
})();
/**
 * Scratch folders whose process cannot be judged here (of the form before the owner's pid was in
 * the name, or of another pid namespace: a container restarted over the same temp folder, as a
 * Kubernetes emptyDir outlives its container, starts in a new one) are removed only this old:
 * no registration runs that long.
 */
const UNJUDGED_SCRATCH_MS = 60 * 60_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: a process of another user has that pid.
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes the scratch folders in `dir` (the OS temp folder) that registrations killed mid-way
 * left: those named with this pid namespace and a pid no process has, and those of another pid
 * namespace or of the earlier form (no pid) an hour old, as are profiling children's own. A live registration's is never one of
 * them (its pid is alive; a pid taken again by another process only keeps a leftover longer).
 * Resolves to the names removed.
 */
export async function removeDeadScratch(dir = tmpdir()): Promise<string[]> {
  const owned = new RegExp(`^${SCRATCH}(\\d*)-(\\d+)-[0-9a-f-]{36}$`);
  const unowned = new RegExp(`^${SCRATCH}[0-9a-f-]{36}$`);
  // A profiling child's own scratch (runtime/onnx.ts deriveOptimized, mkdtemp): left when the child
  // is killed at its timeout; no child runs an hour.
  const derive = /^brulee-derive-[A-Za-z0-9]{6}$/;
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [])) {
    const m = owned.exec(name);
    let dead: boolean;
    if (m && m[1] === PID_NS) dead = !alive(Number(m[2]));
    else if (m || unowned.test(name) || derive.test(name)) dead = Date.now() - ((await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? Date.now()) > UNJUDGED_SCRATCH_MS;
    else continue;
    if (!dead) continue;
    await rm(join(dir, name), { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

export function validateName(name: string): void {
  if (!NAME.test(name) || name.includes('..')) {
    throw new BruleeError(
      'INVALID_NAME',
      `invalid function name ${JSON.stringify(name.slice(0, 200))}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'`,
    );
  }
}

export interface RegistryOptions {
  redis: Redis;
  keys: Keys;
  /** This process's local copies of model bytes (and, through it, the model store). */
  models: LocalModels;
  /** Byte budgets of the live nodes (empty: no node known, nothing is checked). */
  budgets: () => Promise<number[]>;
  /** Where it says that it leaves bytes in a model store other clusters use too. */
  log?: Pick<Logger, 'warn'>;
  /** MAX_REQUEST_BYTES: `profileDims` asking for more bytes of inputs than a call may send are refused. */
  maxInputBytes?: number;
  /** How long a registration's or deletion's hold on a name and its bytes lasts unless renewed (functions/model-bytes.ts). @default REGISTRATION_LEASE_MS (15 s) */
  leaseMs?: number;
}

/** How often a registry tells the model store that its cluster uses it (`ModelStore.touchCluster`), besides at start and at each registration. */
const CLUSTER_TOUCH_MS = 60 * 60_000;
/** A cluster that has not told the store for this long no longer uses it (its gateways are gone, or its Redis was reset: a new id). */
const CLUSTER_FRESH_MS = 3 * CLUSTER_TOUCH_MS;

/**
 * Functions: registration (inspect, profile, store), lookup, listing, deletion.
 *
 * Lookups on the invocation path come from an in-memory copy; every change is announced on the
 * control channel, and `watch()` drops the copy on any gateway that hears it.
 */
export class FunctionRegistry {
  private readonly cache = new Map<string, FunctionMeta>();
  /** Bumped on every invalidation, so a read that raced a change is not cached. */
  private generation = 0;
  private sub?: Redis;
  /** Whether `sub` is subscribed now (the copy is used and filled only then). */
  private listening = false;
  /** Which model bytes registrations are storing now, so that a deletion leaves them (functions/model-bytes.ts). */
  private readonly bytes: ModelBytes;
  /** `RegistryOptions.leaseMs`. */
  private readonly leaseMs: number;

  /** Tells the model store, now and then, that this cluster uses it. */
  private readonly touching: NodeJS.Timeout;

  constructor(private readonly o: RegistryOptions) {
    this.leaseMs = o.leaseMs ?? REGISTRATION_LEASE_MS;
    this.bytes = new ModelBytes(o.redis, o.keys, this.leaseMs);
    // What registrations killed mid-way left in the temp folder (a process starts with its registry).
    void removeDeadScratch().catch(() => undefined);
    const touch = () => void this.touchStore().then(() => this.otherClusters()).then((others) => others.length > 0 && this.warnShared(others, 'noting this cluster in the model store')).catch(() => undefined);
    touch();
    this.touching = setInterval(touch, CLUSTER_TOUCH_MS).unref();
  }

  /** This cluster's id (one per KEY_PREFIX on a Redis), made by the first process that asks. */
  private async clusterId(): Promise<string> {
    await this.o.redis.set(this.o.keys.clusterId, randomUUID(), 'NX');
    const id = await this.o.redis.get(this.o.keys.clusterId);
    if (id === null) throw new BruleeError('REDIS_UNAVAILABLE', 'the cluster id went from Redis as it was set (Redis reset meanwhile): retry');
    return id;
  }

  private async touchStore(): Promise<void> {
    if (this.store.touchCluster) await this.store.touchCluster(await this.clusterId());
  }

  /**
   * The other clusters that told the model store lately that they use it. Model bytes are shared
   * by content, and a cluster knows only the functions of its own Redis and KEY_PREFIX: removing
   * bytes it no longer names could remove another cluster's. So while there is any, no bytes are
   * removed (they stay in the store, unnamed). Where the store cannot be asked, "unknown".
   */
  private async otherClusters(): Promise<string[]> {
    if (!this.store.clusters) return [];
    try {
      const [mine, all] = await Promise.all([this.clusterId(), this.store.clusters()]);
      const now = Date.now();
      return all.filter((c) => c.id !== mine && now - c.at < CLUSTER_FRESH_MS).map((c) => c.id);
    } catch (e) {
      // Not known: kept, as if shared (the warning carries why).
      return [`unknown: the store's .clusters/ could not be read (${e instanceof Error ? e.message : String(e)})`];
    }
  }

  private warnShared(others: string[], when: string): void {
    this.o.log?.warn(
      { store: this.store.url, clusters: others },
      `${when}: the model store ${this.store.url} is used by other brulee clusters too (${others.join(', ')}; each notes itself in .clusters/ there), so this one leaves in it the model bytes its functions no longer name, as removing them could break those clusters' functions. Give each cluster (each Redis and KEY_PREFIX) its own MODEL_STORE, another folder or s3 prefix; a cluster that is gone (or whose Redis was reset) stops counting ${CLUSTER_FRESH_MS / 3_600_000} h after it last noted itself`,
    );
  }

  /**
   * Keeps the in-memory copy in step with changes made through any gateway. What is published
   * while the subscriber is away is lost to it: from a disconnection until it is subscribed again
   * the copy is neither used nor filled, and it starts empty then.
   */
  async watch(subscriber: Redis): Promise<void> {
    this.sub = subscriber;
    const channel = this.o.keys.control;
    subscriber.on('message', (_ch, msg: string) => {
      if (controlType(msg) !== 'function') return;
      const { name } = JSON.parse(msg) as { name?: unknown };
      if (typeof name === 'string') this.invalidate(name);
    });
    const resync = () => {
      this.cache.clear();
      this.generation++;
    };
    subscriber.on('close', () => {
      this.listening = false;
      resync();
    });
    // ioredis subscribes again on its own; this subscription's answer says it is in effect.
    subscriber.on('ready', () => {
      void subscriber
        .subscribe(channel)
        .then(() => {
          resync();
          this.listening = true;
        })
        .catch(() => undefined);
    });
    await subscriber.subscribe(channel);
    // Whatever changed before we listened is not in the copy yet: start empty.
    resync();
    this.listening = true;
  }

  async close(): Promise<void> {
    clearInterval(this.touching);
    this.cache.clear();
    await closeRedis(this.sub);
  }

  get store(): ModelStore {
    return this.o.models.store;
  }

  async find(name: string): Promise<FunctionMeta | undefined> {
    return readFunction(this.o.redis, this.o.keys, name);
  }

  /** The function's record if this process has it (no Redis read), else undefined. */
  cached(name: string): FunctionMeta | undefined {
    return this.listening ? this.cache.get(name) : undefined;
  }

  async get(name: string): Promise<FunctionMeta> {
    validateName(name);
    const cached = this.cached(name);
    if (cached) return cached;
    const gen = this.generation;
    const fn = await this.find(name);
    if (fn && this.listening && gen === this.generation) this.cache.set(name, fn);
    if (!fn) throw notFound(name);
    return fn;
  }

  list(): Promise<FunctionMeta[]> {
    return readFunctions(this.o.redis, this.o.keys);
  }

  /**
   * Registers `bytes` as function `name`: stores them by content, profiles them, and saves the
   * metadata. The same bytes as the current version only update the options.
   */
  async register(name: string, bytes: Uint8Array, opts: RegisterOptions): Promise<RegisterResult> {
    validateName(name);
    const route = RESERVED_NAMES.get(name);
    if (route) throw new BruleeError('INVALID_NAME', `the function name ${JSON.stringify(name)} is taken by a route: ${route}; choose another name`);
    if (bytes.byteLength === 0) throw new BruleeError('INVALID_MODEL', 'the body is empty: send the ONNX file as the raw request body (Content-Type: application/octet-stream)');
    checkModelShape(bytes);
    // Before its bytes are stored: a cluster that shares the store sees this one before it could remove them.
    await this.touchStore();
    return this.locked(name, (lock) => this.registerLocked(name, bytes, opts, lock));
  }

  /**
   * Runs `f` holding the function's lock: one registration or deletion of a name at a time. The
   * lock is a lease renewed while `f` runs; `f` writes the record through `saveHeld` or
   * `deleteHeld`, which write only while the lease still holds (CONFLICT otherwise: the process
   * stalled or Redis was away past it, and another request may have taken the name meanwhile).
   */
  private async locked<T>(name: string, f: (lock: NameLock) => Promise<T>): Promise<T> {
    const lock = { key: `${this.o.keys.fn(name)}:lock`, token: randomUUID() };
    if (!(await this.o.redis.set(lock.key, lock.token, 'PX', this.leaseMs, 'NX'))) {
      throw new BruleeError('CONFLICT', `function "${name}" is being registered or deleted by another request; retry when it finishes (in ${this.leaseMs / 1000} s at most if that request's process died)`);
    }
    const stop = keepAlive(() => extendOwn(this.o.redis, lock.key, lock.token, this.leaseMs), this.leaseMs);
    try {
      return await f(lock);
    } finally {
      stop();
      // Release only our own lock (it may have expired and been taken by another request).
      await deleteOwn(this.o.redis, lock.key, lock.token).catch(() => undefined);
    }
  }

  private async registerLocked(name: string, bytes: Uint8Array, opts: RegisterOptions, lock: NameLock): Promise<RegisterResult> {
    const sha = sha256Of(bytes);
    const prev = await this.find(name);
    const now = new Date().toISOString();
    const options: FunctionOptions = {
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      pinned: opts.pinned ?? false,
      ...(opts.memoryBytes !== undefined ? { memoryBytes: opts.memoryBytes } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.arena !== undefined ? { arena: opts.arena } : {}),
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      ...(opts.maxDelayMs !== undefined ? { maxDelayMs: opts.maxDelayMs } : {}),
    };
    const sameSession = prev !== undefined && JSON.stringify(sessionOf(prev.options)) === JSON.stringify(sessionOf(options));
    // Dims asked that the current version was not profiled with profile it again (a model whose
    // run failed on the default dims is registered again with `profileDims`, as its execError says).
    const asked = opts.profileDims ?? {};
    const sameDims = prev !== undefined && Object.keys(asked).every((k) => JSON.stringify(prev.profile.profiledDims?.[k]) === JSON.stringify(asked[k]));
    // The same bytes and options only update the options, unless the store lost or damaged the
    // artifact profiling derived from them (only profiling makes it again: a node would fall back
    // to the original at every load, after fetching the artifact in vain).
    if (prev && prev.sha256 === sha && sameSession && sameDims && (await this.artifactStored(prev))) {
      checkBatching(name, prev.signature, options);
      const fn: FunctionMeta = { ...prev, options, sizeBytes: options.memoryBytes ?? prev.profile.residentBytes, updatedAt: now };
      await this.checkFits(fn);
      // The store may have lost the bytes (a wiped DATA_DIR, Redis kept): the same bytes restore them.
      await this.store.put(bytes);
      await this.saveHeld(fn, lock);
      return { created: false, newVersion: false, fn };
    }

    // Marked before they are stored, until the record names them: a deletion of another function
    // with these bytes leaves them meanwhile (functions/model-bytes.ts).
    const token = randomUUID();
    const marked: string[] = [];
    const mark = async (s: string) => {
      await this.bytes.mark(s, token);
      marked.push(s);
    };
    // A failure removes every sha it marked that no function names and no other registration
    // stores, whether it was stored before or not (bytes no record names are nobody's): the bytes
    // it wrote go, also when a put failed after writing or when another failed registration of them
    // left them to it. A clean-up that fails (Redis gone) leaves them, and the error is the first one.
    const forget = async () => {
      await this.bytes.unmark(marked, token);
      await this.removeUnused(marked);
    };
    const stop = keepAlive(() => this.bytes.renew(marked, token), this.leaseMs);
    try {
      await mark(sha);
      // Its marks are renewed on the lock's lease: a lock still held says no deletion took its bytes either.
      return await this.registerNew({ name, bytes, sha, opts, options, prev, now }, mark, lock);
    } catch (e) {
      await forget().catch(() => undefined);
      throw e;
    } finally {
      stop();
      await this.bytes.unmark(marked, token);
    }
  }

  /** A registration of bytes other than the current version's (or other session options), its bytes marked (`mark` marks more). */
  private async registerNew(
    r: { name: string; bytes: Uint8Array; sha: string; opts: RegisterOptions; options: FunctionOptions; prev: FunctionMeta | undefined; now: string },
    mark: (sha256: string) => Promise<void>,
    lock: NameLock,
  ): Promise<RegisterResult> {
    const { name, bytes, sha, opts, options, prev, now } = r;
    await this.store.put(bytes);
    let artifact: Profile['artifact'] = null;
    let inspected: Awaited<ReturnType<typeof profileModel>>;
    // The pre-optimized artifact is written to a scratch file by the profiler, then stored like any model bytes.
    // Its own folder, under the name a node's cache gives it: a mapped artifact reads its weights from that file.
    const scratchDir = join(tmpdir(), `${SCRATCH}${PID_NS}-${process.pid}-${randomUUID()}`);
    const scratch = join(scratchDir, MAPPED_FILE_NAME);
    // Again at each registration: what a start had to leave (another pid namespace's, not yet an hour old) goes later.
    void removeDeadScratch().catch(() => undefined);
    try {
      await mkdir(scratchDir, { recursive: true });
      const path = await this.o.models.stage(sha, bytes);
      // The same bytes profiled again (other options, dims or a lost artifact) keep the dims they
      // were profiled with, but for those asked anew: the defaults may not run at all.
      const dims = prev && prev.sha256 === sha ? { ...prev.profile.profiledDims, ...opts.profileDims } : opts.profileDims;
      inspected = await profileModel(path, { ...(dims ? { dims } : {}), session: sessionOf(options), artifactPath: scratch, ...(this.o.maxInputBytes !== undefined ? { maxInputBytes: this.o.maxInputBytes } : {}) });
      if (inspected.artifactOk) {
        const a = await readFile(scratch);
        const aSha = sha256Of(a);
        await mark(aSha);
        await this.store.put(a);
        // In this process's cache too, as the original is: a node here loads the artifact on its
        // first cold start without fetching (copying and hashing) what was just written.
        await this.o.models.stage(aSha, a);
        artifact = { key: artifactKey(sha), sha256: aSha, fileBytes: a.byteLength, form: inspected.derived?.form ?? 'onnx', ...(inspected.derived?.note ? { formNote: inspected.derived.note } : {}) };
      }
    } finally {
      await rm(scratchDir, { recursive: true, force: true });
    }
    const unsupported = [...inspected.signature.inputs, ...inspected.signature.outputs].filter((t) => !isElementType(t.type));
    if (unsupported.length > 0) {
      throw new BruleeError(
        'INVALID_MODEL',
        `brulee cannot carry ${unsupported.map((t) => `"${t.name}" (${t.type})`).join(', ')} over JSON; supported element types: ${ELEMENT_TYPES.join(', ')}`,
      );
    }
    checkBatching(name, inspected.signature, options);
    // The same bytes under other session options: profiled again, same version.
    const version = prev && prev.sha256 === sha ? prev.version : (prev?.version ?? 0) + 1;
    const versions = prev && prev.sha256 === sha ? prev.versions.filter((v) => v.version !== version) : (prev?.versions ?? []);
    const fn: FunctionMeta = {
      name,
      version,
      sha256: sha,
      signature: inspected.signature,
      profile: { ...inspected.profile, artifact },
      options,
      sizeBytes: options.memoryBytes ?? inspected.profile.residentBytes,
      createdAt: prev?.createdAt ?? now,
      updatedAt: now,
      versions: [...versions, { version, sha256: sha, ...(artifact ? { artifactSha256: artifact.sha256 } : {}), fileBytes: bytes.byteLength, createdAt: now }],
    };
    await this.checkFits(fn);
    await this.saveHeld(fn, lock);
    if (prev && prev.sha256 === sha) return { created: false, newVersion: false, fn };
    return { created: !prev, newVersion: true, fn, ...(prev ? { replaced: prev } : {}) };
  }

  /** Whether the model store holds `fn`'s artifact intact (true when it has none). */
  private async artifactStored(fn: FunctionMeta): Promise<boolean> {
    const a = fn.profile.artifact;
    if (!a) return true;
    return this.store.intact ? this.store.intact(a.sha256, a.fileBytes) : this.store.has(a.sha256);
  }

  /** Deletes a function; resolves to it and the bytes (sha256) of its versions removed from the store (no other function names them, no registration is storing them). */
  async delete(name: string): Promise<{ fn: FunctionMeta; removed: string[] }> {
    validateName(name);
    return this.locked(name, (lock) => this.deleteLocked(name, lock));
  }

  private async deleteLocked(name: string, lock: NameLock): Promise<{ fn: FunctionMeta; removed: string[] }> {
    // From Redis, not the in-memory copy: that may not have heard yet of a version saved through
    // another gateway just before, whose bytes would then be left in the store and on the nodes.
    const fn = await this.find(name);
    if (!fn) throw notFound(name);
    this.invalidate(name);
    const k = this.o.keys;
    // Its counts, samples and popularity go too: a function registered later under the same name starts afresh.
    const keys = [lock.key, k.functions, k.popularityCounts, k.popularity, k.fn(name), k.fnStats(name), k.fnSamples(name, 'load'), k.fnSamples(name, 'exec'), k.fnSamples(name, 'fetch'), k.fnSamples(name, 'create')];
    if ((await DELETE_HELD.run(this.o.redis, keys, [lock.token, name, k.control, JSON.stringify({ type: 'function', name })])) !== 1) throw lapsed(name, 'deletion', this.leaseMs);
    // The bytes are fenced apart, by the deletion's hold on each (functions/model-bytes.ts).
    const removed = await this.removeUnused(shasOf(fn));
    return { fn, removed };
  }

  /**
   * Removes from the store and this process's cache those of `sha256s` that no function's record
   * names and no registration is storing (functions/model-bytes.ts: what the records name is read
   * once the bytes are this removal's), unless another cluster uses the store (`otherClusters`).
   * Resolves to the shas removed.
   */
  private removeUnused(sha256s: readonly string[]): Promise<string[]> {
    return this.bytes.removeUnused(
      sha256s,
      async () => {
        // Asked last, just before the removals: a store another cluster uses keeps every one.
        const named = new Set((await this.list()).flatMap(shasOf));
        const others = await this.otherClusters();
        if (others.length === 0) return named;
        this.warnShared(others, `${sha256s.length} model file(s) left`);
        return new Set(sha256s);
      },
      async (sha) => {
        await this.store.remove(sha);
        await this.o.models.drop(sha);
      },
      // The function is deleted all the same (its record went first): a DELETE that answered an
      // error would be retried into a 404. What the store kept is said here.
      (sha, e) => this.o.log?.warn({ err: e, sha256: sha, store: this.store.url }, `removing model bytes ${sha.slice(0, 12)}… no function names from the model store failed; they stay there`),
    );
  }

  private invalidate(name: string): void {
    this.generation++;
    this.cache.delete(name);
  }

  /** Saves a function's record while `lock` still holds its name (`SAVE_HELD`), else CONFLICT. */
  private async saveHeld(fn: FunctionMeta, lock: NameLock): Promise<void> {
    this.invalidate(fn.name);
    const k = this.o.keys;
    const saved = await SAVE_HELD.run(this.o.redis, [lock.key, k.fn(fn.name), k.functions], [lock.token, this.leaseMs, JSON.stringify(fn), fn.name, k.control, JSON.stringify({ type: 'function', name: fn.name })]);
    if (saved !== 1) throw lapsed(fn.name, 'registration', this.leaseMs);
  }

  /**
   * A model bigger than every node's budget could never load; pinned models that together take
   * more than all budgets would starve everything else. Both are refused with what to change.
   */
  private async checkFits(fn: FunctionMeta): Promise<void> {
    const budgets = await this.o.budgets();
    if (budgets.length === 0) return;
    const largest = Math.max(...budgets);
    if (fn.sizeBytes > largest) {
      throw new BruleeError(
        'MODEL_TOO_LARGE',
        `function "${fn.name}" needs ${fn.sizeBytes} bytes resident (measured ${fn.profile.residentBytes}, file ${fn.profile.fileBytes}), more than the largest node budget of ${largest} bytes; raise MEMORY_BUDGET`,
      );
    }
    if (fn.options.pinned) {
      const total = budgets.reduce((a, b) => a + b, 0);
      const pinned = (await this.list()).filter((f) => f.options.pinned && f.name !== fn.name).reduce((a, f) => a + f.sizeBytes, 0);
      if (pinned + fn.sizeBytes > total) {
        throw new BruleeError(
          'MODEL_TOO_LARGE',
          `pinning "${fn.name}" (${fn.sizeBytes} bytes) would pin ${pinned + fn.sizeBytes} bytes, more than all node budgets together (${total} bytes); unpin another function or raise MEMORY_BUDGET`,
        );
      }
    }
  }
}

/** What a node needs to run a function's current version. `learnedExecMs` fills in a failed profile run. */
export function modelRefOf(fn: FunctionMeta, learnedExecMs?: number): ModelRef {
  return {
    fn: fn.name,
    sha256: fn.sha256,
    version: fn.version,
    sizeBytes: fn.sizeBytes,
    ...(fn.options.memoryBytes !== undefined ? { sizeFixed: true } : {}),
    loadMs: fn.profile.loadMs,
    execMs: fn.profile.execMs ?? learnedExecMs ?? 0,
    pinned: fn.options.pinned ?? false,
    session: sessionOf(fn.options),
    ...(batchOf(fn.options) ? { batch: batchOf(fn.options) } : {}),
    ...(fn.profile.artifact ? { artifact: { key: fn.profile.artifact.key, sha256: fn.profile.artifact.sha256 } } : {}),
    registered: fn.createdAt,
  };
}
