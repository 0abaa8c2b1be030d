import { describe, expect, it } from 'vitest';
import { BruleeError } from '../../errors';
import { decodeStrings, encodeStrings, isElementType, isNumericType, tensorBytes, tensorFromBytes, tensorsByteLength, type Tensor } from '../../queue/tensor';
import { packTensors, unpackTensors } from '../../queue/wire';

// Tensors as bytes (queue/tensor.ts) and the queue's blob layout (queue/wire.ts), with every byte
// and message worked out by hand.

function refusal(fn: () => unknown): [string, string] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BruleeError);
    return [(e as BruleeError).code, (e as BruleeError).message];
  }
  throw new Error('expected a refusal');
}

describe('element types', () => {
  it('numeric types are the twelve with a typed array; string is an element type but not numeric', () => {
    expect(['float32', 'float16', 'bool', 'uint64'].map(isNumericType)).toEqual([true, true, true, true]);
    expect(['string', 'complex64', '', 'Float32'].map(isNumericType)).toEqual([false, false, false, false]);
    expect(['string', 'int8'].map(isElementType)).toEqual([true, true]);
    expect(['complex64', 'bfloat16', 'non-tensor'].map(isElementType)).toEqual([false, false, false]);
  });
});

describe('tensorsByteLength: the bytes tensorBytes would give, summed, without encoding', () => {
  it('numeric tensors: their bytes (a view: its own); strings: 4 + UTF-8 bytes each', () => {
    const view = Int16Array.from([1, 2, 3, 4]).subarray(1, 3);
    const ts: Tensor[] = [
      { type: 'float32', dims: [3], data: new Float32Array(3) },
      { type: 'int16', dims: [2], data: view },
      { type: 'uint64', dims: [1], data: new BigUint64Array(1) },
      { type: 'string', dims: [3], data: ['', 'é', 'ab'] },
      { type: 'bool', dims: [0], data: new Uint8Array(0) },
    ];
    // 12 + 4 + 8 + (4 + 0) + (4 + 2) + (4 + 2) + 0 = 40
    expect(ts.map((t) => tensorsByteLength([t]))).toEqual([12, 4, 8, 16, 0]);
    expect(tensorsByteLength(ts)).toBe(40);
    expect(tensorsByteLength(ts)).toBe(ts.reduce((a, t) => a + tensorBytes(t).byteLength, 0));
    expect(tensorsByteLength([])).toBe(0);
    expect(tensorsByteLength([{ type: 'string', dims: [0], data: [] }])).toBe(0);
  });
});

describe('packTensors lays tensors out at 8-byte aligned offsets', () => {
  it('three tensors: 3 bytes at 0, 4 bytes at 8, a string at 16', () => {
    const { tensors, blob } = packTensors({
      a: { type: 'int8', dims: [3], data: Int8Array.from([1, -1, 2]) },
      b: { type: 'float32', dims: [1], data: Float32Array.from([1]) },
      s: { type: 'string', dims: [1], data: ['hi'] },
    });
    expect(tensors).toEqual({
      a: { type: 'int8', dims: [3], offset: 0, byteLength: 3 },
      b: { type: 'float32', dims: [1], offset: 8, byteLength: 4 },
      s: { type: 'string', dims: [1], offset: 16, byteLength: 6 },
    });
    expect([...blob]).toEqual([1, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0, 2, 0, 0, 0, 0x68, 0x69]);
    const back = unpackTensors(tensors, blob);
    expect(Array.from(back.a!.data as Int8Array)).toEqual([1, -1, 2]);
    expect(Array.from(back.b!.data as Float32Array)).toEqual([1]);
    expect(back.s!.data).toEqual(['hi']);
  });

  it('a tensor that ends on an 8-byte boundary needs no padding; an empty one takes no bytes', () => {
    const { tensors, blob } = packTensors({
      a: { type: 'float64', dims: [1], data: Float64Array.from([2]) },
      e: { type: 'int32', dims: [0], data: new Int32Array(0) },
      b: { type: 'uint8', dims: [1], data: Uint8Array.from([7]) },
    });
    expect([tensors.a!.offset, tensors.e!.offset, tensors.e!.byteLength, tensors.b!.offset, blob.byteLength]).toEqual([0, 8, 0, 8, 9]);
  });

  it('views a tensor at an aligned offset of its blob, copies one at an unaligned offset', () => {
    const blob = new Uint8Array(24);
    blob.set([0, 0, 0, 0, 0, 0, 0xf0, 0x3f], 8); // float64 1 at offset 8
    blob.set([0, 0, 0x80, 0x3f], 17); // float32 1 at offset 17 (not a multiple of 4)
    const t = unpackTensors({ a: { type: 'float64', dims: [1], offset: 8, byteLength: 8 }, b: { type: 'float32', dims: [1], offset: 17, byteLength: 4 } }, blob);
    expect([Array.from(t.a!.data as Float64Array), (t.a!.data as Float64Array).buffer === blob.buffer]).toEqual([[1], true]);
    expect([Array.from(t.b!.data as Float32Array), (t.b!.data as Float32Array).buffer === blob.buffer]).toEqual([[1], false]);
  });

  it('refuses a tensor that lies past the end of its blob', () => {
    expect(() => unpackTensors({ t: { type: 'int32', dims: [2], offset: 4, byteLength: 8 } }, new Uint8Array(11))).toThrow(
      new RangeError('tensor "t" lies past the end of its 11-byte blob'),
    );
    // Exactly up to the end is inside.
    expect(Array.from(unpackTensors({ t: { type: 'int32', dims: [2], offset: 4, byteLength: 8 } }, new Uint8Array(12)).t!.data as Int32Array)).toEqual([0, 0]);
  });
});

describe('strings as BYTES elements', () => {
  it('decodes every element when no count is given', () => {
    expect(decodeStrings(encodeStrings(['a', '', 'héllo']))).toEqual(['a', '', 'héllo']);
    expect(decodeStrings(new Uint8Array(0))).toEqual([]);
  });

  it('says which element is not UTF-8, with the default name', () => {
    expect(refusal(() => decodeStrings(Uint8Array.from([1, 0, 0, 0, 0x61, 1, 0, 0, 0, 0xff])))).toEqual([
      'INVALID_INPUT', 'BYTES data: element 1 is not valid UTF-8; brulee carries BYTES as text (onnxruntime string tensors)',
    ]);
  });

  it('stops reading once there are more elements than the shape needs', () => {
    // "a", "b", then a truncated length: with count 1 the third is never read.
    const bytes = Uint8Array.from([...encodeStrings(['a', 'b']), 1, 0]);
    expect(refusal(() => decodeStrings(bytes, 1, 'x'))).toEqual(['INVALID_INPUT', 'x: holds more than 1 elements, but the shape needs 1']);
    expect(refusal(() => decodeStrings(bytes, undefined, 'x'))).toEqual(['INVALID_INPUT', 'x: element 2 has a truncated 4-byte length prefix (2 bytes left)']);
    expect(refusal(() => decodeStrings(Uint8Array.from([1, 0, 0, 0]), 1, 'x'))).toEqual(['INVALID_INPUT', 'x: element 0 says 1 bytes, but only 0 remain']);
  });

  it('a string tensor from bytes, and back', () => {
    const t = tensorFromBytes('string', [2, 1], encodeStrings(['x', 'yz']));
    expect(t).toEqual({ type: 'string', dims: [2, 1], data: ['x', 'yz'] });
    expect([...tensorBytes(t)]).toEqual([1, 0, 0, 0, 0x78, 2, 0, 0, 0, 0x79, 0x7a]);
    expect(refusal(() => tensorFromBytes('string', [3], encodeStrings(['x'])))).toEqual(['INVALID_INPUT', 'tensor data: holds 1 elements, but the shape needs 3']);
  });

  it('numeric bytes: the default name, and bool as one byte per element', () => {
    expect(refusal(() => tensorFromBytes('uint64', [1], new Uint8Array(4)))).toEqual(['INVALID_INPUT', 'tensor data: 4 bytes, but uint64 of dims [1] takes 1 × 8 = 8 bytes']);
    const b = tensorFromBytes('bool', [3], Uint8Array.from([1, 0, 1]));
    expect([b.data.constructor, Array.from(b.data as Uint8Array)]).toEqual([Uint8Array, [1, 0, 1]]);
  });
});
