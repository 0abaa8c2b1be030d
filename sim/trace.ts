import { readFileSync } from 'node:fs';

/**
 * A workload: invocations in time order, each naming a function. Arrays, not objects, so a run
 * over millions of invocations allocates nothing per event.
 */
export interface Trace {
  /** Arrival time of each invocation, ms from the trace start, ascending. */
  readonly times: Float64Array;
  /** Function index (into `functions`) of each invocation. */
  readonly fns: Uint32Array;
  /** Function names by index. */
  readonly functions: readonly string[];
  /** Invocations per function, by index. */
  readonly counts: Uint32Array;
  /** Span of the trace, ms (end of the last minute for Azure traces). */
  readonly spanMs: number;
  /** Where it came from, for reports. */
  readonly source: string;
}

/** What the simulator knows about the model behind one function (one cache entry). */
export interface SimModel {
  /** Cache key: the function's name. */
  readonly key: string;
  readonly sizeBytes: number;
  /** How long a load takes, ms: what a cold start waits. */
  readonly loadMs: number;
  readonly execMs: number;
  /**
   * The load time the eviction policy is told (`ModelFacts.loadMs`), when it is not `loadMs`: a
   * live node's policy ranks by the registration profile's load time, while its loads take what
   * they take (a recorded catalogue's `profileLoadMs`). @default loadMs
   */
  readonly policyLoadMs?: number;
  /** The catalogue model it was mapped to, if any (e.g. `NASNetLarge`). */
  readonly model?: string;
}

/** A bad input file: says which file and which row. */
export class TraceError extends Error {
  override readonly name = 'TraceError';
}

/** Builds a trace from unsorted (time, function index) pairs; sorts stably by time. */
export function buildTrace(
  times: ArrayLike<number>,
  fns: ArrayLike<number>,
  functions: readonly string[],
  source: string,
  spanMs?: number,
): Trace {
  const n = times.length;
  let sorted = true;
  for (let i = 1; i < n; i++) if (times[i]! < times[i - 1]!) { sorted = false; break; }
  const t = new Float64Array(n);
  const f = new Uint32Array(n);
  if (sorted) {
    t.set(times);
    f.set(fns);
  } else {
    const idx = new Uint32Array(n);
    for (let i = 0; i < n; i++) idx[i] = i;
    idx.sort((a, b) => times[a]! - times[b]! || a - b);
    for (let i = 0; i < n; i++) {
      t[i] = times[idx[i]!]!;
      f[i] = fns[idx[i]!]!;
    }
  }
  const counts = new Uint32Array(functions.length);
  for (let i = 0; i < n; i++) counts[f[i]!]!++;
  const last = n > 0 ? t[n - 1]! : 0;
  return { times: t, fns: f, functions, counts, spanMs: Math.max(spanMs ?? 0, last), source };
}

/**
 * Splits one CSV line into its fields, trimmed. A field may be quoted as RFC 4180 has it (`"a,b"`,
 * `"say ""hi"""`), as spreadsheets and `csv` writers with quoting on write them; the Azure files
 * quote nothing, and a line without a quote takes a plain split. A field cannot hold a line break.
 * @param where the file and row, for the error of a malformed quote.
 * @throws TraceError on a quote left open or text after a closing quote.
 */
export function splitCsv(line: string, where = 'CSV line'): string[] {
  if (!line.includes('"')) return line.split(',').map((s) => s.trim());
  const out: string[] = [];
  let i = 0;
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (line[i] === '"') {
      let field = '';
      let from = ++i;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) throw new TraceError(`${where}: a quoted field is not closed (a field cannot span lines)`);
        if (line[q + 1] === '"') {
          field += line.slice(from, q + 1);
          i = from = q + 2;
          continue;
        }
        field += line.slice(from, q);
        i = q + 1;
        break;
      }
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (i < line.length && line[i] !== ',') throw new TraceError(`${where}: text after the closing quote of field ${out.length + 1} (${JSON.stringify(field)})`);
      out.push(field);
    } else {
      const comma = line.indexOf(',', i);
      const field = line.slice(i, comma < 0 ? line.length : comma).trim();
      if (field.includes('"')) throw new TraceError(`${where}: field ${out.length + 1} (${JSON.stringify(field)}) has a quote inside it; quote the whole field and double the quote`);
      out.push(field);
      i = comma < 0 ? line.length : comma;
    }
    if (i >= line.length) return out;
    i++; // past the comma
  }
}

/** Lines of a text file, without a trailing empty line, with 1-based row numbers kept implicit. */
export function readLines(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TraceError(`cannot read ${path}: ${(e as Error).message}`);
  }
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  return lines;
}

/**
 * The plain trace: a header `time_ms,function`, then one invocation a line. Times may be epoch
 * milliseconds (as the runtime records them): they are shifted so the first invocation is at 0.
 * Lines need not be sorted.
 */
export function readPlainTrace(path: string): Trace {
  const lines = readLines(path);
  const header = lines[0]?.replace(/^\uFEFF/, '');
  if (header === undefined || splitCsv(header, `${path} row 1`).join(',') !== 'time_ms,function') {
    throw new TraceError(`${path} row 1: expected the header "time_ms,function", got ${JSON.stringify(header ?? '')}`);
  }
  const n = lines.length - 1;
  const times = new Float64Array(n);
  const fns = new Uint32Array(n);
  const ids = new Map<string, number>();
  const functions: string[] = [];
  let min = Infinity;
  for (let i = 0; i < n; i++) {
    const line = lines[i + 1]!;
    const row = i + 2;
    let tStr: string;
    let name: string;
    // Quoted lines through splitCsv; the rest split at the first comma, with no array a line
    // (a recording can run to millions of lines).
    if (line.includes('"')) {
      const cells = splitCsv(line, `${path} row ${row}`);
      if (cells.length !== 2) throw new TraceError(`${path} row ${row}: expected "time_ms,function", got ${JSON.stringify(line)}`);
      [tStr, name] = cells as [string, string];
    } else {
      const comma = line.indexOf(',');
      if (comma < 0) throw new TraceError(`${path} row ${row}: expected "time_ms,function", got ${JSON.stringify(line)}`);
      tStr = line.slice(0, comma).trim();
      name = line.slice(comma + 1).trim();
    }
    const t = Number(tStr);
    if (tStr === '' || !Number.isFinite(t) || t < 0) throw new TraceError(`${path} row ${row}: time_ms ${JSON.stringify(tStr)} is not a non-negative number`);
    if (name === '' || name.includes(',')) throw new TraceError(`${path} row ${row}: bad function name ${JSON.stringify(name)}`);
    let id = ids.get(name);
    if (id === undefined) {
      id = functions.length;
      ids.set(name, id);
      functions.push(name);
    }
    times[i] = t;
    fns[i] = id;
    if (t < min) min = t;
  }
  if (n > 0) for (let i = 0; i < n; i++) times[i] = times[i]! - min;
  return buildTrace(times, fns, functions, path);
}

/** A JSON file, or a TraceError naming the file. */
export function readJson(path: string): unknown {
  const text = readLines(path).join('\n');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new TraceError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * The catalogue of a plain trace: `{"<function>": {"sizeBytes": n, "loadMs": n, "execMs": n}}`
 * (the format the runtime writes to `DATA_DIR/traces/catalog.json`).
 */
export function readCatalog(path: string, trace: Trace): SimModel[] {
  const raw = readJson(path);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TraceError(`${path}: expected an object {"<function>": {"sizeBytes", "loadMs", "execMs"}}`);
  }
  const cat = raw as Record<string, unknown>;
  return trace.functions.map((fn) => {
    const m = cat[fn];
    if (m === undefined) throw new TraceError(`${path}: function ${JSON.stringify(fn)} of the trace is not in the catalogue`);
    const o = m as Record<string, unknown>;
    const num = (k: string, positive: boolean) => {
      const v = o?.[k];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (positive && v === 0)) {
        throw new TraceError(`${path}: ${JSON.stringify(fn)}.${k} must be a ${positive ? 'positive' : 'non-negative'} number, got ${JSON.stringify(v)}`);
      }
      return v;
    };
    const model: SimModel = { key: fn, sizeBytes: num('sizeBytes', true), loadMs: num('loadMs', false), execMs: num('execMs', false) };
    return o.profileLoadMs === undefined ? model : { ...model, policyLoadMs: num('profileLoadMs', false) };
  });
}

/** Sum of all models' sizes: the 100% of a budget sweep. */
export function totalBytes(models: readonly SimModel[]): number {
  let s = 0;
  for (const m of models) s += m.sizeBytes;
  return s;
}
