import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The sha256 of a file, read as a stream (models can be larger than we want in memory twice). */
export async function sha256OfFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const SHA256 = /^[0-9a-f]{64}$/;

/** @throws RangeError when `s` is not a lower-case hex sha256 (a bug, never user input). */
export function assertSha256(s: string): void {
  if (!SHA256.test(s)) throw new RangeError(`not a sha256: ${s}`);
}
