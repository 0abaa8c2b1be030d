import { describe, expect, it } from 'vitest';
import { onnxFormWins } from '../../functions/profile';

const MiB = 1024 * 1024;

describe('which derived form registration keeps: the ORT format only when it holds clearly fewer bytes', () => {
  it('keeps the ORT format when it holds more than the noise fewer (Silero VAD: ~6 MB)', () => {
    expect(onnxFormWins({ rssDeltaBytes: 6.5 * MiB }, { rssDeltaBytes: 12.5 * MiB })).toBeNull();
  });
  it('keeps the ONNX form when the ORT format holds more', () => {
    expect(onnxFormWins({ rssDeltaBytes: 9 * MiB }, { rssDeltaBytes: 8 * MiB })).toMatch(/held \d+ bytes more/);
  });
  it('keeps the ONNX form when the two are within the noise, either way (PP-OCR det: 0.1-1.4 MB apart)', () => {
    expect(onnxFormWins({ rssDeltaBytes: 8.2 * MiB }, { rssDeltaBytes: 8.2 * MiB + 1_400_000 })).toMatch(/within the measure's noise/);
    expect(onnxFormWins({ rssDeltaBytes: 8.2 * MiB + 1_400_000 }, { rssDeltaBytes: 8.2 * MiB })).toMatch(/more/);
  });
  it('scales the noise with the size: 10% of a large model', () => {
    expect(onnxFormWins({ rssDeltaBytes: 92 * MiB }, { rssDeltaBytes: 100 * MiB })).toMatch(/within/);
    expect(onnxFormWins({ rssDeltaBytes: 88 * MiB }, { rssDeltaBytes: 100 * MiB })).toBeNull();
  });
});
