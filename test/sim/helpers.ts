import { seededRandom } from '../../runtime/policies/random';
import { buildTrace, type SimModel, type Trace } from '../../sim/trace';

/** A trace from `[timeMs, function]` pairs. */
export function traceOf(events: readonly (readonly [number, string])[]): Trace {
  const names: string[] = [];
  const ids = new Map<string, number>();
  const fns = events.map(([, f]) => {
    let id = ids.get(f);
    if (id === undefined) {
      id = names.length;
      ids.set(f, id);
      names.push(f);
    }
    return id;
  });
  return buildTrace(events.map(([t]) => t), fns, names, 'test');
}

/** One model per function of the trace, from a table (default: 1 byte, load 10 ms, exec 1 ms). */
export function modelsOf(trace: Trace, table: Record<string, Partial<Omit<SimModel, 'key'>>> = {}): SimModel[] {
  return trace.functions.map((key) => ({ key, sizeBytes: 1, loadMs: 10, execMs: 1, ...table[key] }));
}

/** A seeded random workload: `n` invocations over `fns` functions, skewed, 1 s apart on average. */
export function randomTrace(seed: number, n: number, fns: number): Trace {
  const r = seededRandom(seed);
  const ev: [number, string][] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += Math.floor(r() * 2000);
    // Skewed: low indices more popular.
    const f = Math.floor(fns * r() * r());
    ev.push([t, `f${f}`]);
  }
  return traceOf(ev);
}
