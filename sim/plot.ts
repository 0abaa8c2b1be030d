import type { SweepResult } from './sweep';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#000000'];

export interface PlotOptions {
  title?: string;
  /** Metric on the y axis. @default 'loadDelayPctOfExec' */
  metric?: 'loadDelayPctOfExec' | 'loadDelayMs' | 'hitRatio' | 'meanLatencyMs';
}

const LABELS = {
  loadDelayPctOfExec: 'load delay, % of execution time',
  loadDelayMs: 'load delay, ms',
  hitRatio: 'hit ratio',
  meanLatencyMs: 'mean latency, ms',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

/**
 * A self-contained SVG line chart: the metric against the budget (% of all models' size), one
 * line per policy. Opens in any browser; no library.
 */
export function plotSvg(results: readonly SweepResult[], opts: PlotOptions = {}): string {
  const metric = opts.metric ?? 'loadDelayPctOfExec';
  const W = 820, H = 520, L = 80, R = 200, T = 50, B = 60;
  const pw = W - L - R, ph = H - T - B;
  const policies = [...new Set(results.map((r) => r.policy))];
  const xMax = Math.max(...results.map((r) => r.budgetPct), 1);
  const yTicks = niceTicks(Math.max(...results.map((r) => r[metric]), 0));
  const xTicks = niceTicks(xMax);
  const yMax = yTicks[yTicks.length - 1]!;
  const xTop = xTicks[xTicks.length - 1]!;
  const x = (v: number) => L + (v / xTop) * pw;
  const y = (v: number) => T + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  if (opts.title) out.push(`<text x="${L + pw / 2}" y="24" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`);
  for (const t of yTicks) {
    out.push(`<line x1="${L}" x2="${L + pw}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${L - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const t of xTicks) {
    out.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${T}" y2="${T + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${T + ph + 18}" text-anchor="middle">${t}%</text>`);
  }
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${L + pw / 2}" y="${H - 18}" text-anchor="middle">memory budget, % of all models' size</text>`);
  out.push(`<text transform="translate(20 ${T + ph / 2}) rotate(-90)" text-anchor="middle">${esc(LABELS[metric])}</text>`);
  policies.forEach((p, k) => {
    const color = COLORS[k % COLORS.length]!;
    const pts = results.filter((r) => r.policy === p).sort((a, b) => a.budgetPct - b.budgetPct);
    const dash = p.includes('oracle') || p === 'belady' ? ' stroke-dasharray="6 4"' : '';
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${pts.map((r) => `${x(r.budgetPct).toFixed(1)},${y(r[metric]).toFixed(1)}`).join(' ')}"><title>${esc(p)}</title></polyline>`);
    for (const r of pts) {
      out.push(`<circle cx="${x(r.budgetPct).toFixed(1)}" cy="${y(r[metric]).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${p} at ${r.budgetPct.toFixed(1)}%: ${r[metric].toPrecision(4)}`)}</title></circle>`);
    }
    const ly = T + 10 + k * 20;
    out.push(`<line x1="${L + pw + 15}" x2="${L + pw + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${L + pw + 46}" y="${ly + 4}">${esc(p)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
