import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { BruleeError } from '../errors';
import { cacheWriteError } from './errors';
import { assertClusterId, type ModelStore } from './index';
import { assertSha256, sha256Of } from './sha256';

type SDK = typeof import('@aws-sdk/client-s3');

/** How to reach an S3-compatible object store; `config.ts` fills it from the standard AWS variables. */
export interface S3StoreOptions {
  /** `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`: MinIO, Ceph, GCS interoperability... @default AWS S3 */
  endpoint?: string;
  /** `AWS_REGION`. @default "us-east-1" when an endpoint is set, else the SDK's own lookup (profile) */
  region?: string;
  /** Bucket in the path, not the host name (`S3_FORCE_PATH_STYLE`). @default true when an endpoint is set */
  forcePathStyle?: boolean;
  /** Static keys (`AWS_ACCESS_KEY_ID`, ...). @default the SDK's chain: env, profile, web identity, instance role */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** `s3://bucket/prefix` split; the prefix has no leading or trailing slash (may be empty). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new RangeError(`MODEL_STORE ${url}: expected s3://bucket/prefix with a bucket name of 3-63 lower-case letters, digits, dots or hyphens`);
  return { bucket: m[1]!, prefix: (m[2] ?? '').replace(/^\/+|\/+$/g, '') };
}

/**
 * Model bytes as objects `<prefix>/<sha256>.onnx` in one bucket of an S3-compatible store: the
 * store of a cluster with no shared disk. Objects carry their sha256 as metadata, so a put of the
 * same bytes over a damaged or truncated object rewrites it. Downloads stream to the file.
 */
export class S3ModelStore implements ModelStore {
  readonly url: string;
  readonly bucket: string;
  readonly prefix: string;
  private sdk?: Promise<{ s3: SDK; client: S3Client }>;

  constructor(url: string, private readonly o: S3StoreOptions = {}) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseS3Url(url));
    this.url = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
  }

  /** The SDK is loaded on first use (importing it takes about a second): file:// users never pay. */
  private connect(): Promise<{ s3: SDK; client: S3Client }> {
    this.sdk ??= import('@aws-sdk/client-s3').then((s3) => ({ s3, client: this.newClient(s3) }));
    return this.sdk;
  }

  private newClient(s3: SDK): S3Client {
    const o = this.o;
    const region = o.region ?? (o.endpoint ? 'us-east-1' : undefined);
    return new s3.S3Client({
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(region ? { region } : {}),
      forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
      ...(o.credentials ? { credentials: o.credentials } : {}),
      // Checksums only where the API requires them: S3-compatible servers differ in which of the
      // newer flexible checksums (and aws-chunked uploads) they accept; we verify sha256 ourselves.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // A store that stops answering fails the load instead of hanging it (retries: the SDK's 3 attempts).
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
    });
  }

  private key(sha256: string): string {
    assertSha256(sha256);
    return this.prefix ? `${this.prefix}/${sha256}.onnx` : `${sha256}.onnx`;
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.head(sha256)) !== undefined;
  }

  /** An object of this size whose sha256 (its metadata, written by `put`) is this one. */
  async intact(sha256: string, size: number): Promise<boolean> {
    const there = await this.head(sha256);
    return there !== undefined && there.size === size && there.sha256 === sha256;
  }

  /** Uploads unless an object with these bytes' size and sha256 is already there. */
  async put(bytes: Uint8Array): Promise<string> {
    const sha = sha256Of(bytes);
    if (await this.intact(sha, bytes.byteLength)) return sha;
    await this.call(sha, 'put', ({ s3, client }) =>
      client.send(
        new s3.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(sha),
          Body: bytes,
          ContentLength: bytes.byteLength,
          ContentType: 'application/octet-stream',
          Metadata: { sha256: sha },
        }),
      ),
    );
    return sha;
  }

  async get(sha256: string): Promise<Uint8Array> {
    return this.call(sha256, 'get', async ({ s3, client }) => {
      const res = await client.send(new s3.GetObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) }));
      if (!res.Body) throw missing(this.url, sha256);
      return res.Body.transformToByteArray();
    });
  }

  /** Streams the object into `dest` (never the whole model in memory). */
  async download(sha256: string, dest: string): Promise<void> {
    await this.call(sha256, 'get', async ({ s3, client }) => {
      const res = await client.send(new s3.GetObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) }));
      if (!res.Body) throw missing(this.url, sha256);
      // A write that fails here is this disk's fault, not the store's (storeError passes it on as it is).
      await pipeline(res.Body as Readable, createWriteStream(dest)).catch((e: unknown) => {
        throw cacheWriteError(sha256, dest, e) ?? e;
      });
    });
  }

  async remove(sha256: string): Promise<void> {
    await this.call(sha256, 'remove', ({ s3, client }) => client.send(new s3.DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) })));
  }

  /** `<prefix>/.clusters/<id>`, an empty object whose LastModified says when. */
  async touchCluster(id: string): Promise<void> {
    assertClusterId(id);
    await this.call(`.clusters/${id}`, 'write', ({ s3, client }) =>
      client.send(new s3.PutObjectCommand({ Bucket: this.bucket, Key: `${this.clustersPrefix}${id}`, Body: new Uint8Array(0), ContentLength: 0 })),
    );
  }

  async clusters(): Promise<Array<{ id: string; at: number }>> {
    const found: Array<{ id: string; at: number }> = [];
    let token: string | undefined;
    do {
      const page = await this.call('.clusters/', 'list', ({ s3, client }) =>
        client.send(new s3.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.clustersPrefix, ...(token ? { ContinuationToken: token } : {}) })),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key && o.LastModified) found.push({ id: o.Key.slice(this.clustersPrefix.length), at: o.LastModified.getTime() });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  private get clustersPrefix(): string {
    return this.prefix ? `${this.prefix}/.clusters/` : '.clusters/';
  }

  /** Closes the client's sockets. */
  async destroy(): Promise<void> {
    if (this.sdk) (await this.sdk).client.destroy();
  }

  private async head(sha256: string): Promise<{ size: number; sha256: string | undefined } | undefined> {
    try {
      const r = await this.call(sha256, 'head', ({ s3, client }) => client.send(new s3.HeadObjectCommand({ Bucket: this.bucket, Key: this.key(sha256) })));
      return { size: r.ContentLength ?? -1, sha256: r.Metadata?.sha256 };
    } catch (e) {
      if (e instanceof BruleeError && e.code === 'MODEL_BYTES_MISSING') return undefined;
      throw e;
    }
  }

  /** Runs one S3 request; its failures become errors that say which store and what to check. */
  private async call<T>(sha256: string, what: string, f: (c: { s3: SDK; client: S3Client }) => Promise<T>): Promise<T> {
    const c = await this.connect();
    try {
      return await f(c);
    } catch (e) {
      throw storeError(c.s3, this.url, sha256, what, e);
    }
  }
}

function missing(url: string, sha256: string): BruleeError {
  return new BruleeError('MODEL_BYTES_MISSING', `the model store (${url}) holds no bytes for ${sha256.slice(0, 12)}…: the function was deleted or replaced, or the store lost them (register the model again)`);
}

function storeError(s3: SDK, url: string, sha256: string, what: string, e: unknown): BruleeError {
  if (e instanceof BruleeError) return e;
  const status = e instanceof s3.S3ServiceException ? e.$metadata.httpStatusCode : undefined;
  const name = e instanceof Error ? e.name : 'Error';
  if (name === 'NoSuchKey' || (name === 'NotFound' && what === 'head') || (status === 404 && name !== 'NoSuchBucket')) return missing(url, sha256);
  const detail = `${name}${status ? ` HTTP ${status}` : ''}: ${e instanceof Error ? e.message : String(e)}`;
  const hint =
    name === 'NoSuchBucket' ? 'create the bucket, or fix MODEL_STORE'
    : status === 403 || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'CredentialsProviderError'
      ? 'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the role) and the bucket policy'
      : 'check that the store is reachable (AWS_ENDPOINT_URL, AWS_REGION)';
  return new BruleeError('MODEL_STORE_UNAVAILABLE', `the model store ${url} failed to ${what} ${sha256.slice(0, 12)}… (${detail}): ${hint}`);
}
