import { BruleeError } from '../errors';

/**
 * A cheap look at uploaded bytes before a child process is started to profile them: is this a
 * protobuf message whose top-level fields are well formed and that has a graph (ModelProto field
 * 7)? Only the top level is walked (a few fields, whatever the model's size), so JSON, text and
 * random bytes are refused in microseconds instead of costing a profiling process each.
 */
export function checkModelShape(bytes: Uint8Array): void {
  let i = 0;
  let graph = false;
  const fail = (why: string): never => {
    throw new BruleeError('INVALID_MODEL', `this is not an ONNX model (${why}); send the .onnx file as the raw request body`);
  };
  const varint = (): number => {
    let v = 0;
    let scale = 1;
    for (let n = 0; n < 10; n++) {
      if (i >= bytes.length) fail('it ends inside a field');
      const b = bytes[i++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 128;
    }
    return fail('a malformed varint');
  };
  while (i < bytes.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0) fail('field number 0');
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      if (field === 7) graph = true;
      i += len;
    } else fail(`wire type ${wire} at the top level`);
    if (i > bytes.length) fail('a field runs past the end');
  }
  if (!graph) fail('no graph');
}
