import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { checkBruleeEnv, DRAIN_S, quantityBytes, workerMemory } from './env';

// deploy/kubernetes/, checked offline (no cluster here): each manifest against the Kubernetes
// OpenAPI schemas (kubernetes-models: types, required fields, formats), field names against the
// schemas' vocabulary (a misspelt field is otherwise silently dropped by the API server), the
// kustomization's resource list, then what brulee needs: env vars config.ts accepts, node ids from
// the pod name, probes, the drain, memory from MEMORY_BUDGET, disruption budgets.

const DIR = 'deploy/kubernetes';
type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: any };
const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

const kustomization = parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as { resources: string[]; kind: string };
const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const objects: Array<Obj & { file: string }> = files.flatMap((f) =>
  parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${f}: ${d.errors[0]!.message}`);
    return { ...(d.toJS() as Obj), file: f };
  }),
);
const find = (kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name}`);
  return o;
};

/** Every field name the Kubernetes schemas know (from kubernetes-models' compiled validators). */
function schemaVocabulary(): Set<string> {
  const require = createRequire(import.meta.url);
  const words = new Set<string>(['apiVersion', 'kind']);
  for (const pkg of ['kubernetes-models/package.json', '@kubernetes-models/apimachinery/package.json']) {
    const dir = join(dirname(require.resolve(pkg)), '_schemas');
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.js'))) {
      for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/data\.([A-Za-z_$][\w$]*)/g)) words.add(m[1]!);
    }
  }
  return words;
}
/** Maps whose keys are the user's own (labels, ConfigMap data, resource names...). */
const FREE_FORM = new Set(['labels', 'annotations', 'matchLabels', 'data', 'stringData', 'requests', 'limits', 'nodeSelector']);
function unknownFields(o: unknown, words: Set<string>, path: string[] = []): string[] {
  if (Array.isArray(o)) return o.flatMap((x, i) => unknownFields(x, words, [...path, String(i)]));
  if (!o || typeof o !== 'object') return [];
  const last = path[path.length - 1];
  if (last && FREE_FORM.has(last)) return [];
  if (path.join('.') === 'spec.selector' && (o as { matchLabels?: unknown }).matchLabels === undefined) return []; // a Service's selector
  return Object.entries(o).flatMap(([k, v]) => (words.has(k) ? unknownFields(v, words, [...path, k]) : [[...path, k].join('.')]));
}

/** A pod template's environment as the container sees it: ConfigMap, optional Secrets absent, fieldRefs resolved. */
function podEnv(template: any, podName: string): Record<string, string> {
  const c = template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, find('ConfigMap', from.configMapRef.name).data);
    if (from.secretRef) expect(from.secretRef.optional, 'a Secret the base does not ship must be optional').toBe(true);
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName;
    else if (e.valueFrom?.secretKeyRef) expect(e.valueFrom.secretKeyRef.optional, `${e.name}: a Secret the base does not ship must be optional`).toBe(true);
    else throw new Error(`${e.name}: unexpected valueFrom`);
  }
  return env;
}
/** The drain SIGTERM starts (server.ts), at its default: DRAIN_TIMEOUT_MS. */
const drainMs = loadConfig({}).drainTimeoutMs;

describe('deploy/kubernetes (kustomize base)', () => {
  it('lists every manifest in kustomization.yaml, and each one is valid against the Kubernetes schemas', () => {
    expect(kustomization.kind).toBe('Kustomization');
    expect([...kustomization.resources].sort()).toEqual(files);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/brulee-config', 'Deployment/brulee-gateway', 'PodDisruptionBudget/brulee-gateway', 'PodDisruptionBudget/brulee-worker',
      'Service/brulee', 'Service/brulee-worker', 'Service/redis', 'StatefulSet/brulee-worker', 'StatefulSet/redis',
    ]);
    const words = schemaVocabulary();
    for (const o of objects) {
      const { file, ...manifest } = o;
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      expect(Model, `${file}: ${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model!(manifest).validate(), `${file}: ${o.kind}/${o.metadata.name}`).not.toThrow();
      expect(unknownFields(manifest, words), `${file}: ${o.kind}/${o.metadata.name} fields unknown to Kubernetes`).toEqual([]);
    }
  });

  it('runs Redis as a StatefulSet with an append-only file on a volume', () => {
    const redis = find('StatefulSet', 'redis');
    const c = redis.spec.template.spec.containers[0];
    expect(c.args).toEqual(expect.arrayContaining(['--appendonly', 'yes', '--dir', '/data']));
    expect(c.volumeMounts).toEqual([{ name: 'data', mountPath: '/data' }]);
    expect(redis.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    const svc = find('Service', 'redis');
    expect(svc.spec.selector).toEqual(redis.spec.template.metadata.labels);
    const cfg = find('ConfigMap', 'brulee-config').data;
    expect(new URL(cfg.REDIS_URL).hostname).toBe(svc.metadata.name);
    expect(Number(new URL(cfg.REDIS_URL).port)).toBe(svc.spec.ports[0].port);
  });

  it("gives the gateway and every worker an environment config.ts accepts, each worker's NODE_ID its pod name", () => {
    const gw = find('Deployment', 'brulee-gateway');
    expect(checkBruleeEnv('gateway', podEnv(gw.spec.template, 'brulee-gateway-6d9f7c7b4-x2x9q')).role).toBe('gateway');
    const w = find('StatefulSet', 'brulee-worker');
    const ids = Array.from({ length: w.spec.replicas }, (_, i) => {
      const c = checkBruleeEnv(`worker ${i}`, podEnv(w.spec.template, `${w.metadata.name}-${i}`));
      expect(c.role).toBe('worker');
      expect(c.modelStore).toMatch(/^s3:\/\//); // no shared disk between pods
      return c.nodeId;
    });
    expect(ids).toEqual(['brulee-worker-0', 'brulee-worker-1', 'brulee-worker-2']);
    // A StatefulSet's pods keep their names; ordinals up to 9999 still make valid node ids.
    expect(checkBruleeEnv('worker 9999', podEnv(w.spec.template, `${w.metadata.name}-9999`)).nodeId).toBe('brulee-worker-9999');
  });

  it('probes readiness on /v2/health/ready and liveness on /v2/health/live, and waits out the drain on termination', () => {
    expect(drainMs).toBe(DRAIN_S * 1000);
    for (const o of [find('Deployment', 'brulee-gateway'), find('StatefulSet', 'brulee-worker')]) {
      const spec = o.spec.template.spec;
      const c = spec.containers[0];
      const port = c.ports.find((p: { name: string }) => p.name === 'http');
      const env = podEnv(o.spec.template, 'p-0');
      expect(port.containerPort).toBe(Number(env.PORT));
      expect(c.readinessProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
      expect(c.livenessProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' });
      const preStopS = Number(c.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
      expect(spec.terminationGracePeriodSeconds, o.metadata.name).toBeGreaterThanOrEqual(preStopS + DRAIN_S + 5);
      expect(spec.terminationGracePeriodSeconds, o.metadata.name).toBeLessThanOrEqual(preStopS + DRAIN_S + 15);
      expect(spec.securityContext.runAsNonRoot).toBe(true);
      // /data and /tmp are the only writable paths (model cache, tsx's compile cache).
      expect(c.volumeMounts.map((m: { mountPath: string }) => m.mountPath).sort()).toEqual(['/data', '/tmp']);
      expect(env.DATA_DIR).toBe('/data');
    }
    const svc = find('Service', 'brulee');
    expect(svc.spec.selector).toEqual(find('Deployment', 'brulee-gateway').spec.template.metadata.labels);
  });

  it("sizes each worker's memory from MEMORY_BUDGET plus the measured fixed overhead, and its disk from MODEL_CACHE_BYTES", () => {
    const w = find('StatefulSet', 'brulee-worker');
    const c = checkBruleeEnv('worker', podEnv(w.spec.template, 'brulee-worker-0'));
    const { requests, limits } = w.spec.template.spec.containers[0].resources;
    expect(quantityBytes(requests.memory)).toBe(workerMemory(c.memoryBudget).request);
    expect(quantityBytes(limits.memory)).toBe(workerMemory(c.memoryBudget).limit);
    const data = w.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'data');
    expect(quantityBytes(data.emptyDir.sizeLimit)).toBeGreaterThan(c.modelCacheBytes);
  });

  it('keeps disruptions bounded: at most one worker, and never every gateway, out at a time', () => {
    const pdbW = find('PodDisruptionBudget', 'brulee-worker');
    expect(pdbW.spec.maxUnavailable).toBe(1);
    expect(pdbW.spec.selector.matchLabels).toEqual(find('StatefulSet', 'brulee-worker').spec.template.metadata.labels);
    const pdbG = find('PodDisruptionBudget', 'brulee-gateway');
    const gw = find('Deployment', 'brulee-gateway');
    expect(pdbG.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(pdbG.spec.minAvailable).toBeLessThan(gw.spec.replicas);
    expect(pdbG.spec.selector.matchLabels).toEqual(gw.spec.template.metadata.labels);
  });
});
