import { Worker } from 'node:worker_threads';
import type * as ort from 'onnxruntime-node';
import { BruleeError } from '../errors';
import type { Tensor } from '../queue/wire';
import { WARMUP_MODEL_B64 } from './warmup-model';

/**
 * Threads that hold onnxruntime sessions off the node's main thread (runtime/onnx.ts uses them
 * for models whose load or run is long). onnxruntime-node creates and runs a session on the
 * calling thread, synchronously: on the main thread a 40 MB model's 2000-row run stopped HTTP,
 * heartbeats and Redis work for ~0.5 s (bench/event-loop.ts). Here the main thread only sends the
 * request and gets the answer.
 *
 * A session lives in one thread of the host, the one holding the fewest sessions when it was
 * created; the loads and runs of one thread's sessions take turns, those of two threads run at
 * once (as Triton runs model instances on threads of their own). A thread costs ~100 ms to start
 * (it loads onnxruntime's binding again) and some MiB: a node starts its host once, at its own
 * start, not at a model's cold start. Tensors travel as bytes: a run's inputs are copied once
 * (they are views into the caller's frames, which a transfer would take from it) and the copies
 * transferred, the outputs transferred back with them, so nothing of a run stays in the thread.
 *
 * A thread that stops (an error it did not catch: `crash`) fails every request in flight in it
 * with `INTERNAL` and is replaced at its next request; the sessions it held are gone (`lives`).
 */
export class SessionHost {
  private readonly threads: Thread[];
  private nextId = 1;
  private closed = false;
  private closing?: Promise<void>;

  /** @param threads threads in the host (`ORT_OFF_THREAD_THREADS`). @default 1 */
  constructor(threads = 1) {
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`SessionHost: threads must be a positive integer, got ${threads}`);
    this.threads = Array.from({ length: threads }, () => ({ gen: 1, sessions: 0, pending: new Map() }));
  }

  /**
   * Starts the threads now (else each at its first request) and warms each up: the first session
   * create in a thread sets onnxruntime up there (tens of ms), which a cold start should not pay.
   */
  async start(): Promise<void> {
    await Promise.all(
      this.threads.map(async (t) => {
        const s = await this.createIn(t, Buffer.from(WARMUP_MODEL_B64, 'base64'), {});
        await this.release(s);
      }),
    );
  }

  /** Creates a session in the thread holding the fewest; resolves to where it lives and its metadata. */
  create(source: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<Created> {
    const t = this.threads.reduce((a, b) => (b.sessions < a.sessions ? b : a));
    return this.createIn(t, source, options);
  }

  /** Whether session `s` still lives (its thread has not stopped since it was created). */
  lives(s: Created): boolean {
    const t = this.threads[s.thread]!;
    return t.gen === s.generation && t.worker !== undefined;
  }

  /** Runs session `s` on `inputs` (copied, see the class's comment); its outputs as `Tensor`s. */
  run(s: Created, inputs: Record<string, Tensor>, fetches?: string[]): Promise<Record<string, Tensor>> {
    const feeds: Record<string, Tensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, t] of Object.entries(inputs)) {
      if (Array.isArray(t.data)) feeds[name] = t;
      else {
        const copy = copyOf(t.data);
        transfer.push(copy.buffer as ArrayBuffer);
        feeds[name] = { ...t, data: copy } as Tensor;
      }
    }
    const t = this.threads[s.thread]!;
    if (this.closed) return Promise.reject(shuttingDown());
    if (!this.lives(s)) return Promise.reject(new BruleeError('INTERNAL', 'a run of a session whose thread stopped'));
    return this.request(t, { op: 'run', handle: s.handle, feeds, ...(fetches ? { fetches } : {}) }, transfer);
  }

  /** Releases session `s` (one whose thread stopped is gone already). */
  async release(s: Created): Promise<void> {
    if (!this.lives(s)) return;
    const t = this.threads[s.thread]!;
    t.sessions--;
    await this.request(t, { op: 'release', handle: s.handle }, []);
  }

  /**
   * Makes every thread die as a bug in it would (an error it does not catch, thrown once it has
   * read the requests sent before this one): for tests of what a dying thread does to its calls.
   */
  crash(reason: string): void {
    for (const t of this.threads) t.worker?.postMessage({ op: 'crash', reason });
  }

  /**
   * Stops the threads for good (idempotent: a second call waits for the same exits): requests in
   * flight and after it fail with `SHUTTING_DOWN`; each thread releases its sessions and exits
   * once its current operation ends.
   * Not `Worker.terminate`: stopping a thread while onnxruntime is in a run makes the binding throw
   * a C++ exception nothing catches, which aborts the whole process.
   */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.stopThreads();
    return this.closing;
  }

  private async stopThreads(): Promise<void> {
    await Promise.all(
      this.threads.map(async (t) => {
        const w = t.worker;
        t.worker = undefined;
        fail(t, shuttingDown());
        if (!w) return;
        const exited = new Promise((resolve) => w.once('exit', resolve));
        w.ref(); // a process with nothing else to do waits for it
        w.postMessage({ op: 'exit' });
        await exited;
      }),
    );
  }

  private async createIn(t: Thread, source: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<Created> {
    this.worker(t);
    const generation = t.gen;
    const thread = this.threads.indexOf(t);
    t.sessions++;
    try {
      const c = await this.request<Pick<Created, 'handle' | 'inputs' | 'outputs'>>(t, { op: 'create', source, options }, []);
      return { ...c, thread, generation };
    } catch (e) {
      if (t.gen === generation) t.sessions--;
      throw e;
    }
  }

  private worker(t: Thread): Worker {
    if (this.closed) throw shuttingDown();
    if (t.worker) return t.worker;
    // No TypeScript loader in the thread (its script is plain JavaScript): it starts faster.
    const w = new Worker(new URL('./session-host-thread.mjs', import.meta.url), { execArgv: [] });
    w.unref(); // referenced only while a request is in flight (`request`)
    w.on('message', (m: { id: number; ok?: unknown; error?: string }) => {
      const p = t.pending.get(m.id);
      if (!p) return;
      t.pending.delete(m.id);
      if (t.pending.size === 0) w.unref();
      if (m.error !== undefined) p.reject(new HostOpError(m.error));
      else p.resolve(m.ok);
    });
    const lost = (reason: string) => {
      if (t.worker !== w) return;
      t.worker = undefined;
      t.gen++;
      t.sessions = 0;
      fail(t, new BruleeError('INTERNAL', `the thread running onnxruntime for this model stopped (${reason}); its sessions are gone and are loaded again at their next call`));
    };
    w.on('error', (e) => lost(e.message));
    w.on('exit', (code) => lost(`it exited with code ${code}`));
    t.worker = w;
    return w;
  }

  private request<T>(t: Thread, msg: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<T> {
    const w = this.worker(t);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      t.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        w.postMessage({ id, ...msg }, transfer);
        w.ref();
      } catch (e) {
        t.pending.delete(id);
        reject(e);
      }
    });
  }
}

interface Thread {
  worker?: Worker;
  /** Which worker this is: it rises when one stops (a session of an older one is gone). */
  gen: number;
  /** Sessions created in it and not released. */
  sessions: number;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>;
}

/**
 * A copy of `data` in an ArrayBuffer of its own (to transfer). %TypedArray%.prototype.slice, not
 * `data.slice()`: a Node Buffer's own slice is a view of the same memory, whose transfer would
 * take the caller's whole ArrayBuffer (Node's shared pool, for a small one).
 */
const typedArraySlice = Object.getPrototypeOf(Uint8Array.prototype).slice as (this: ArrayBufferView) => ArrayBufferView;
function copyOf<D extends ArrayBufferView>(data: D): D {
  return typedArraySlice.call(data) as D;
}

function shuttingDown(): BruleeError {
  return new BruleeError('SHUTTING_DOWN', 'the node is shutting down: its onnxruntime session host stopped');
}

function fail(t: Thread, e: BruleeError): void {
  const pending = [...t.pending.values()];
  t.pending.clear();
  for (const p of pending) p.reject(e);
}

/** Where a session lives (`SessionHost.create`), and its metadata. */
export interface Created {
  handle: number;
  /** The thread it lives in (an index into the host's threads). */
  thread: number;
  /** That thread's generation when it was created. */
  generation: number;
  inputs: readonly ort.InferenceSession.ValueMetadata[];
  outputs: readonly ort.InferenceSession.ValueMetadata[];
}

/** onnxruntime's own error, in the host's thread, for a request (its message as onnxruntime gave it). */
export class HostOpError extends Error {
  override readonly name = 'HostOpError';
}
