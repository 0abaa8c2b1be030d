import { seededRandom } from '../runtime/policies/random';
import { readJson, TraceError, type SimModel, type Trace } from './trace';

/** One profiled model of a catalogue such as `../shared/models/paper-models.json`. */
export interface CatalogModel {
  readonly name: string;
  readonly sizeBytes: number;
  readonly loadMs: number;
  readonly execMs: number;
}

export const MAPPINGS = ['rank', 'roundrobin', 'random'] as const;
export type Mapping = (typeof MAPPINGS)[number];

/**
 * Reads a model catalogue in the paper's format: `{"models": [{"name", "loadSeconds",
 * "execSeconds", "sizeMB"}]}` (MB taken as 10^6 bytes, as in the Keras Applications table).
 */
export function readPaperModels(path: string): CatalogModel[] {
  const raw = readJson(path);
  const models = (raw as { models?: unknown })?.models;
  if (!Array.isArray(models) || models.length === 0) throw new TraceError(`${path}: expected {"models": [...]} with at least one model`);
  return models.map((m: Record<string, unknown>, i) => {
    const num = (k: string) => {
      const v = m?.[k];
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new TraceError(`${path}: models[${i}].${k} must be a positive number, got ${JSON.stringify(v)}`);
      return v;
    };
    const name = typeof m?.name === 'string' ? m.name : `model${i}`;
    return { name, sizeBytes: Math.round(num('sizeMB') * 1e6), loadMs: num('loadSeconds') * 1000, execMs: num('execSeconds') * 1000 };
  });
}

/**
 * Gives each trace function its own model (a distinct cache entry) with the size, load and exec
 * time of a catalogue model:
 * - `rank`: the i-th most popular of n functions takes model floor(i × M / n) of the M models
 *   sorted by load time, most costly first (popular functions get the costly models);
 * - `roundrobin`: function i (trace order) takes model i mod M;
 * - `random`: a seeded uniform choice.
 */
export function mapModels(trace: Trace, catalog: readonly CatalogModel[], mapping: Mapping, seed = 1): SimModel[] {
  const n = trace.functions.length;
  const M = catalog.length;
  const pick = new Array<number>(n);
  if (mapping === 'rank') {
    const byLoad = catalog.map((_, j) => j).sort((a, b) => catalog[b]!.loadMs - catalog[a]!.loadMs || a - b);
    const byPop = trace.functions.map((_, f) => f).sort((a, b) => trace.counts[b]! - trace.counts[a]! || a - b);
    byPop.forEach((f, i) => (pick[f] = byLoad[Math.floor((i * M) / n)]!));
  } else if (mapping === 'roundrobin') {
    for (let f = 0; f < n; f++) pick[f] = f % M;
  } else {
    const rand = seededRandom(seed);
    for (let f = 0; f < n; f++) pick[f] = Math.floor(rand() * M);
  }
  return trace.functions.map((fn, f) => {
    const m = catalog[pick[f]!]!;
    return { key: fn, sizeBytes: m.sizeBytes, loadMs: m.loadMs, execMs: m.execMs, model: m.name };
  });
}
