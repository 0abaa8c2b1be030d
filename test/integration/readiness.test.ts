import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type GrpcServer } from '../../functions/grpc/server';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * Liveness and readiness, as a Kubernetes probe or a load balancer reads them. Live: the process
 * answers (/v2/health/live, gRPC ServerLive), whatever else is down, so a probe never restarts a
 * gateway for want of workers. Ready: it can serve a call now, Redis reachable and some runtime
 * node alive (/v2/health/ready, gRPC ServerReady, and /healthz, which says why not); with no live
 * node it is not ready (/v2/health/ready and model ready 400, the protocol's 4xx and Triton's
 * status; /healthz 503), so traffic goes to a gateway that can serve, and it is 200 again once a
 * node is.
 */

const PROTO_DIR = fileURLToPath(new URL('../../functions/grpc/', import.meta.url));
const started: TestBrulee[] = [];
let server: GrpcServer | undefined;
afterAll(async () => {
  await server?.close(1000);
  for (const b of started.reverse()) await b.destroy();
});

describe('a gateway with no live node', () => {
  it('is live and not ready (400, /healthz 503) on every probe; ready once a node beats; not ready again once it left', async () => {
    const gw = await startBrulee({ ROLE: 'gateway' });
    started.push(gw);
    server = await startGrpcServer({ dataPlane: gw.dataPlane, authorize: gw.authorize, log: gw.log, host: '127.0.0.1', port: 0, maxRequestBytes: 1 << 20 });
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(join(PROTO_DIR, 'inference.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })) as any;
    const client = new pkg.inference.GRPCInferenceService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const rpc = (m: string) => new Promise<any>((resolve, reject) => client[m]({}, (e: unknown, r: unknown) => (e ? reject(e) : resolve(r))));
    const probes = async () => ({
      live: (await gw.json('GET', '/v2/health/live')).status,
      ready: (await gw.json('GET', '/v2/health/ready')).status,
      modelReady: await gw.json('GET', '/v2/models/m/ready'),
      healthz: await gw.json('GET', '/healthz'),
      grpcLive: (await rpc('ServerLive')).live,
      grpcReady: (await rpc('ServerReady')).ready,
    });
    try {
      expect((await gw.put('m', mlpModel({ inputSize: 4, hidden: [4], outputSize: 2 }))).status).toBe(201);
      expect(await probes()).toEqual({ live: 200, ready: 400, modelReady: { status: 400, body: { name: 'm', ready: false } }, healthz: { status: 503, body: { status: 'no live node', redis: 'ok', nodes: 0 } }, grpcLive: true, grpcReady: false });

      const worker = await startBrulee({ ROLE: 'worker' }, { namespace: gw.namespace, dataDir: gw.dataDir, nodeId: 'w1' });
      started.push(worker);
      expect(await probes()).toEqual({ live: 200, ready: 200, modelReady: { status: 200, body: { name: 'm', ready: true } }, healthz: { status: 200, body: { status: 'ok', redis: 'ok', nodes: 1 } }, grpcLive: true, grpcReady: true });

      await worker.close();
      expect(await probes()).toEqual({ live: 200, ready: 400, modelReady: { status: 400, body: { name: 'm', ready: false } }, healthz: { status: 503, body: { status: 'no live node', redis: 'ok', nodes: 0 } }, grpcLive: true, grpcReady: false });
    } finally {
      client.close();
    }
  });
});
