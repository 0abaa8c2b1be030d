import { BruleeError } from '../errors';

/** What the gateway knows of a live node when it routes. */
export interface NodeView {
  id: string;
  budgetBytes: number;
  usedBytes: number;
  /** Cache keys resident (or loading) on the node. */
  resident: readonly string[];
  /** Jobs waiting or active on the node's queue (cluster-wide: read from Redis). */
  queued: number;
  /** Jobs the node really runs at once (its cores, at most its concurrency). @default 1 */
  parallel?: number;
}

/** What a call of the model costs, for deciding whether to add a copy of a warm model. */
export interface CallCost {
  /** A cold start: fetch and session create, ms. */
  loadMs: number;
  /** One run, ms. */
  execMs: number;
  /** Calls of this model already waiting for their answers (besides the one being routed). */
  pending: number;
}

/** How long a call routed to `n` waits for the jobs ahead of it, ms (each taken to cost `execMs`). */
export function queueWaitMs(n: NodeView, execMs: number): number {
  return (n.queued * execMs) / Math.max(1, n.parallel ?? 1);
}

/**
 * Picks the node for an invocation (pure). Where the model is warm, the least queued of those
 * nodes; else the node where a cold start costs least: one with free room (no eviction), least
 * queued, then most free bytes; else the least queued node whose budget can hold the model at all.
 *
 * A warm model gets another copy when its calls would wait on its warm copies longer than a cold
 * start elsewhere takes: the wait on the best warm node (its queue × exec time) against load time
 * plus the queue of a node with free room. Only for a model with calls of its own already
 * pending (`cost.pending` ≥ 1), so a model called one at a time never gets a duplicate copy (the
 * cluster's memory is one cache), and only into free room, never evicting for a copy. Copies
 * shrink again through normal eviction. Among nodes whose load plus queue ties exactly, the copy
 * goes to the first in the order given (`liveNodes` gives them by id: the smallest id).
 */
export function chooseNode(nodes: readonly NodeView[], key: string, sizeBytes: number, cost?: CallCost): NodeView {
  if (nodes.length === 0) {
    throw new BruleeError('NO_NODE_AVAILABLE', 'no runtime node is alive; start one (ROLE=worker or ROLE=all) against the same Redis');
  }
  const byQueued = (a: NodeView, b: NodeView) =>
    a.queued - b.queued || b.budgetBytes - b.usedBytes - (a.budgetBytes - a.usedBytes) || (a.id < b.id ? -1 : 1);
  const warm = nodes.filter((n) => n.resident.includes(key));
  if (warm.length > 0) {
    const best = [...warm].sort(byQueued)[0]!;
    if (!cost || cost.pending < 1) return best;
    const wait = queueWaitMs(best, cost.execMs);
    let copy: { n: NodeView; ms: number } | undefined;
    for (const n of nodes) {
      if (n.resident.includes(key) || n.budgetBytes - n.usedBytes < sizeBytes) continue;
      const ms = cost.loadMs + queueWaitMs(n, cost.execMs);
      if (!copy || ms < copy.ms) copy = { n, ms };
    }
    return copy && copy.ms < wait ? copy.n : best;
  }
  const roomy = nodes.filter((n) => n.budgetBytes - n.usedBytes >= sizeBytes);
  if (roomy.length > 0) return [...roomy].sort(byQueued)[0]!;
  const able = nodes.filter((n) => n.budgetBytes >= sizeBytes);
  if (able.length > 0) return [...able].sort(byQueued)[0]!;
  // Registration refused models bigger than every node then alive: the nodes that could hold this
  // one are down (or were never started), which is a 503 to retry, not a 422 to fix the model.
  const biggest = Math.max(...nodes.map((n) => n.budgetBytes));
  throw new BruleeError(
    'NO_NODE_AVAILABLE',
    `no live node can hold this model now: it needs ${sizeBytes} bytes resident and the largest live node budget is ${biggest} bytes; start a node with a larger MEMORY_BUDGET (or bring back the one that held it)`,
  );
}
