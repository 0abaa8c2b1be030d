/**
 * Every Redis key and channel brulee uses, in one place. `ns` is the key namespace (default
 * `brulee`), so several clusters or test runs can share one Redis.
 */
export function keys(ns = 'brulee') {
  return {
    /** BullMQ `prefix` option. */
    bullPrefix: `${ns}:bull`,
    /** BullMQ queue name of a node (names may not contain ':'). */
    nodeQueue: (nodeId: string) => `node-${nodeId}`,
    functions: `${ns}:functions`,
    fn: (name: string) => `${ns}:fn:${name}`,
    fnStats: (name: string) => `${ns}:stats:fn:${name}`,
    fnSamples: (name: string, kind: 'load' | 'exec' | 'fetch' | 'create') => `${ns}:samples:${kind}:${name}`,
    evictions: `${ns}:evictions`,
    nodes: `${ns}:nodes`,
    invocation: (id: string) => `${ns}:inv:${id}`,
    result: (jobId: string) => `${ns}:result:${jobId}`,
    popularityCounts: `${ns}:pop:counts`,
    popularityRates: `${ns}:pop:rates`,
    popularity: `${ns}:pop:share`,
    popularityLock: `${ns}:lock:popularity`,
    control: `${ns}:control`,
  };
}

export type Keys = ReturnType<typeof keys>;

/** The `type` of a control-channel message, or undefined for one that is not ours. */
export function controlType(msg: string): string | undefined {
  try {
    const m = JSON.parse(msg) as { type?: unknown };
    return typeof m.type === 'string' ? m.type : undefined;
  } catch {
    return undefined;
  }
}
