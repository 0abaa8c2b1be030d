import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { mlpModel } from '../../models/generate';
import { floats, ort, readModel, REAL_MODELS, runDirect } from './models';
import type { Proc } from './procs';

/**
 * A failover drill's parts, shared by the test (`test/integration/failover.test.ts`) and the soak
 * (`bench/failover.soak.ts`): real models with golden outputs from onnxruntime run directly, a
 * bounded stream of calls, and a check that every call got exactly one answer, the right one.
 */

type JsonTensor = { type: string; dims: number[]; data: Array<number | string> };

export interface Case {
  fn: string;
  inputs: Record<string, JsonTensor>;
  /** Golden outputs, as JSON numbers. */
  want: Record<string, number[]>;
}

export interface Workload {
  models: Array<{ fn: string; bytes: Uint8Array }>;
  cases: Case[];
}

function jsonOf(t: ort.Tensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v === 0 ? 0 : v));
}

/** PP-OCR cls and Silero VAD (npm packages) and three generated MLPs; `variants` inputs each. */
export async function buildWorkload(variants = 3): Promise<Workload> {
  const models: Workload['models'] = [
    { fn: 'ocr-cls', bytes: readModel(REAL_MODELS.ocrCls) },
    { fn: 'vad', bytes: readModel(REAL_MODELS.sileroVad) },
    ...[1, 2, 3].map((seed) => ({ fn: `mlp${seed}`, bytes: mlpModel({ inputSize: 16, hidden: [64, 64], outputSize: 4, seed }) })),
  ];
  const cases: Case[] = [];
  for (let v = 0; v < variants; v++) {
    for (const m of models) {
      let inputs: Record<string, JsonTensor>;
      let feeds: Record<string, ort.Tensor>;
      if (m.fn === 'ocr-cls') {
        const img = floats(3 * 48 * 192, 100 + v);
        inputs = { x: { type: 'float32', dims: [1, 3, 48, 192], data: img } };
        feeds = { x: new ort.Tensor('float32', Float32Array.from(img), [1, 3, 48, 192]) };
      } else if (m.fn === 'vad') {
        const audio = floats(512, 200 + v).map((x) => Math.fround(x * 0.1));
        inputs = { input: { type: 'float32', dims: [1, 512], data: audio }, state: { type: 'float32', dims: [2, 1, 128], data: new Array(256).fill(0) }, sr: { type: 'int64', dims: [], data: [16000] } };
        feeds = { input: new ort.Tensor('float32', Float32Array.from(audio), [1, 512]), state: new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]), sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), []) };
      } else {
        const x = floats(16, 300 + v);
        inputs = { x: { type: 'float32', dims: [1, 16], data: x } };
        feeds = { x: new ort.Tensor('float32', Float32Array.from(x), [1, 16]) };
      }
      const out = await runDirect(m.bytes, feeds);
      cases.push({ fn: m.fn, inputs, want: Object.fromEntries(Object.entries(out).map(([k, t]) => [k, jsonOf(t)])) });
    }
  }
  return { models, cases };
}

export async function register(base: string, models: Workload['models'], query = ''): Promise<void> {
  for (const m of models) {
    const r = await fetch(`${base}/functions/${m.fn}${query}`, { method: 'PUT', body: m.bytes, headers: { 'content-type': 'application/octet-stream' } });
    if (r.status !== 201 && r.status !== 200) throw new Error(`registering ${m.fn}: ${r.status} ${await r.text()}`);
  }
}

export interface CallResult {
  i: number;
  fn: string;
  /** HTTP status of the final answer; 0 when none came (lost or hanging). */
  status: number;
  /** Error code of a non-200. */
  code?: string;
  node?: string;
  sentAt: number;
  doneAt: number;
  /** Outputs equal onnxruntime's. */
  right: boolean;
  /** More than one final answer seen for this call (never expected). */
  answers: number;
}

function sameOutputs(c: Case, outputs: Record<string, { data: number[] }> | undefined): boolean {
  if (!outputs) return false;
  for (const [name, want] of Object.entries(c.want)) {
    const got = outputs[name]?.data;
    if (!got || got.length !== want.length) return false;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return false;
  }
  return true;
}

export interface StreamOptions {
  base: string;
  cases: Case[];
  total: number;
  concurrency: number;
  async?: boolean;
  /** Give up on one call (sync: the HTTP request; async: polling) after this long: it counts as lost. */
  giveUpMs?: number;
  /** Each lane waits this long between its calls (a paced stream that lasts a while). @default 0 */
  pauseMs?: number;
  /** Called after each answer, with the number answered so far. */
  onAnswer?(done: number, r: CallResult): void;
}

/** Sends `total` calls, `concurrency` at a time, cycling through the cases; resolves when each has its answer or was given up. */
export async function stream(o: StreamOptions): Promise<CallResult[]> {
  const results: CallResult[] = [];
  let next = 0;
  const giveUp = o.giveUpMs ?? 60_000;
  const one = async (i: number): Promise<CallResult> => {
    const c = o.cases[i % o.cases.length]!;
    const sentAt = Date.now();
    const r: CallResult = { i, fn: c.fn, status: 0, sentAt, doneAt: 0, right: false, answers: 0 };
    const body = JSON.stringify({ inputs: c.inputs });
    try {
      const res = await fetch(`${o.base}/functions/${c.fn}/invoke${o.async ? '?async=true' : ''}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(giveUp),
      });
      let j = (await res.json()) as any;
      let status = res.status;
      if (o.async && status === 202) {
        status = 0;
        const until = sentAt + giveUp;
        while (Date.now() < until) {
          const s = await fetch(`${o.base}/invocations/${j.id}`, { signal: AbortSignal.timeout(giveUp) });
          const sj = (await s.json()) as any;
          if (s.status !== 200 || sj.status === 'failed') {
            status = s.status === 200 ? 500 : s.status;
            j = sj;
            r.answers++;
            break;
          }
          if (sj.status === 'completed') {
            status = 200;
            j = sj;
            r.answers++;
            // Asked again, the answer is the same one (not a second run's).
            const again = (await (await fetch(`${o.base}/invocations/${sj.id}`)).json()) as any;
            if (again.node !== sj.node || JSON.stringify(again.outputs) !== JSON.stringify(sj.outputs)) r.answers++;
            break;
          }
          await new Promise((res2) => setTimeout(res2, 50));
        }
      } else {
        r.answers = 1;
      }
      r.status = status;
      if (status === 200) {
        r.node = j.node;
        r.right = sameOutputs(c, j.outputs);
      } else if (status !== 0) {
        r.code = j?.error?.code ?? JSON.stringify(j);
      }
    } catch {
      r.status = 0;
    }
    r.doneAt = Date.now();
    return r;
  };
  const lanes = Array.from({ length: o.concurrency }, async () => {
    while (next < o.total) {
      const r = await one(next++);
      results.push(r);
      o.onAnswer?.(results.length, r);
      if (o.pauseMs) await new Promise((res) => setTimeout(res, o.pauseMs));
    }
  });
  await Promise.all(lanes);
  return results.sort((a, b) => a.i - b.i);
}

export interface Tally {
  sent: number;
  answered: number;
  right: number;
  wrong: number;
  lost: number;
  /** Calls with more than one final answer. */
  duplicated: number;
  byStatus: Record<string, number>;
}

export function tally(rs: CallResult[]): Tally {
  const byStatus: Record<string, number> = {};
  for (const r of rs) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  return {
    sent: rs.length,
    answered: rs.filter((r) => r.status !== 0).length,
    right: rs.filter((r) => r.right).length,
    wrong: rs.filter((r) => r.status === 200 && !r.right).length,
    lost: rs.filter((r) => r.status === 0).length,
    duplicated: rs.filter((r) => r.answers > 1).length,
    byStatus,
  };
}

export async function stats(base: string): Promise<any> {
  return (await fetch(`${base}/stats`)).json();
}

/** The live worker with the most jobs waiting or running on its queue. */
export async function busiest(base: string, workers: Proc[]): Promise<{ proc: Proc; depth: number } | undefined> {
  const s = await stats(base);
  let best: { proc: Proc; depth: number } | undefined;
  for (const w of workers) {
    if (w.child.exitCode !== null || w.child.signalCode !== null) continue;
    const d = s.queueByNode?.[w.nodeId!];
    const depth = d ? d.waiting + d.active + d.prioritized : 0;
    if (!best || depth > best.depth) best = { proc: w, depth };
  }
  return best;
}

/**
 * Resolves with the worker that starts fetching a model it did not hold (a new folder in its local
 * model cache: the model's bytes, or the optimized artifact the profiler derived from them),
 * polling every 2 ms. Call just before the call that makes it load.
 */
export async function whoLoads(workers: Proc[], _bytes: Uint8Array, timeoutMs: number): Promise<Proc | undefined> {
  const list = (w: Proc) => {
    try {
      return readdirSync(join(w.dataDir, 'model-cache'));
    } catch {
      return [];
    }
  };
  const before = new Map(workers.map((w) => [w, new Set(list(w))]));
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    for (const w of workers) if (list(w).some((e) => !e.startsWith('.') && !before.get(w)!.has(e))) return w;
    await new Promise((r) => setTimeout(r, 2));
  }
  return undefined;
}

/** Polls /stats until `n` node deaths are counted; resolves to when (epoch ms), or undefined. */
export async function deathsReach(base: string, n: number, timeoutMs: number): Promise<number | undefined> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const s = await stats(base).catch(() => undefined);
    if ((s?.failover?.nodeDeaths ?? 0) >= n) return Date.now();
    await new Promise((r) => setTimeout(r, 25));
  }
  return undefined;
}
