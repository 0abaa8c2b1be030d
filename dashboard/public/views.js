// DOM helpers and the tables. Text always goes in as text nodes, never as HTML.
import { color } from './charts.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function bytes(n) {
  if (n == null || !Number.isFinite(n)) return '-';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${u[i]}`;
}

export const ms = (n) => (n == null || !Number.isFinite(n) ? '-' : n < 10 ? `${n.toFixed(2)} ms` : n < 1000 ? `${n.toFixed(1)} ms` : `${(n / 1000).toFixed(2)} s`);
export const pct = (x) => (x == null || !Number.isFinite(x) ? '-' : `${(x * 100).toFixed(1)}%`);
export const age = (iso) => {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? `${s.toFixed(0)} s` : s < 3600 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
};

/** A table; `rows` are arrays of cells (strings, numbers or nodes); numbers are right-aligned. */
export function table(id, head, rows, empty = 'nothing yet') {
  return h(
    'table',
    { id },
    h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
    h(
      'tbody',
      {},
      rows.length === 0 ? h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, empty)) : rows.map((r) => h('tr', {}, r.map((c) => h('td', typeof c === 'number' ? { class: 'num' } : {}, c)))),
    ),
  );
}

/** Stable colour per function name across bars. */
const fnColors = new Map();
export function fnColor(name) {
  if (!fnColors.has(name)) fnColors.set(name, color(fnColors.size));
  return fnColors.get(name);
}

/** One node's memory: used against budget, stacked by the models it holds. */
export function memoryBar(n) {
  const models = [...n.residentModels].sort((a, b) => b.sizeBytes - a.sizeBytes);
  return h(
    'div',
    { class: 'mem', 'data-node': n.id },
    h('div', { class: 'mem-label' }, h('b', {}, n.id), ` ${bytes(n.usedBytes)} of ${bytes(n.budgetBytes)} (${pct(n.usedBytes / n.budgetBytes)})`),
    h(
      'div',
      { class: 'mem-bar' },
      models.map((m) =>
        h('span', {
          class: m.state === 'loading' ? 'loading' : '',
          title: `${m.fn}: ${bytes(m.sizeBytes)} ${m.state}${m.pinned ? ', pinned' : ''}${m.inFlight ? `, ${m.inFlight} in flight` : ''}`,
          style: { width: `${(100 * m.sizeBytes) / n.budgetBytes}%`, background: fnColor(m.fn) },
        }),
      ),
    ),
    h('div', { class: 'mem-legend' }, models.map((m) => h('span', {}, h('i', { style: { background: fnColor(m.fn) } }), `${m.fn} ${bytes(m.sizeBytes)}`))),
  );
}

export function functionsTable(stats, metas) {
  const rows = Object.entries(stats.functions).map(([name, f]) => {
    const calls = f.coldStarts + f.warmHits;
    return [
      h('a', { href: `#/functions/${encodeURIComponent(name)}` }, name),
      f.version,
      f.residentOn.join(', ') || '-',
      Number(f.popularity.toFixed(3)),
      f.invocations,
      f.loads,
      f.coldStarts,
      calls ? pct(f.warmHits / calls) : '-',
      `${ms(f.loadMs.p50)} / ${ms(f.loadMs.p95)}`,
      `${ms(f.execMs.p50)} / ${ms(f.execMs.p95)}`,
      bytes(f.sizeBytes),
      metas.get(name)?.options?.pinned ? 'pinned' : '',
    ];
  });
  return table('functions', ['function', 'ver', 'resident on', 'popularity', 'invocations', 'loads', 'cold starts', 'hit ratio', 'load p50/p95', 'exec p50/p95', 'memory', ''], rows, 'no functions yet: drop an .onnx file above');
}

export function nodesTable(stats) {
  return table(
    'nodes',
    ['node', 'heartbeat', 'policy', 'used / budget', 'resident models', 'loads', 'evictions', 'queue (waiting / active)'],
    stats.nodes.map((n) => {
      const q = stats.queueByNode[n.id] ?? {};
      return [n.id, `${age(n.heartbeatAt)} ago`, n.policy, `${bytes(n.usedBytes)} / ${bytes(n.budgetBytes)}`, n.residentModels.map((m) => m.fn).join(', ') || '-', n.loads, n.evictions, `${q.waiting ?? 0} / ${q.active ?? 0}`];
    }),
    'no live node',
  );
}

const CAUSE = { policy: 'evicted for memory', expired: 'keep-alive expired', retired: 'replaced by a new version', unload: 'unloaded on request', deleted: 'function deleted' };

/** The cause in words, then the reason when it says more (an unload's or deletion's reason is the cause's own words). */
function why(e) {
  const cause = CAUSE[e.cause] ?? e.cause;
  return !e.reason || e.reason === cause ? cause : `${cause}: ${e.reason}`;
}

export function evictionsTable(stats) {
  return table(
    'evictions',
    ['time', 'node', 'function', 'size', 'why'],
    stats.recentEvictions.slice(0, 20).map((e) => [new Date(e.at).toLocaleTimeString(), e.node, e.fn, bytes(e.sizeBytes), why(e)]),
    'no evictions yet',
  );
}
