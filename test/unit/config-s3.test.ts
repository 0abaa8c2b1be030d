import { describe, expect, it } from 'vitest';
import { ConfigError, CONFIG_VARIABLES, loadConfig } from '../../config';

describe('MODEL_STORE and the AWS variables', () => {
  it('takes s3://bucket/prefix and the standard AWS variables', () => {
    const c = loadConfig({ MODEL_STORE: 's3://my-models/brulee/prod', AWS_ENDPOINT_URL: 'http://minio:9000', AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' });
    expect(c.modelStore).toBe('s3://my-models/brulee/prod');
    expect(c.s3).toEqual({ endpoint: 'http://minio:9000', region: 'eu-west-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
    // The S3-specific endpoint wins over the general one; path style can be forced either way.
    expect(loadConfig({ MODEL_STORE: 's3://abc', AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2', S3_FORCE_PATH_STYLE: 'false' }).s3).toEqual({ endpoint: 'http://b:2', forcePathStyle: false });
    // No keys: the SDK's own chain (profile, web identity, instance role).
    expect(loadConfig({ MODEL_STORE: 's3://abc' }).s3).toEqual({});
    expect(CONFIG_VARIABLES).toEqual(expect.arrayContaining(['MODEL_STORE', 'AWS_ENDPOINT_URL', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'S3_FORCE_PATH_STYLE', 'ROLE', 'NODE_ID']));
  });

  it('refuses a bad bucket, an unknown scheme, a bad endpoint and half a key pair, naming the variable', () => {
    const bad = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad({ MODEL_STORE: 's3://Bad_Bucket/x' })).toMatch(/MODEL_STORE: .*s3:\/\/bucket\/prefix/);
    expect(bad({ MODEL_STORE: 's3://ab' })).toMatch(/MODEL_STORE/);
    expect(bad({ MODEL_STORE: 'gs://bucket/x' })).toMatch(/MODEL_STORE must be file:\/\/DIR/);
    expect(bad({ MODEL_STORE: 's3://abc', AWS_ENDPOINT_URL: 'minio:9000x' })).toMatch(/AWS_ENDPOINT_URL must be a URL/);
    expect(bad({ MODEL_STORE: 's3://abc', AWS_ACCESS_KEY_ID: 'k' })).toMatch(/AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: set both or neither/);
  });
});
