import { serve } from '@hono/node-server';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { inject } from 'vitest';
import { createBrulee, type Brulee, type BruleeDeps } from '../../brulee';
import { loadConfig } from '../../config';
import { createRedis } from '../../queue/connection';

export interface TestBrulee extends Brulee {
  dataDir: string;
  namespace: string;
  /** A request against the Hono app, with no port. */
  req(path: string, init?: RequestInit): Promise<Response>;
  /** JSON request helper: returns status and parsed body. */
  json<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T }>;
  put(name: string, bytes: Uint8Array, query?: string, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  invoke(name: string, inputs: Record<string, unknown>): Promise<{ status: number; body: any }>;
  /** Serves the app on a free 127.0.0.1 port (for clients that need a real server: the CLI, a browser); closed by destroy(). */
  listen(): Promise<string>;
  /** Closes brulee and removes its data dir and Redis keys (unless they were reused from another). */
  destroy(): Promise<void>;
}

/** Deletes every key of a namespace (the test Redis may be a shared one, via REDIS_URL). */
export async function deleteKeys(namespace: string): Promise<void> {
  const redis = createRedis(inject('redisUrl'));
  try {
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${namespace}:*`, 'COUNT', 1000);
      if (found.length > 0) await redis.unlink(...found);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/**
 * A whole brulee process (gateway + runtime node) against the test Redis, with its own key
 * namespace, node id and data dir, so test files do not see each other.
 */
export async function startBrulee(env: Record<string, string> = {}, reuse?: { namespace: string; dataDir: string; nodeId?: string }, deps: Omit<BruleeDeps, 'log'> = {}): Promise<TestBrulee> {
  const namespace = reuse?.namespace ?? `t${randomUUID().slice(0, 8)}`;
  const dataDir = reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'brulee-test-'));
  const config = loadConfig({
    REDIS_URL: inject('redisUrl'),
    DATA_DIR: dataDir,
    NODE_ID: reuse?.nodeId ?? `node-${namespace}`,
    KEY_PREFIX: namespace,
    POPULARITY_CRON: '0 0 1 1 *', // tests refresh popularity by hand, when they mean to
    LOG_LEVEL: 'silent',
    ...env,
  });
  const b = await createBrulee(config, { log: pino({ level: 'silent' }), ...deps });
  const req = async (path: string, init?: RequestInit) => b.app.request(path, init);
  const json = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await req(path, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  let server: ReturnType<typeof serve> | undefined;
  return {
    ...b,
    listen() {
      return new Promise((resolve) => {
        server = serve({ fetch: b.app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => resolve(`http://127.0.0.1:${info.port}`));
      });
    },
    dataDir,
    namespace,
    req,
    json,
    async put(name, bytes, query = '', headers = {}) {
      const res = await req(`/functions/${name}${query ? `?${query}` : ''}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', ...headers },
        body: bytes,
      });
      return { status: res.status, body: await res.json() };
    },
    invoke(name, inputs) {
      return json('POST', `/functions/${name}/invoke`, { inputs });
    },
    async destroy() {
      await new Promise((r) => (server ? server.close(r) : r(undefined)));
      await b.close();
      if (reuse) return;
      rmSync(dataDir, { recursive: true, force: true });
      await deleteKeys(namespace);
    },
  };
}
