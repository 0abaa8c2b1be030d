import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config';
import { parse } from 'yaml';
import { parseS3Url } from '../../store';
import { checkBruleeEnv, dockerBytes, DRAIN_S, workerMemory } from './env';

// deploy/compose.yaml, checked without a Docker engine: parsed as Compose would (YAML merge keys,
// ${VAR:-default} interpolation with nothing set), then each brulee service's environment against
// what config.ts accepts, and the wiring between services.

/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, and $$ for a literal $. */
function interpolate(text: string, env: Record<string, string> = {}): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, name?: string, op?: string, dflt?: string, bare?: string) => {
    if (all === '$$') return '$$'; // left for the container's shell; compose passes "$"
    const key = (name ?? bare)!;
    const v = env[key];
    if (op === ':-') return v ? v : (dflt ?? '');
    if (op === '-') return v !== undefined ? v : (dflt ?? '');
    if (v === undefined) throw new Error(`compose.yaml uses \${${key}} with no default`);
    return v;
  });
}

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string | number | boolean>;
  entrypoint?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  mem_limit?: string;
  ports?: string[];
  volumes?: string[];
}
const compose = parse(interpolate(readFileSync('deploy/compose.yaml', 'utf8')), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;
const brulee = Object.entries(services).filter(([, s]) => s.image === 'brulee:latest');
const envOf = (s: Service) => Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v)]));
/** The drain SIGTERM starts (server.ts), at its default: DRAIN_TIMEOUT_MS. */
const drainMs = loadConfig({}).drainTimeoutMs;

describe('deploy/compose.yaml', () => {
  it('has Redis with an append-only file on a volume, MinIO with the model bucket, one gateway and three workers', () => {
    expect(services.redis!.command).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
    expect(services.redis!.volumes).toEqual(['redis-data:/data']);
    expect(Object.keys(compose.volumes)).toEqual(expect.arrayContaining(['redis-data', 'minio-data']));
    expect(services.minio!.image).toMatch(/^minio\/minio/);
    const roles = brulee.map(([name, s]) => [name, envOf(s).ROLE]);
    expect(roles).toEqual([['gateway', 'gateway'], ['worker-1', 'worker'], ['worker-2', 'worker'], ['worker-3', 'worker']]);
    for (const [, s] of brulee) expect(s.build).toEqual({ context: '..', dockerfile: 'deploy/Dockerfile' });
  });

  it("gives every brulee service an environment config.ts accepts, with unique node ids", () => {
    const ids: string[] = [];
    for (const [name, s] of brulee) {
      const c = checkBruleeEnv(`compose service ${name}`, envOf(s));
      if (c.role === 'worker') ids.push(c.nodeId);
    }
    expect(ids).toEqual(['worker-1', 'worker-2', 'worker-3']);
  });

  it('points every brulee service at services that exist: Redis, and MinIO with the bucket that the init job creates', () => {
    const bucketJob = services['minio-bucket']!;
    for (const [name, s] of brulee) {
      const c = checkBruleeEnv(name, envOf(s));
      expect(new URL(c.redisUrl!).hostname).toBe('redis');
      expect(new URL(c.s3.endpoint!).hostname).toBe('minio');
      const { bucket } = parseS3Url(c.modelStore);
      expect(bucketJob.entrypoint?.join(' ')).toContain(`mc mb --ignore-existing store/${bucket}`);
      // The store's keys are MinIO's root user, with the same defaults.
      expect(c.s3.credentials).toEqual({ accessKeyId: services.minio!.environment!.MINIO_ROOT_USER, secretAccessKey: services.minio!.environment!.MINIO_ROOT_PASSWORD });
      expect(s.depends_on).toEqual({ redis: { condition: 'service_healthy' }, 'minio-bucket': { condition: 'service_completed_successfully' } });
      for (const dep of Object.keys(s.depends_on!)) expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
      // No volume shared with another service: each container keeps its own /data (the image's VOLUME).
      expect(s.volumes ?? []).toEqual([]);
      // SIGTERM drains for drainMs; Docker must wait at least that long before SIGKILL.
      expect(Number(/^(\d+)s$/.exec(s.stop_grace_period!)![1]) * 1000).toBeGreaterThanOrEqual(drainMs + 5000);
      expect(s.healthcheck!.test.join(' ')).toContain(`http://127.0.0.1:${c.port}/v2/health/ready`);
    }
    expect(drainMs).toBe(DRAIN_S * 1000);
  });

  it("publishes the gateway's HTTP and gRPC ports, and limits each worker's memory to MEMORY_BUDGET + overhead", () => {
    const gw = checkBruleeEnv('gateway', envOf(services.gateway!));
    expect(services.gateway!.ports).toEqual([`${gw.port}:${gw.port}`, `${gw.grpcPort}:${gw.grpcPort}`]);
    for (const [name, s] of brulee.filter(([, s]) => envOf(s).ROLE === 'worker')) {
      const c = checkBruleeEnv(name, envOf(s));
      expect(dockerBytes(s.mem_limit!), name).toBe(workerMemory(c.memoryBudget).limit);
    }
  });

  it('interpolates as Compose does', () => {
    expect(interpolate('${A:-x} ${B-y} ${C:-z} $D $$E', { A: 'a', B: '', D: 'd' })).toBe('a  z d $$E');
    expect(() => interpolate('${NOPE}')).toThrow(/no default/);
  });
});

