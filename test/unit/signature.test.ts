import { describe, expect, it } from 'vitest';
import { BruleeError } from '../../errors';
import { checkInput, checkInputs, describeDims, exampleDims, type Signature, type TensorSpec } from '../../functions/signature';
import type { Tensor } from '../../queue/tensor';

// The signature check, with every message spelled out by hand: a caller reads these to fix a call.

function f32(dims: number[], n = dims.reduce((a, b) => a * b, 1)): Tensor {
  return { type: 'float32', dims, data: new Float32Array(n) };
}

/** The error a call throws, as [code, status, message]; fails the test when nothing is thrown. */
function refusal(fn: () => void): [string, number, string] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BruleeError);
    const b = e as BruleeError;
    return [b.code, b.status, b.message];
  }
  throw new Error('expected a refusal, but the check accepted the input');
}

const spec = (dims: Array<number | string>, type = 'float32', name = 'x'): TensorSpec => ({ name, type, dims });

describe('describeDims and exampleDims', () => {
  it('shows dims as messages do: numbers bare, symbolic dims quoted', () => {
    expect(describeDims([1, 'batch', 3])).toBe('[1, "batch", 3]');
    expect(describeDims(['?'])).toBe('["?"]');
    expect(describeDims([])).toBe('[]');
  });

  it('fills each dynamic dim with 1 and keeps fixed ones, 0 included', () => {
    expect(exampleDims(spec([4, 'batch', -1, 0, '?', 7]))).toEqual([4, 1, 1, 0, 1, 7]);
    expect(exampleDims(spec([]))).toEqual([]);
  });
});

describe('checkInput', () => {
  it('accepts a tensor that fits: fixed dims equal, dynamic dims (-1 or named) anything', () => {
    expect(() => checkInput(spec([2, 'n', -1]), f32([2, 5, 7]))).not.toThrow();
    expect(() => checkInput(spec([]), f32([]))).not.toThrow(); // a scalar holds one element
    expect(() => checkInput(spec([3], 'string'), { type: 'string', dims: [3], data: ['a', '', 'c'] })).not.toThrow();
  });

  it('refuses an element type brulee cannot carry, listing the ones it can', () => {
    expect(refusal(() => checkInput(spec([1], 'non-tensor', 'seq'), f32([1])))).toEqual([
      'INVALID_INPUT', 422,
      'input "seq" has element type non-tensor, which brulee cannot carry (supported: float32, float64, float16, int8, uint8, int16, uint16, int32, uint32, int64, uint64, bool, string)',
    ]);
  });

  it('refuses another element type, naming both', () => {
    const t: Tensor = { type: 'int32', dims: [2], data: new Int32Array(2) };
    expect(refusal(() => checkInput(spec([2]), t))).toEqual(['INVALID_INPUT', 422, 'input "x": type "int32" does not match the model, which expects float32']);
  });

  it('refuses another rank, with both shapes', () => {
    expect(refusal(() => checkInput(spec([1, 'n']), f32([1, 2, 3])))).toEqual([
      'INVALID_INPUT', 422, 'input "x": rank 3 (dims [1, 2, 3]) does not match the model, which expects rank 2: [1, "n"]',
    ]);
    expect(refusal(() => checkInput(spec([4]), f32([])))).toEqual([
      'INVALID_INPUT', 422, 'input "x": rank 0 (dims []) does not match the model, which expects rank 1: [4]',
    ]);
  });

  it('refuses a fixed dim of another size, naming which dim', () => {
    expect(refusal(() => checkInput(spec(['n', 3]), f32([5, 4])))).toEqual([
      'INVALID_INPUT', 422, 'input "x": dim 1 is 4, but the model fixes it at 3 (expected ["n", 3])',
    ]);
    expect(refusal(() => checkInput(spec([2, 3]), f32([3, 3])))).toEqual([
      'INVALID_INPUT', 422, 'input "x": dim 0 is 3, but the model fixes it at 2 (expected [2, 3])',
    ]);
    // A dim fixed at 0 is a fixed dim too (an empty batch model).
    expect(refusal(() => checkInput(spec([0, 2]), f32([1, 2])))).toEqual([
      'INVALID_INPUT', 422, 'input "x": dim 0 is 1, but the model fixes it at 0 (expected [0, 2])',
    ]);
    expect(() => checkInput(spec([0, 2]), f32([0, 2]))).not.toThrow();
  });

  it('refuses data whose element count does not fit the dims', () => {
    expect(refusal(() => checkInput(spec([2, 'n']), f32([2, 3], 5)))).toEqual([
      'INVALID_INPUT', 422, 'input "x": data has 5 elements, but dims [2, 3] need 6',
    ]);
    expect(refusal(() => checkInput(spec([2, 'n']), f32([2, 3], 7)))).toEqual([
      'INVALID_INPUT', 422, 'input "x": data has 7 elements, but dims [2, 3] need 6',
    ]);
    expect(refusal(() => checkInput(spec([]), f32([], 0)))).toEqual([
      'INVALID_INPUT', 422, 'input "x": data has 0 elements, but dims [] need 1',
    ]);
  });
});

describe('checkInputs', () => {
  const sig: Signature = { inputs: [spec([1, 'n'], 'float32', 'a'), spec([2], 'int64', 'b')], outputs: [] };
  const a = f32([1, 3]);
  const b: Tensor = { type: 'int64', dims: [2], data: new BigInt64Array(2) };

  it('accepts a complete, valid set', () => {
    expect(() => checkInputs(sig, { a, b })).not.toThrow();
  });

  it('checks every input, the last one too', () => {
    expect(refusal(() => checkInputs(sig, { a, b: { type: 'int64', dims: [3], data: new BigInt64Array(3) } }))).toEqual([
      'INVALID_INPUT', 422, 'input "b": dim 0 is 3, but the model fixes it at 2 (expected [2])',
    ]);
    expect(refusal(() => checkInputs(sig, { a: f32([2, 3]), b }))).toEqual([
      'INVALID_INPUT', 422, 'input "a": dim 0 is 2, but the model fixes it at 1 (expected [1, "n"])',
    ]);
  });

  it('names an unknown input and the inputs the model has', () => {
    expect(refusal(() => checkInputs(sig, { a, b, c: a }))).toEqual([
      'INVALID_INPUT', 422, 'unknown input "c": the model\'s inputs are "a", "b"',
    ]);
  });

  it('names at most five unknown inputs and counts the rest', () => {
    const five = Object.fromEntries(['p', 'q', 'r', 's', 't'].map((k) => [k, a]));
    expect(refusal(() => checkInputs(sig, { a, b, ...five }))).toEqual([
      'INVALID_INPUT', 422, 'unknown input "p", "q", "r", "s", "t": the model\'s inputs are "a", "b"',
    ]);
    const seven = Object.fromEntries(['p', 'q', 'r', 's', 't', 'u', 'v'].map((k) => [k, a]));
    expect(refusal(() => checkInputs(sig, seven))).toEqual([
      'INVALID_INPUT', 422, 'unknown input "p", "q", "r", "s", "t" and 2 more: the model\'s inputs are "a", "b"',
    ]);
  });

  it('cuts a long unknown name to 60 characters, its opening quote included', () => {
    const long = 'k'.repeat(100);
    expect(refusal(() => checkInputs(sig, { [long]: a }))).toEqual([
      'INVALID_INPUT', 422, `unknown input "${'k'.repeat(59)}…: the model's inputs are "a", "b"`,
    ]);
  });

  it('names every missing input and what the model needs', () => {
    expect(refusal(() => checkInputs(sig, { a }))).toEqual([
      'INVALID_INPUT', 422, 'missing input "b": the model needs "a" (float32 [1, "n"]), "b" (int64 [2])',
    ]);
    expect(refusal(() => checkInputs(sig, {}))).toEqual([
      'INVALID_INPUT', 422, 'missing input "a", "b": the model needs "a" (float32 [1, "n"]), "b" (int64 [2])',
    ]);
  });
});
