import { parseBytes } from '../config';

/** A budget: bytes, or a percentage of all models' size (`25%`). */
export type BudgetSpec = { bytes: number } | { percent: number };

export function parseBudget(s: string): BudgetSpec | undefined {
  const t = s.trim();
  if (t.endsWith('%')) {
    const p = Number(t.slice(0, -1));
    return Number.isFinite(p) && p > 0 ? { percent: p } : undefined;
  }
  const b = parseBytes(t);
  return Number.isFinite(b) && b > 0 ? { bytes: b } : undefined;
}

export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${u[i]}`;
}

/** Parses a duration in ms, or with a unit: `600000`, `10m`, `30s`, `2h`. */
export function parseDuration(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/.exec(s);
  if (!m) return NaN;
  const k = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms'];
  return Number(m[1]) * k;
}
