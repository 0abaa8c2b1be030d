import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { ModelProto, modelObject, onnxRoot } from '../../models/onnx-builder';
import { startBrulee, type TestBrulee } from '../support/brulee';

/**
 * A model must not read bytes it did not bring: an initializer stored as ONNX external data
 * names a file, and onnxruntime resolves it next to the model file. Every model is loaded from a
 * folder of its own, so no name it can give reaches another function's bytes.
 */

// The parts of onnx.proto the builder leaves out: external data on a TensorProto.
const onnx = onnxRoot.lookup('onnx') as protobuf.Namespace;
if (!onnx.lookup('StringStringEntry')) {
  onnx.add(new protobuf.Type('StringStringEntry').add(new protobuf.Field('key', 1, 'string')).add(new protobuf.Field('value', 2, 'string')));
  const tensor = onnxRoot.lookupType('onnx.TensorProto');
  tensor.add(new protobuf.Field('external_data', 13, 'StringStringEntry', 'repeated'));
  tensor.add(new protobuf.Field('data_location', 14, 'int32'));
}

/** `y = W` where W (uint8, `length` bytes) is external data at `location`; `z = x`. */
function thief(location: string, length: number): Uint8Array {
  const obj = modelObject({
    inputs: [{ name: 'x', type: 'float32', shape: [1] }],
    outputs: [{ name: 'y', type: 'uint8', shape: [length] }, { name: 'z', type: 'float32', shape: [1] }],
    nodes: [
      { op: 'Identity', inputs: ['W'], outputs: ['y'] },
      { op: 'Identity', inputs: ['x'], outputs: ['z'] },
    ],
    initializers: [{ name: 'W', type: 'uint8', dims: [length], data: new Uint8Array(length) }],
    graphName: 'thief',
  }) as { graph: { initializer: Array<Record<string, unknown>> } };
  const w = obj.graph.initializer[0]!;
  delete w.raw_data;
  w.data_location = 1;
  w.external_data = [{ key: 'location', value: location }, { key: 'offset', value: '0' }, { key: 'length', value: String(length) }];
  return ModelProto.encode(ModelProto.fromObject(obj)).finish();
}

let b: TestBrulee;
const victim = mlpModel({ inputSize: 4, hidden: [8], outputSize: 2, seed: 9 });
let sha = '';

beforeAll(async () => {
  b = await startBrulee();
  const r = await b.put('victim', victim);
  expect(r.status).toBe(201);
  sha = r.body.sha256;
  // The victim is loaded, so its local copy exists.
  expect((await b.invoke('victim', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } })).status).toBe(200);
});
afterAll(async () => {
  await b?.destroy();
});

describe('ONNX external data cannot reach another function\'s bytes', () => {
  const locations = () => [
    `${sha}.onnx`, // the store's own naming (file://DATA_DIR/models/<sha>.onnx)
    `../${sha}/model.onnx`, // a sibling folder of the local model cache
    `../../models/${sha}.onnx`,
    `${b.dataDir}/models/${sha}.onnx`, // absolute
    `${b.dataDir}/model-cache/${sha}/model.onnx`,
    'model.onnx', // its own file
  ];

  it('each location is refused at registration or at load, never answered with the bytes, and no message shows a server path', async () => {
    const prefix = Buffer.from(victim.slice(0, 64)).toString('hex');
    for (const [i, loc] of locations().entries()) {
      const put = await b.put(`thief${i}`, thief(loc, 64));
      const text = JSON.stringify(put.body);
      expect(text, loc).not.toContain(b.dataDir);
      expect(text).not.toContain('/tmp/');
      if (put.status === 201) {
        const r = await b.invoke(`thief${i}`, { x: { type: 'float32', dims: [1], data: [1] } });
        const answer = JSON.stringify(r.body);
        expect(answer).not.toContain(b.dataDir);
        if (r.status === 200) {
          // Only its own file could have been read; never the victim's bytes.
          expect(Buffer.from(Uint8Array.from(r.body.outputs.y.data as number[])).toString('hex'), loc).not.toBe(prefix);
        } else {
          expect(r.status, loc).toBe(422);
        }
      } else {
        expect(put.status, `${loc}: ${text}`).toBe(422);
        expect(put.body.error.code).toBe('INVALID_MODEL');
      }
    }
  });
});
