import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../runtime/policies/random';
import { buildTrace, readLines, splitCsv, TraceError, type SimModel, type Trace } from './trace';

export type Spread = 'even' | 'random';

export interface AzureOptions {
  /** How a minute's invocations are placed inside it. @default 'even' */
  spread?: Spread;
  /** Seed for `spread: 'random'`. @default 1 */
  seed?: number;
}

/** One function's row of durations.csv / memory.csv (when present). */
export interface AzureFunctionInfo {
  readonly name: string;
  readonly trigger: string;
  readonly avgDurationMs?: number;
  readonly avgMemoryMb?: number;
}

export interface AzureTrace extends Trace {
  /** The minute labels of the columns read (e.g. 480..959). */
  readonly minutes: readonly number[];
  readonly info: readonly AzureFunctionInfo[];
}

const KEY_COLUMNS = ['HashOwner', 'HashApp', 'HashFunction', 'Trigger'];

/**
 * Reads the Azure Functions 2019 trace format ("Serverless in the Wild", ATC'20): a directory with
 * `invocations.csv` (HashOwner, HashApp, HashFunction, Trigger, then one column per minute holding
 * that minute's count), and optionally `durations.csv` and `memory.csv`. Any number of functions
 * and any span of minute columns. Minute m's c invocations are placed at
 * `(m - first) × 60000 + (j + 0.5) × 60000 / c` for j = 0..c-1 (`even`), or uniformly at random
 * inside the minute with a seeded generator (`random`).
 * @throws TraceError naming the file and row of a malformed line.
 */
export function readAzure(dir: string, opts: AzureOptions = {}): AzureTrace {
  const spread = opts.spread ?? 'even';
  const invPath = join(dir, 'invocations.csv');
  if (!existsSync(invPath)) throw new TraceError(`${dir}: no invocations.csv (expected the Azure Functions 2019 trace format)`);
  const lines = readLines(invPath);
  const header = splitCsv(lines[0]?.replace(/^\uFEFF/, '') ?? '', `${invPath} row 1`);
  for (let c = 0; c < KEY_COLUMNS.length; c++) {
    if (header[c] !== KEY_COLUMNS[c]) {
      throw new TraceError(`${invPath} row 1: column ${c + 1} must be ${KEY_COLUMNS[c]}, got ${JSON.stringify(header[c] ?? '')}`);
    }
  }
  const minutes = header.slice(KEY_COLUMNS.length).map((h, k) => {
    const m = Number(h);
    if (h === '' || !Number.isInteger(m)) throw new TraceError(`${invPath} row 1: minute column ${k + 5} is ${JSON.stringify(h)}, not an integer`);
    return m;
  });
  if (minutes.length === 0) throw new TraceError(`${invPath} row 1: no minute columns`);
  for (let k = 1; k < minutes.length; k++) {
    if (minutes[k]! <= minutes[k - 1]!) throw new TraceError(`${invPath} row 1: minute columns must increase (${minutes[k - 1]} then ${minutes[k]})`);
  }
  const first = minutes[0]!;
  const functions: string[] = [];
  const triggers: string[] = [];
  const rows: Uint32Array[] = [];
  const seen = new Set<string>();
  let total = 0;
  for (let r = 1; r < lines.length; r++) {
    const row = r + 1;
    const cells = splitCsv(lines[r]!, `${invPath} row ${row}`);
    if (cells.length !== header.length) {
      throw new TraceError(`${invPath} row ${row}: ${cells.length} columns, the header has ${header.length}`);
    }
    const name = cells[2]!;
    if (name === '') throw new TraceError(`${invPath} row ${row}: empty HashFunction`);
    // The same function hash can appear under two apps; keep them apart as distinct functions.
    const key = seen.has(name) ? `${cells[1]}/${name}` : name;
    if (seen.has(key)) throw new TraceError(`${invPath} row ${row}: function ${name} of app ${cells[1]} appears twice`);
    seen.add(key);
    const counts = new Uint32Array(minutes.length);
    for (let k = 0; k < minutes.length; k++) {
      const s = cells[k + KEY_COLUMNS.length]!;
      const v = s === '' ? NaN : Number(s);
      if (!Number.isInteger(v) || v < 0) {
        throw new TraceError(`${invPath} row ${row}: minute ${minutes[k]} count ${JSON.stringify(s)} is not a non-negative integer`);
      }
      counts[k] = v;
      total += v;
    }
    functions.push(key);
    triggers.push(cells[3]!);
    rows.push(counts);
  }
  const times = new Float64Array(total);
  const fns = new Uint32Array(total);
  const rand = seededRandom(opts.seed ?? 1);
  let p = 0;
  for (let k = 0; k < minutes.length; k++) {
    const base = (minutes[k]! - first) * 60_000;
    const start = p;
    for (let f = 0; f < rows.length; f++) {
      const c = rows[f]![k]!;
      for (let j = 0; j < c; j++) {
        times[p] = spread === 'even' ? base + ((j + 0.5) * 60_000) / c : base + rand() * 60_000;
        fns[p++] = f;
      }
    }
    sortRange(times, fns, start, p);
  }
  const spanMs = (minutes[minutes.length - 1]! - first + 1) * 60_000;
  const trace = buildTrace(times, fns, functions, dir, spanMs);
  return { ...trace, minutes, info: readInfo(dir, functions, triggers) };
}

/**
 * Sorts one minute's slice by time (stable by function order for equal times): what sorting the
 * positions by (time, position) gives, in linear time for the spread-out times of a minute. The
 * times go into as many buckets as there are calls (a bucket by a monotone function of the
 * time), in order, so equal times keep their order; then each bucket is put in order by an
 * insertion sort that moves a call only past later ones (stable).
 */
export function sortRange(times: Float64Array, fns: Uint32Array, from: number, to: number): void {
  const n = to - from;
  if (n < 2) return;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = from; i < to; i++) {
    const t = times[i]!;
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  if (!(hi > lo)) {
    if (hi === lo) return; // one time: already in order
    sortRangeByCompare(times, fns, from, to); // NaN somewhere
    return;
  }
  const scale = n / (hi - lo);
  const bucketOf = (t: number) => Math.min(n - 1, Math.floor((t - lo) * scale));
  const start = new Uint32Array(n + 1);
  for (let i = from; i < to; i++) start[bucketOf(times[i]!) + 1]!++;
  for (let b = 0; b < n; b++) start[b + 1]! += start[b]!;
  const t = new Float64Array(n);
  const f = new Uint32Array(n);
  const fill = start.slice(0, n);
  for (let i = from; i < to; i++) {
    const k = fill[bucketOf(times[i]!)]!++;
    t[k] = times[i]!;
    f[k] = fns[i]!;
  }
  for (let b = 0; b < n; b++) {
    const end = start[b + 1]!;
    for (let k = start[b]! + 1; k < end; k++) {
      const tk = t[k]!;
      if (!(t[k - 1]! > tk)) continue;
      const fk = f[k]!;
      let j = k - 1;
      while (j >= start[b]! && t[j]! > tk) {
        t[j + 1] = t[j]!;
        f[j + 1] = f[j]!;
        j--;
      }
      t[j + 1] = tk;
      f[j + 1] = fk;
    }
  }
  times.set(t, from);
  fns.set(f, from);
}

/** `sortRange` by a comparison sort of the positions by (time, position). */
export function sortRangeByCompare(times: Float64Array, fns: Uint32Array, from: number, to: number): void {
  const n = to - from;
  if (n < 2) return;
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = from + i;
  idx.sort((a, b) => times[a]! - times[b]! || a - b);
  const t = times.slice(from, to);
  const f = fns.slice(from, to);
  for (let i = 0; i < n; i++) {
    times[from + i] = t[idx[i]! - from]!;
    fns[from + i] = f[idx[i]! - from]!;
  }
}

/** Durations and memory, keyed by HashFunction, where the files exist. */
function readInfo(dir: string, functions: readonly string[], triggers: readonly string[]): AzureFunctionInfo[] {
  const dur = readColumn(join(dir, 'durations.csv'), 'HashFunction', 'Average');
  const mem = readColumn(join(dir, 'memory.csv'), 'HashFunction', 'AverageAllocatedMb');
  return functions.map((name, i) => {
    const bare = name.includes('/') ? name.slice(name.indexOf('/') + 1) : name;
    const d = dur.get(bare);
    const m = mem.get(bare);
    return { name, trigger: triggers[i]!, ...(d !== undefined ? { avgDurationMs: d } : {}), ...(m !== undefined ? { avgMemoryMb: m } : {}) };
  });
}

function readColumn(path: string, keyCol: string, valCol: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!existsSync(path)) return out;
  const lines = readLines(path);
  const header = splitCsv(lines[0]?.replace(/^\uFEFF/, '') ?? '', `${path} row 1`);
  const ki = header.indexOf(keyCol);
  const vi = header.indexOf(valCol);
  if (ki < 0 || vi < 0) throw new TraceError(`${path} row 1: expected columns ${keyCol} and ${valCol}`);
  for (let r = 1; r < lines.length; r++) {
    const cells = splitCsv(lines[r]!, `${path} row ${r + 1}`);
    if (cells.length !== header.length) throw new TraceError(`${path} row ${r + 1}: ${cells.length} columns, the header has ${header.length}`);
    const v = Number(cells[vi]);
    if (!Number.isFinite(v) || v < 0) throw new TraceError(`${path} row ${r + 1}: ${valCol} ${JSON.stringify(cells[vi])} is not a non-negative number`);
    out.set(cells[ki]!, v);
  }
  return out;
}

/**
 * Models from the trace itself, when no catalogue is given: size from memory.csv's average
 * allocation, exec time from durations.csv's average, load time = `loadRatio` × exec time (the
 * trace has no load times; the paper's models load in 4× to 43× their exec time).
 */
export function modelsFromAzure(trace: AzureTrace, loadRatio = 10): SimModel[] {
  const known = trace.info.filter((i) => i.avgDurationMs !== undefined && i.avgMemoryMb !== undefined);
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 1;
  const dMed = median(known.map((i) => i.avgDurationMs!));
  const mMed = median(known.map((i) => i.avgMemoryMb!));
  return trace.info.map((i) => {
    const execMs = Math.max(1, i.avgDurationMs ?? dMed);
    return { key: i.name, sizeBytes: Math.max(1, Math.round((i.avgMemoryMb ?? mMed) * 1024 * 1024)), loadMs: execMs * loadRatio, execMs };
  });
}
