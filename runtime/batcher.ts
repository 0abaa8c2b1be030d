import { ARRAY_OF, type Tensor, type TypedArray } from '../queue/wire';
import type { LoadedModel, Signature } from './onnx';

/**
 * Dynamic batching: concurrent invocations of one loaded model wait together (at most
 * `maxDelayMs`, at most `maxBatch` rows), run as one onnxruntime run on their inputs concatenated
 * along axis 0, and each caller gets its own rows of the outputs back. No Redis, no clock but
 * timers: testable on its own (test/unit/batcher.test.ts).
 */

/** A function's batching options (`?maxBatch=&maxDelayMs=` at registration). */
export interface BatchOptions {
  /** Rows one run may hold; 1 (or absent) is no batching. */
  maxBatch: number;
  /** How long the first waiting call waits for company, ms. */
  maxDelayMs: number;
}

/**
 * Whether a model can be batched, from its signature alone: every input and output is a tensor
 * of rank >= 1 whose first axis is dynamic; the inputs' first axes are one and the same dimension
 * (one name, or unnamed); and no output's first axis is a dimension the inputs use on another
 * axis. Exporters name the batch axis of outputs as they like (PP-OCR's paddle2onnx gives its
 * input `p2o.DynamicDimension.0` and its output `p2o.DynamicDimension.3`), so an output may use
 * another name; a fixed first axis (a reduction over the batch to 1 row), a scalar, or the name of
 * an input's other axis says that output's rows are not the inputs' rows, and the model runs one
 * call at a time. A batched run whose outputs do not have exactly the rows put in is not split:
 * each call then runs alone (`Batcher`). The model must also treat rows independently (true of the
 * usual per-example models), which no signature says: batching is the registrant's choice.
 */
export function batchability(sig: Signature): { batchable: true; axis: string } | { batchable: false; reason: string } {
  const first = sig.inputs[0];
  if (!first) return { batchable: false, reason: 'the model has no inputs' };
  const axis = first.dims[0];
  const other = new Set<string>();
  for (const s of sig.inputs) for (const d of s.dims.slice(1)) if (typeof d === 'string' && d !== '?') other.add(d);
  for (const [kind, specs] of [['input', sig.inputs], ['output', sig.outputs]] as const) {
    for (const s of specs) {
      if (s.type === 'non-tensor') return { batchable: false, reason: `${kind} "${s.name}" is not a tensor` };
      const d = s.dims[0];
      if (typeof d !== 'string') {
        return { batchable: false, reason: `the first axis of ${kind} "${s.name}" is ${d === undefined ? 'absent (a scalar)' : `fixed at ${d}`}, not a dynamic batch axis` };
      }
      if (kind === 'input' && d !== axis) return { batchable: false, reason: `the inputs' first axes differ ("${first.name}": ${String(axis)}, "${s.name}": ${d}), so they are not one batch axis` };
      if (kind === 'output' && other.has(d)) return { batchable: false, reason: `the first axis of output "${s.name}" is "${d}", an inputs' axis other than the batch axis` };
    }
  }
  return { batchable: true, axis: String(axis) };
}

/** A batched run's answer to one caller: its own rows, and how many callers and rows shared the run. */
export interface BatchedResult {
  outputs: Record<string, Tensor>;
  /** Callers in the run that answered (1: it ran alone). */
  batchCallers: number;
  /** Rows in that run. */
  batchRows: number;
  /** Whether this caller's answer counts the run (one caller per run, so runs are counted once). */
  countsRun: boolean;
}

interface Pending {
  inputs: Record<string, Tensor>;
  rows: number;
  /** Local epoch ms past which the caller no longer waits. */
  deadline: number;
  resolve: (r: BatchedResult) => void;
  reject: (e: unknown) => void;
}

interface Group {
  tag: string;
  model: LoadedModel;
  outputs: string[] | undefined;
  opts: BatchOptions;
  pending: Pending[];
  rows: number;
  timer?: NodeJS.Timeout;
  /** When the timer fires (local epoch ms). */
  at: number;
}

export interface BatcherOptions {
  /** Called once per run of a batching function with its tag and the callers and rows in it (metrics). */
  onRun?: (run: { tag: string; callers: number; rows: number }) => void;
  /** @default Date.now */
  now?: () => number;
}

/** Queues calls per (loaded model, outputs asked, inputs' types and trailing dims) and runs them in batches. */
export class Batcher {
  private readonly groups = new Map<string, Group>();
  private readonly batchable = new WeakMap<LoadedModel, boolean>();
  private readonly ids = new WeakMap<LoadedModel, number>();
  private nextId = 0;
  private readonly now: () => number;

  constructor(private readonly o: BatcherOptions = {}) {
    this.now = o.now ?? Date.now;
  }

  /**
   * Runs `model` on `inputs`, batched with other calls of the same loaded model when `opts` asks
   * for it and the model's signature allows it (`batchability`); alone otherwise. The wait for
   * company never runs past `deadline` (local epoch ms) of any caller in the batch.
   */
  async run(model: LoadedModel, inputs: Record<string, Tensor>, outputs: string[] | undefined, opts: BatchOptions | undefined, deadline: number, tag = ''): Promise<BatchedResult> {
    if (!opts || opts.maxBatch <= 1 || !this.canBatch(model)) return { outputs: await model.run(inputs, outputs), batchCallers: 1, batchRows: rowsOf(inputs) ?? 0, countsRun: true };
    const rows = rowsOf(inputs);
    if (rows === undefined || rows >= opts.maxBatch) return this.alone(tag, model, inputs, outputs);
    const key = this.groupKey(model, inputs, outputs);
    return new Promise<BatchedResult>((resolve, reject) => {
      let g = this.groups.get(key);
      // A call that would overflow the waiting batch sends it first, then starts the next one.
      if (g && g.rows + rows > opts.maxBatch) {
        this.flush(key, g);
        g = undefined;
      }
      if (!g) {
        g = { tag, model, outputs, opts, pending: [], rows: 0, at: Infinity };
        this.groups.set(key, g);
      }
      g.pending.push({ inputs, rows, deadline, resolve, reject });
      g.rows += rows;
      if (g.rows >= opts.maxBatch) {
        this.flush(key, g);
        return;
      }
      // Waits `maxDelayMs` from the first caller, and never past the earliest deadline.
      const at = Math.min(g.pending.length === 1 ? this.now() + opts.maxDelayMs : g.at, deadline);
      if (at < g.at) {
        if (g.timer) clearTimeout(g.timer);
        const group = g;
        g.at = at;
        g.timer = setTimeout(() => this.flush(key, group), Math.max(0, at - this.now()));
      }
    });
  }

  /** Calls waiting for company, over all models (for tests and close). */
  get waiting(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.pending.length;
    return n;
  }

  private canBatch(model: LoadedModel): boolean {
    let b = this.batchable.get(model);
    if (b === undefined) this.batchable.set(model, (b = batchability(model.signature).batchable));
    return b;
  }

  private groupKey(model: LoadedModel, inputs: Record<string, Tensor>, outputs: string[] | undefined): string {
    let id = this.ids.get(model);
    if (id === undefined) this.ids.set(model, (id = this.nextId++));
    const shape = Object.entries(inputs)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, t]) => [name, t.type, t.dims.slice(1)]);
    return JSON.stringify([id, outputs ?? null, shape]);
  }

  private async alone(tag: string, model: LoadedModel, inputs: Record<string, Tensor>, outputs: string[] | undefined): Promise<BatchedResult> {
    const out = await model.run(inputs, outputs);
    this.o.onRun?.({ tag, callers: 1, rows: rowsOf(inputs) ?? 0 });
    return { outputs: out, batchCallers: 1, batchRows: rowsOf(inputs) ?? 0, countsRun: true };
  }

  private flush(key: string, g: Group): void {
    if (this.groups.get(key) === g) this.groups.delete(key);
    if (g.timer) clearTimeout(g.timer);
    const calls = g.pending;
    if (calls.length === 1) {
      const c = calls[0]!;
      this.alone(g.tag, g.model, c.inputs, g.outputs).then(c.resolve, c.reject);
      return;
    }
    void this.runBatch(g, calls);
  }

  private async runBatch(g: Group, calls: Pending[]): Promise<void> {
    let out: Record<string, Tensor>;
    try {
      out = await g.model.run(concatRows(calls.map((c) => c.inputs)), g.outputs);
      for (const t of Object.values(out)) {
        if (t.dims[0] !== g.rows) throw new Error(`an output has ${t.dims[0]} rows for ${g.rows} input rows`);
      }
    } catch {
      // One caller's input (a value the model refuses) must not fail the others, and a model whose
      // outputs do not follow its rows must not mix callers up: each runs alone and gets its own answer.
      for (const c of calls) this.alone(g.tag, g.model, c.inputs, g.outputs).then(c.resolve, c.reject);
      return;
    }
    this.o.onRun?.({ tag: g.tag, callers: calls.length, rows: g.rows });
    let row = 0;
    for (const [k, c] of calls.entries()) {
      const mine: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(out)) mine[name] = sliceRows(t, row, c.rows);
      row += c.rows;
      c.resolve({ outputs: mine, batchCallers: calls.length, batchRows: g.rows, countsRun: k === 0 });
    }
  }
}

/** The rows of a call: the first axis, when every input agrees on it; else undefined (run alone). */
export function rowsOf(inputs: Record<string, Tensor>): number | undefined {
  let rows: number | undefined;
  for (const t of Object.values(inputs)) {
    const r = t.dims[0];
    if (r === undefined || (rows !== undefined && r !== rows)) return undefined;
    rows = r;
  }
  return rows;
}

/** Concatenates calls' inputs (same names, types and trailing dims) along axis 0. */
export function concatRows(calls: ReadonlyArray<Record<string, Tensor>>): Record<string, Tensor> {
  const first = calls[0];
  if (!first) return {};
  const out: Record<string, Tensor> = {};
  for (const [name, t0] of Object.entries(first)) {
    const parts = calls.map((c) => c[name]!);
    const rows = parts.reduce((a, t) => a + t.dims[0]!, 0);
    const dims = [rows, ...t0.dims.slice(1)];
    if (t0.type === 'string') {
      out[name] = { type: 'string', dims, data: parts.flatMap((t) => t.data as string[]) };
    } else {
      const total = parts.reduce((a, t) => a + (t.data as TypedArray).length, 0);
      const data = new ARRAY_OF[t0.type](total);
      let at = 0;
      for (const t of parts) {
        const d = t.data as TypedArray;
        (data as Float32Array).set(d as Float32Array, at);
        at += d.length;
      }
      out[name] = { type: t0.type, dims, data };
    }
  }
  return out;
}

/** Rows [from, from + rows) of a tensor, copied (each caller's answer is packed on its own). */
export function sliceRows(t: Tensor, from: number, rows: number): Tensor {
  const per = t.dims.slice(1).reduce((a, d) => a * d, 1);
  const dims = [rows, ...t.dims.slice(1)];
  if (t.type === 'string') return { type: 'string', dims, data: t.data.slice(from * per, (from + rows) * per) };
  return { type: t.type, dims, data: t.data.slice(from * per, (from + rows) * per) };
}
