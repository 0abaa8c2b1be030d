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
