import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

/**
 * A real S3-compatible HTTP server for tests: s3rver (npm), objects on disk in its own folder.
 * It speaks the S3 REST API the AWS SDK uses (path-style), checks the access key id (`S3RVER`),
 * but does not verify SigV4 signatures.
 */
export interface TestS3 {
  /** `http://address:port`, for AWS_ENDPOINT_URL. */
  endpoint: string;
  bucket: string;
  /** Where s3rver keeps the objects (never read by brulee). */
  dir: string;
  /** The variables a brulee process needs to use this server as its model store. */
  env(prefix?: string): Record<string, string>;
  stop(): Promise<void>;
}

export const S3_ACCESS_KEY = 'S3RVER';

export async function startS3(o: { address?: string; port?: number; bucket?: string; dir?: string } = {}): Promise<TestS3> {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'brulee-s3-'));
  const bucket = o.bucket ?? 'brulee-models';
  const address = o.address ?? '127.0.0.1';
  const server = new S3rver({ address, port: o.port ?? 0, silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const { port } = (await server.run()) as AddressInfo;
  const endpoint = `http://${address}:${port}`;
  return {
    endpoint,
    bucket,
    dir,
    env: (prefix = 'models') => ({
      MODEL_STORE: `s3://${bucket}/${prefix}`,
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: S3_ACCESS_KEY,
    }),
    async stop() {
      await server.close().catch(() => undefined);
      if (!o.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The S3 server in a process of its own (test/support/s3-server.ts, objects in `dir`), for tests
 * that stop it (SIGSTOP: a store that hangs, so that a node's fetch of a model waits): the process,
 * and the variables a brulee process needs to use it as its model store.
 */
export async function startS3Process(dir: string): Promise<{ child: ChildProcess; env: Record<string, string> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/s3-server.ts', '--port', '0', '--dir', dir, '--bucket', 'brulee-models'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`the S3 server did not start: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /ready (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
  });
  const env = { MODEL_STORE: 's3://brulee-models/models', AWS_ENDPOINT_URL: endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_ACCESS_KEY, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  return { child, env };
}
