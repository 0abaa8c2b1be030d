import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EvictionEvent } from './warm-pool';

/**
 * The eviction causes counted in `brulee_evictions_total`: not `deleted`, whose count would go with
 * the function's series in the same job (`forgetFunction`), as its count in /stats does.
 */
const EVICTION_CAUSES: ReadonlyArray<Exclude<EvictionEvent['cause'], 'deleted'>> = ['policy', 'expired', 'retired', 'unload'];
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The cluster-wide failover counts (queue/nodes.ts `FailoverCounts`), each shown as a counter. */
type ClusterCounts = Record<'nodeDeaths' | 'jobsRerouted' | 'duplicateRuns' | 'poisonJobs', number>;

/**
 * This process's Prometheus metrics (GET /metrics). One registry per process (not prom-client's
 * global one), so several nodes in one test process do not collide. Counters are this process's
 * own; cluster-wide totals are in /stats.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly gaugeSources: Array<() => Promise<void> | void> = [];

  readonly invocations = new Counter({ name: 'brulee_invocations_total', help: 'Invocations run by this node', labelNames: ['function', 'outcome'] as const, registers: [this.registry] });
  readonly coldStarts = new Counter({ name: 'brulee_cold_starts_total', help: 'Invocations that waited for a model load', labelNames: ['function'] as const, registers: [this.registry] });
  readonly warmHits = new Counter({ name: 'brulee_warm_hits_total', help: 'Invocations served by a resident model', labelNames: ['function'] as const, registers: [this.registry] });
  readonly loads = new Counter({ name: 'brulee_model_loads_total', help: 'Model loads (sessions created)', labelNames: ['function'] as const, registers: [this.registry] });
  readonly prewarms = new Counter({ name: 'brulee_prewarms_total', help: 'Model loads with no invocation: asked for by the load API (api) or by the eviction policy (policy)', labelNames: ['function', 'by'] as const, registers: [this.registry] });
  readonly evictions = new Counter({ name: 'brulee_evictions_total', help: 'Models dropped from the cache, by cause', labelNames: ['function', 'cause'] as const, registers: [this.registry] });
  readonly loadSeconds = new Histogram({ name: 'brulee_model_load_seconds', help: 'Model load time', labelNames: ['function'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly fetchSeconds = new Histogram({ name: 'brulee_model_fetch_seconds', help: 'Downloads of model bytes from the model store into the local cache (part of the load time)', labelNames: ['function'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly execSeconds = new Histogram({ name: 'brulee_exec_seconds', help: 'Model execution time', labelNames: ['function'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly batchSize = new Histogram({ name: 'brulee_batch_size', help: 'Invocations per onnxruntime run of functions with batching on (maxBatch > 1); 1 is a call that ran alone', labelNames: ['function'] as const, buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'brulee_queue_depth', help: 'Jobs on node queues, by state', labelNames: ['state'] as const, registers: [this.registry], collect: () => this.collectGauges() });
  readonly cacheUsed = new Gauge({ name: 'brulee_cache_used_bytes', help: 'Bytes held by resident and loading models', labelNames: ['node'] as const, registers: [this.registry] });
  readonly cacheBudget = new Gauge({ name: 'brulee_cache_budget_bytes', help: 'Cache byte budget', labelNames: ['node'] as const, registers: [this.registry] });
  readonly overheadWaits = new Gauge({
    name: 'brulee_overhead_waits',
    help: 'Loads that waited for the process overhead to leave them room (ROLE=worker): loads, seconds waited in all, loads that went ahead at the wait limit with it still there (timed_out), full garbage collections run for them (collections)',
    labelNames: ['node', 'what'] as const,
    registers: [this.registry],
  });
  readonly parked = new Gauge({
    name: 'brulee_parked',
    help: "Parked sessions (runtime/parked.ts) and pre-parked ones (runtime/prepark.ts; what=pre_*): sessions parked and taken back by a cold start so far, held now and their estimated bytes, pre-parked ones disposed with no call having taken them (pre_dropped), pre-parks not made for want of room (pre_no_room), and the wall and CPU seconds pre-parks' creates took; the same figures as /stats' nodes[].parked",
    labelNames: ['node', 'what'] as const,
    registers: [this.registry],
  });
  readonly residentModels = new Gauge({ name: 'brulee_resident_models', help: 'Models resident in the cache', labelNames: ['node'] as const, registers: [this.registry] });

  private failoverSource: (() => Promise<ClusterCounts>) | undefined;
  /** Cluster-wide (read from Redis at scrape time, so every process shows the same count). */
  readonly nodeDeaths = this.clusterCounter('brulee_node_deaths_total', 'Nodes declared dead (silent for 3 heartbeats), cluster-wide', 'nodeDeaths');
  readonly jobsRerouted = this.clusterCounter('brulee_jobs_rerouted_total', 'Jobs moved off dead or departed nodes onto live ones, cluster-wide', 'jobsRerouted');
  readonly duplicateRuns = this.clusterCounter('brulee_duplicate_runs_total', 'Runs of a job already answered (at-least-once execution after a failover), counted and never returned, cluster-wide', 'duplicateRuns');
  readonly poisonJobs = this.clusterCounter('brulee_poison_jobs_total', 'Jobs not run again because MAX_NODE_DEATHS_PER_JOB nodes died while running them, or their node lost them that many times (answered NODE_CRASHED), cluster-wide', 'poisonJobs');

  private functionsSource: (() => Promise<string[]>) | undefined;
  /** Functions whose histogram series exist (seeded at zero, or observed before the first scrape). */
  private readonly seeded = new Set<string>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'brulee_' });
  }

  /** Adds a callback that sets gauges at scrape time (queue depth, cache bytes). */
  onCollect(f: () => Promise<void> | void): void {
    this.gaugeSources.push(f);
  }

  /**
   * Where the registered functions' names come from: each scrape first adds their series at zero,
   * so a dashboard or an alert sees `brulee_cold_starts_total{function="f"} 0` from the start
   * rather than no series until the first event.
   */
  functions(source: () => Promise<string[]>): void {
    this.functionsSource = source;
  }

  private async zeroSeries(fns: string[]): Promise<void> {
    // A function registered at an earlier scrape and gone now was deleted: its series go (a name
    // registered again starts afresh, as its counts in /stats do), so they do not pile up.
    const now = new Set(fns);
    for (const fn of [...this.seeded].filter((f) => !now.has(f))) this.forgetFunction(fn);
    for (const fn of fns) {
      const f = { function: fn };
      // inc(0) leaves a counter's value as it is; it only adds the series when missing.
      for (const outcome of ['ok', 'error']) this.invocations.inc({ ...f, outcome }, 0);
      for (const c of [this.coldStarts, this.warmHits, this.loads]) c.inc(f, 0);
      for (const by of ['api', 'policy']) this.prewarms.inc({ ...f, by }, 0);
      for (const cause of EVICTION_CAUSES) this.evictions.inc({ ...f, cause }, 0);
    }
    // A histogram's zero() resets the series: only for functions it has no series of yet.
    const fresh = fns.filter((fn) => !this.seeded.has(fn));
    if (fresh.length === 0) return;
    for (const h of [this.loadSeconds, this.fetchSeconds, this.execSeconds]) {
      const have = new Set((await h.get()).values.map((v) => v.labels.function));
      for (const fn of fresh) if (!have.has(fn)) h.zero({ function: fn });
    }
    for (const fn of fresh) this.seeded.add(fn);
  }

  /**
   * Takes a deleted function's series out of every metric labelled by function: a node does at the
   * deletion (a worker process need never be scraped), and a scrape for a function registered at
   * the last one and gone now.
   */
  forgetFunction(fn: string): void {
    const f = { function: fn };
    for (const outcome of ['ok', 'error']) this.invocations.remove({ ...f, outcome });
    for (const by of ['api', 'policy']) this.prewarms.remove({ ...f, by });
    for (const cause of EVICTION_CAUSES) this.evictions.remove({ ...f, cause });
    for (const m of [this.coldStarts, this.warmHits, this.loads, this.loadSeconds, this.fetchSeconds, this.execSeconds, this.batchSize]) m.remove(f);
    this.seeded.delete(fn);
  }

  /** Where the cluster-wide failover counts come from (Redis). */
  failover(source: () => Promise<ClusterCounts>): void {
    this.failoverSource = source;
  }

  private clusterCounter(name: string, help: string, field: keyof ClusterCounts): Counter {
    const metrics = this;
    return new Counter({
      name,
      help,
      registers: [this.registry],
      async collect() {
        const counts = await metrics.failoverSource?.().catch(() => undefined);
        if (!counts) return;
        this.reset();
        this.inc(counts[field]);
      },
    });
  }

  async text(): Promise<string> {
    // Unknown (Redis away): nothing added, and above all nothing taken as deleted.
    const fns = await this.functionsSource?.().catch(() => undefined);
    if (fns) await this.zeroSeries(fns);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async collectGauges(): Promise<void> {
    await Promise.allSettled(this.gaugeSources.map((f) => f()));
  }
}
