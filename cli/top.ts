import { bar, bytes, pct } from './format';
import type { StatsSnapshot } from '../functions/dataplane';

/** Cluster-wide counters at one moment, to turn two /stats answers into rates. */
export interface Totals {
  at: number;
  invocations: number;
  coldStarts: number;
  evictions: number;
}

export function totalsOf(s: StatsSnapshot, at = Date.now()): Totals {
  const fns = Object.values(s.functions);
  const sum = (f: (x: (typeof fns)[number]) => number) => fns.reduce((a, x) => a + f(x), 0);
  return { at, invocations: sum((f) => f.invocations), coldStarts: sum((f) => f.coldStarts), evictions: sum((f) => f.evictions) };
}

/** One frame of `brulee top`: rates since the previous frame, queue depth, each node's memory by model. */
export function topFrame(s: StatsSnapshot, prev: Totals | undefined, o: { url: string; width: number }): { text: string; totals: Totals } {
  const totals = totalsOf(s);
  const dt = prev ? (totals.at - prev.at) / 1000 : 0;
  const rate = (k: keyof Omit<Totals, 'at'>) => (prev && dt > 0 ? ((totals[k] - prev[k]) / dt).toFixed(1) : '-');
  const dInv = prev ? totals.invocations - prev.invocations : 0;
  const dCold = prev ? totals.coldStarts - prev.coldStarts : 0;
  const lines = [
    `brulee top  ${o.url}  ${new Date().toISOString().slice(11, 19)}  (Ctrl-C quits)`,
    '',
    `invocations/s ${rate('invocations')}   cold starts/s ${rate('coldStarts')}   cold share ${dInv > 0 ? pct(dCold / dInv) : '-'}   evictions/s ${rate('evictions')}`,
    `totals: invocations ${totals.invocations}, cold starts ${totals.coldStarts}, evictions ${totals.evictions}`,
    `queue: ${Object.entries(s.queue).map(([k, v]) => `${k} ${v}`).join('  ')}`,
    '',
  ];
  const w = Math.max(10, Math.min(40, o.width - 90));
  for (const n of s.nodes) {
    const depth = s.queueByNode[n.id];
    lines.push(`node ${n.id} (${n.policy})  ${bar(n.usedBytes / n.budgetBytes, w)} ${bytes(n.usedBytes)} / ${bytes(n.budgetBytes)}  queue ${depth ? `${depth.waiting ?? 0} waiting, ${depth.active ?? 0} active` : '-'}`);
    const models = [...n.residentModels].sort((a, b) => b.sizeBytes - a.sizeBytes);
    for (const m of models.slice(0, 8)) lines.push(`    ${m.fn.padEnd(24)} ${bytes(m.sizeBytes).padStart(10)}  ${m.state}${m.pinned ? ', pinned' : ''}${m.inFlight ? `, ${m.inFlight} in flight` : ''}`);
    if (models.length > 8) lines.push(`    ... ${models.length - 8} more`);
    if (models.length === 0) lines.push('    (nothing resident)');
  }
  if (s.nodes.length === 0) lines.push('no live node');
  return { text: lines.join('\n'), totals };
}
