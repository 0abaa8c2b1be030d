/** The parts of brulee's HTTP answers the CLI reads (the full shapes are in GET /openapi.json). */

export interface TensorSpecJson {
  name: string;
  type: string;
  dims: Array<number | string>;
}

export interface FunctionJson {
  name: string;
  version: number;
  sha256: string;
  sizeBytes: number;
  signature: { inputs: TensorSpecJson[]; outputs: TensorSpecJson[] };
  profile: {
    loadMs: number;
    execMs: number | null;
    execError: string | null;
    profiledDims: Record<string, number[]>;
    residentBytes: number;
    fileBytes: number;
    memoryFactor: number | null;
  };
  options: { timeoutMs?: number; pinned?: boolean; memoryBytes?: number };
  versions: Array<{ version: number; sha256: string; fileBytes: number; createdAt: string }>;
  createdAt: string;
  updatedAt: string;
}

export interface Dist {
  p50: number | null;
  p95: number | null;
  samples: number;
}

export interface FunctionStatsJson {
  version: number;
  sizeBytes: number;
  invocations: number;
  failures: number;
  timeouts: number;
  loads: number;
  prewarms: number;
  coldStarts: number;
  warmHits: number;
  evictions: number;
  loadMs: Dist;
  execMs: Dist;
  popularity: number;
  resident: boolean;
  residentOn: string[];
}

export type QueueDepth = Record<string, number>;

export interface NodeJson {
  id: string;
  policy: string;
  budgetBytes: number;
  usedBytes: number;
  loads: number;
  evictions: number;
  residentModels: Array<{ fn: string; sizeBytes: number; state: string; pinned: boolean; inFlight: number }>;
  heartbeatAt: string;
}

export interface StatsJson {
  queue: QueueDepth;
  queueByNode: Record<string, QueueDepth>;
  functions: Record<string, FunctionStatsJson>;
  nodes: NodeJson[];
  recentEvictions: Array<{ at: string; node: string; fn: string; sizeBytes: number; reason: string; cause: string }>;
}

export interface InvokeJson {
  function?: string;
  version?: number;
  outputs: Record<string, { type: string; dims: number[]; data: unknown[] }>;
  coldStart: boolean;
  node: string;
  timings: { queueMs: number; loadMs: number; execMs: number; totalMs: number };
}
