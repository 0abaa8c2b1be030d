import { BruleeError } from '../errors';

/** What the gateway knows of a live node when it routes. */
export interface NodeView {
  id: string;
  budgetBytes: number;
  usedBytes: number;
  /** Cache keys resident (or loading) on the node. */
  resident: readonly string[];
  /** Jobs waiting or active on the node's queue. */
  queued: number;
}

/**
 * Picks the node for an invocation (pure). Where the model is warm, the least queued of those
 * nodes; else the node where a cold start costs least: one with free room (no eviction), least
 * queued, then most free bytes; else the least queued node whose budget can hold the model at all.
 */
export function chooseNode(nodes: readonly NodeView[], key: string, sizeBytes: number): NodeView {
  if (nodes.length === 0) {
    throw new BruleeError('NO_NODE_AVAILABLE', 'no runtime node is alive; start one (ROLE=worker or ROLE=all) against the same Redis');
  }
  const byQueued = (a: NodeView, b: NodeView) =>
    a.queued - b.queued || b.budgetBytes - b.usedBytes - (a.budgetBytes - a.usedBytes) || (a.id < b.id ? -1 : 1);
  const warm = nodes.filter((n) => n.resident.includes(key));
  if (warm.length > 0) return [...warm].sort(byQueued)[0]!;
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
