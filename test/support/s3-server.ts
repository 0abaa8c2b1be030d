/**
 * An S3-compatible server as its own process (for tests whose store lives on another "host"):
 *   tsx test/support/s3-server.ts --address 127.0.0.1 --port 9000 --dir /tmp/s3 --bucket brulee-models
 * Prints `ready <endpoint>` once it listens; stops on SIGTERM.
 */
import { parseArgs } from 'node:util';
import { startS3 } from './s3';

const { values } = parseArgs({
  options: { address: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '0' }, dir: { type: 'string' }, bucket: { type: 'string', default: 'brulee-models' } },
});
const s3 = await startS3({ address: values.address!, port: Number(values.port), bucket: values.bucket!, ...(values.dir ? { dir: values.dir } : {}) });
console.log(`ready ${s3.endpoint}`);
const stop = () => void s3.stop().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
