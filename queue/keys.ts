/**
 * Every Redis key and channel brulee uses, in one place. `ns` is the key namespace (default
 * `brulee`), so several clusters or test runs can share one Redis.
 */
export function keys(ns = 'brulee') {
  const bullPrefix = `${ns}:bull`;
  const nodeQueue = (nodeId: string) => `node-${nodeId}`;
  return {
    /** BullMQ `prefix` option. */
    bullPrefix,
    /** BullMQ queue name of a node (names may not contain ':'). */
    nodeQueue,
    /** BullMQ's lock of job `id` on node `nodeId`'s queue: the token of the worker that holds it. */
    jobLock: (nodeId: string, id: string) => `${bullPrefix}:${nodeQueue(nodeId)}:${id}:lock`,
    /** A node's lane: the list its sync invocations wait on, newest at the head (queue/lane.ts). */
    lane: (nodeId: string) => `${ns}:lane:${nodeId}`,
    /** The lane's jobs a node has taken and not yet answered (moved back by the reaper if the node dies). */
    laneActive: (nodeId: string) => `${ns}:lane:${nodeId}:active`,
    functions: `${ns}:functions`,
    fn: (name: string) => `${ns}:fn:${name}`,
    fnStats: (name: string) => `${ns}:stats:fn:${name}`,
    fnSamples: (name: string, kind: 'load' | 'exec' | 'fetch' | 'create') => `${ns}:samples:${kind}:${name}`,
    evictions: `${ns}:evictions`,
    nodes: `${ns}:nodes`,
    /** Sorted set: node id -> Redis time of its last heartbeat (liveness, on one clock). */
    alive: `${ns}:nodes:alive`,
    /** Node id -> token of the process that holds it (node ids are unique while they live). */
    nodeOwner: `${ns}:nodes:owner`,
    /** Node id -> JSON of a node declared dead or gone; the reaper moves jobs off their queues. */
    deadNodes: `${ns}:nodes:dead`,
    /** Node id -> jobs moved off its queue. */
    jobsMoved: `${ns}:nodes:moved`,
    /** Set: the queued jobs counted as moved off dead node `nodeId`'s queue, `<id>@<its death>` (the reaper counts each once, queue/reaper.ts). */
    jobsMovedIds: (nodeId: string) => `${ns}:nodes:moved:${nodeId}`,
    /** Cluster-wide failover counters (nodeDeaths, jobsRerouted, duplicateRuns, poisonJobs). */
    cluster: `${ns}:cluster`,
    /** Set: the deaths (`<node>@<its last beat>`) of the processes that were running job `id` (queue/poison.ts); an earlier version added '!' once it was given up. */
    jobDeaths: (id: string) => `${ns}:job-deaths:${id}`,
    /** This cluster's id (a uuid set once), by which it tells a model store it uses it (functions/registry.ts `storeShared`). */
    clusterId: `${ns}:cluster:id`,
    reaperLock: `${ns}:lock:reaper`,
    /** A gateway's reply stream: every node writes the answers of that gateway's sync calls here. */
    replies: (gatewayId: string) => `${ns}:replies:${gatewayId}`,
    /** Set once when a sync call is answered, to its answer's token ('1' for a call counted with no answer sent, queue/replies.ts): a second run of the same job finds it and is counted, not sent. A lane job queued without admission sets it to 'q' first (queued once, queue/lane.ts). */
    answered: (id: string) => `${ns}:answered:${id}`,
    /** Set once when counts with no call behind them are applied (queue/replies.ts `applyCounts`): the same script sent again finds it and writes nothing. */
    counted: (token: string) => `${ns}:counted:${token}`,
    /** Set: the tokens of call `id`'s answers given after its first (duplicate runs), so that one sent again is not counted again (queue/replies.ts). */
    again: (id: string) => `${ns}:answered:${id}:again`,
    invocation: (id: string) => `${ns}:inv:${id}`,
    /** Sorted set: a function's accepted, unanswered invocations -> their deadline (queue/admission.ts). */
    admitted: (fn: string) => `${ns}:admitted:${fn}`,
    /** Sorted set: accepted, unanswered invocations as `<id>:<input bytes>` -> their deadline, all functions (queue/admission.ts). */
    queuedBytes: `${ns}:queued-bytes`,
    /** The sum of the input bytes in `queuedBytes`. */
    queuedBytesTotal: `${ns}:queued-bytes:total`,
    /** An async invocation's answer (outputs or error), whichever node ran it. Set once (NX). */
    result: (id: string) => `${ns}:result:${id}`,
    /** Sorted set per model sha256: registrations storing those bytes now (token -> expiry); a deletion leaves them (functions/model-bytes.ts). */
    storing: (sha256: string) => `${ns}:storing:${sha256}`,
    /** Set while a deletion removes a model's bytes from the store: a registration of them waits (functions/model-bytes.ts). */
    removing: (sha256: string) => `${ns}:removing:${sha256}`,
    /** An invocation's input bytes, when too large to travel inline (see `WireTensors`). */
    inputs: (id: string) => `${ns}:in:${id}`,
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
