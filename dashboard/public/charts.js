// Live time-series charts on uPlot (served from node_modules, see dashboard/index.ts).
import uPlot from '/ui/vendor/uPlot.esm.js';

const COLORS = ['#c8862a', '#3b7dd8', '#d0453a', '#3a9d5d', '#8a5cc2', '#777', '#d4a017', '#1f9fa8'];
export const color = (i) => COLORS[i % COLORS.length];

/**
 * A chart of a few series over the last `keep` points. `push(t, values)` appends one point
 * (t in seconds) and redraws; `drawn` counts redraws, which the browser test reads.
 */
export class LiveChart {
  constructor(el, { title, series, unit = '', keep = 300, height = 180 }) {
    this.keep = keep;
    this.data = [[], ...series.map(() => [])];
    this.drawn = 0;
    const fmt = (u, v) => (v == null ? '-' : `${+v.toFixed(unit === '%' ? 1 : 2)}${unit}`);
    this.plot = new uPlot(
      {
        title,
        width: Math.max(280, el.clientWidth || 420),
        height,
        series: [{}, ...series.map((label, i) => ({ label, stroke: color(i), width: 2, value: fmt }))],
        axes: [{}, { values: (u, vals) => vals.map((v) => `${+v.toFixed(2)}${unit}`), size: 60 }],
        scales: { x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] }, y: { range: (u, min, max) => [0, Math.max(max, unit === '%' ? 1 : 1) * 1.1] } },
        hooks: { draw: [() => (this.drawn += 1)] },
      },
      this.data,
      el,
    );
    el.dataset.chart = title;
    el.__chart = this;
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(280, el.clientWidth), height })).observe(el);
  }

  push(t, values) {
    this.data[0].push(t);
    values.forEach((v, i) => this.data[i + 1].push(v));
    if (this.data[0].length > this.keep) for (const s of this.data) s.shift();
    this.plot.setData(this.data);
  }
}
