import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { inLoadWindow, LOAD_WINDOW_MIN_REUSE_BYTES, LOAD_WINDOW_MMAP_THRESHOLD, loadWindowsOpened, mallocControl, tunable, trimFreed, trimHeap, type MallocControl } from '../../runtime/malloc';
import { artifactForm, artifactLayout, externalRefs, MAPPED_FILE_NAME, mappedProblem, packMapped, prepackedReuseBytes, readGraphAt, readMappedGraph, relayMapped } from '../../runtime/mapped';
import { deriveOptimized, loadModel, type ArtifactForm, type LoadedModel } from '../../runtime/onnx';
import { Footprints } from '../../runtime/footprint';
import { floats, ort } from '../support/models';

const dir = mkdtempSync(join(tmpdir(), 'brulee-mapped-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * 64 -> 500 -> 1000 -> 16: W1 (2 MB) is over the mapping threshold; W0 (128 000 bytes) and W2
 * (64 000) are a page or more, and no multiple of one (so onnxruntime's own layout leaves what
 * follows them off a page); the biases (2 000, 4 000) are under a page.
 */
const bytes = mlpModel({ inputSize: 64, hidden: [500, 1000], outputSize: 16, seed: 5 });
const source = join(dir, 'source.onnx');
writeFileSync(source, bytes);

async function derive(name: string, form: ArtifactForm = 'mapped') {
  const out = join(dir, name, MAPPED_FILE_NAME);
  mkdirSync(join(dir, name));
  return { out, derived: await deriveOptimized(source, out, { form }) };
}

/** `model`'s outputs on MLP inputs of each row count are the bits of a default onnxruntime session of `original`; disposes of `model`. */
async function expectBitsOfOriginal(model: LoadedModel, original: Uint8Array, rowCounts: number[], seed: number): Promise<void> {
  const direct = await ort.InferenceSession.create(original);
  try {
    for (const rows of rowCounts) {
      const x = Float32Array.from(floats(rows * 64, rows + seed));
      const got = await model.run({ x: { type: 'float32', dims: [rows, 64], data: x } });
      const want = await direct.run({ x: new ort.Tensor('float32', x, [rows, 64]) });
      expect(Array.from(got.y!.data as Float32Array)).toEqual(Array.from(want.y!.data as Float32Array));
    }
  } finally {
    await model.dispose();
    await direct.release();
  }
}

describe('mapped artifacts', () => {
  it('hold every tensor of a page or more and the prepacked forms at page-aligned offsets, and load to the same bits as the original', async () => {
    const { out, derived } = await derive('a');
    expect(derived).toEqual({ form: 'mapped' });
    const graph = (await readMappedGraph(out))!;
    expect(graph).not.toBeNull();
    const refs = externalRefs(graph);
    // Not only the tensor over 1 MiB: the smaller ones are not copied out of the graph at each load either.
    expect(refs.map((r) => r.tensor)).toEqual(['W0', 'W1', 'W2']);
    expect(refs.map((r) => r.bytes)).toEqual([64 * 500 * 4, 500 * 1000 * 4, 1000 * 16 * 4]);
    const w1 = refs.find((r) => r.tensor === 'W1')!;
    // The weight's own offset, then its prepacked blob's.
    expect(w1.offsets.length).toBe(2);
    // onnxruntime pages only tensors over 1 MiB; relayMapped lays out the rest on pages too.
    for (const r of refs) {
      expect(r.location).toBe(MAPPED_FILE_NAME);
      for (const o of r.offsets) expect(o % 4096).toBe(0);
    }
    expect(mappedProblem(graph, readFileSync(out).byteLength)).toBeNull();

    await expectBitsOfOriginal(await loadModel(out, { preOptimized: true }), bytes, [1, 4], 0);
  });

  it('the ORT-format and ONNX forms are told apart from a mapped one, and give the same bits', async () => {
    const x = Float32Array.from(floats(2 * 64, 9));
    const direct = await ort.InferenceSession.create(bytes);
    const want = Array.from((await direct.run({ x: new ort.Tensor('float32', x, [2, 64]) })).y!.data as Float32Array);
    await direct.release();
    for (const form of ['ort', 'onnx'] as const) {
      const { out, derived } = await derive(form, form);
      expect(derived).toEqual({ form });
      expect(await readMappedGraph(out)).toBeNull();
      expect((await artifactForm(out)).form).toBe(form);
      const model = await loadModel(out, { preOptimized: true });
      expect(Array.from((await model.run({ x: { type: 'float32', dims: [2, 64], data: x } })).y!.data as Float32Array)).toEqual(want);
      await model.dispose();
    }
    expect((await artifactForm(source)).form).toBe('onnx');
  });

  it('a layout read once loads the artifact again from it (as a node reloads it), to the same bits; the layout given is the one used', async () => {
    const { out } = await derive('layout');
    const layout = artifactLayout(out);
    expect(layout).toMatchObject({ form: 'mapped', graphBytes: expect.any(Number), graphOffset: expect.any(Number) });
    expect(readGraphAt(out, layout as Extract<typeof layout, { form: 'mapped' }>).equals((await readMappedGraph(out))!)).toBe(true);
    const x = Float32Array.from(floats(64, 11));
    const direct = await ort.InferenceSession.create(bytes);
    const want = Array.from((await direct.run({ x: new ort.Tensor('float32', x, [1, 64]) })).y!.data as Float32Array);
    await direct.release();
    for (let i = 0; i < 2; i++) {
      const model = await loadModel(out, { preOptimized: true, layout });
      expect(Array.from((await model.run({ x: { type: 'float32', dims: [1, 64], data: x } })).y!.data as Float32Array)).toEqual(want);
      await model.dispose();
    }
    // Told it is plain ONNX, onnxruntime is handed the whole bundle, which is not.
    await expect(loadModel(out, { preOptimized: true, layout: { form: 'onnx' } })).rejects.toMatchObject({ code: 'INVALID_MODEL' });
    for (const form of ['ort', 'onnx'] as const) expect(artifactLayout((await derive(`layout-${form}`, form)).out)).toEqual({ form });
  });

  it('a model with nothing over 1 MiB gets the ORT format, saying why it is not mapped', async () => {
    const small = join(dir, 'small.onnx');
    writeFileSync(small, mlpModel({ inputSize: 64, hidden: [64], outputSize: 16, seed: 1 }));
    mkdirSync(join(dir, 'small'));
    expect(await deriveOptimized(small, join(dir, 'small', MAPPED_FILE_NAME))).toEqual({ form: 'ort', note: 'no tensor was large enough to be mapped' });
  });

  it('a model with no tensor over 1 MiB but 4 MiB or more in tensors of a page or more is mapped, to the same bits; one with 3 MB is not', async () => {
    // Five 1 000 000-byte weights (each under 1 MiB, as PP-OCR det's 46 are): 5 MB in all.
    const many = mlpModel({ inputSize: 64, hidden: [500, 500, 500, 500, 500, 500], outputSize: 16, seed: 7 });
    const few = mlpModel({ inputSize: 64, hidden: [500, 500, 500, 500], outputSize: 16, seed: 7 });
    for (const [name, model, form] of [['many', many, 'mapped'], ['few', few, 'ort']] as const) {
      writeFileSync(join(dir, `${name}.onnx`), model);
      mkdirSync(join(dir, name));
      const out = join(dir, name, MAPPED_FILE_NAME);
      expect((await deriveOptimized(join(dir, `${name}.onnx`), out)).form).toBe(form);
      await expectBitsOfOriginal(await loadModel(out, { preOptimized: true }), model, [1, 3], 2);
    }
    const refs = externalRefs((await readMappedGraph(join(dir, 'many', MAPPED_FILE_NAME)))!);
    expect(Math.max(...refs.map((r) => r.bytes))).toBe(500 * 500 * 4);
  });

  it('a mapped artifact under another name is refused (its graph reads its weights from model.onnx)', async () => {
    const { out } = await derive('renamed');
    const other = join(dir, 'renamed', 'other.onnx');
    writeFileSync(other, readFileSync(out));
    await expect(readMappedGraph(other)).rejects.toThrow(/must be named model\.onnx/);
    await expect(loadModel(other, { preOptimized: true })).rejects.toMatchObject({ code: 'INVALID_MODEL' });
  });

  it('refuses offsets MLAS could not read packed weights from, files other than its own, data past the end, and graphs with nothing mapped', async () => {
    const { out } = await derive('b');
    const graph = (await readMappedGraph(out))!;
    const size = readFileSync(out).byteLength;
    const [own, packed] = externalRefs(graph).find((r) => r.tensor === 'W1')!.offsets as [number, number];
    // Same-length text edits keep the protobuf valid.
    const edit = (from: string, to: string) => {
      expect(to.length).toBe(from.length);
      const s = graph.toString('latin1');
      expect(s.includes(from)).toBe(true);
      return Buffer.from(s.replace(from, to), 'latin1');
    };
    expect(mappedProblem(edit(`|${packed};`, `|${packed + 4};`), size)).toMatch(/not a multiple of 64/);
    // The entry `offset` → its value (protobuf: key, then field 2 with the value's length).
    const entry = (o: number) => `offset\x12${String.fromCharCode(String(o).length)}${o}`;
    expect(mappedProblem(edit(entry(own), entry(own + 4)), size)).toMatch(/not a multiple of 64/);
    expect(mappedProblem(edit(MAPPED_FILE_NAME, 'other.onnx'), size)).toMatch(/reads another file/);
    expect(mappedProblem(graph, packed)).toMatch(/past the data file/);
    expect(mappedProblem(bytes, size)).toMatch(/no tensor was large enough/);
  });

  // A ModelProto by hand: ir_version (1), graph (7) → initializer (5) → TensorProto name (8),
  // external_data (13: key 1, value 2), data_location (14); opset_import (8).
  const varint = (x: number) => {
    const out: number[] = [];
    for (; x >= 0x80; x = Math.floor(x / 0x80)) out.push((x % 0x80) | 0x80);
    return Buffer.from([...out, x]);
  };
  const field = (n: number, v: Uint8Array | string) => {
    const b = typeof v === 'string' ? Buffer.from(v) : v;
    return Buffer.concat([varint(n * 8 + 2), varint(b.byteLength), b]);
  };
  const external = (tensors: Array<[string, Record<string, string>]>) =>
    Buffer.concat([
      Buffer.from([0x08, 7]),
      field(7, Buffer.concat(tensors.map(([name, e]) => field(5, Buffer.concat([field(8, name), ...Object.entries(e).map(([k, v]) => field(13, Buffer.concat([field(1, k), field(2, v)]))), Buffer.from([14 * 8, 1])]))))),
      field(8, Buffer.from([0x10, 13])),
    ]);

  it('relays ranges that share an offset, overlap or straddle a page each to the same bytes, on pages', () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7) % 251));
    const ext = (offset: number, length: number, prepacked?: string) => ({ location: MAPPED_FILE_NAME, offset: String(offset), length: String(length), ...(prepacked ? { prepacked_0: prepacked } : {}) });
    // A's prepacked blob starts where A does, shorter; B starts inside A and runs past it; C ends the file.
    const graph = external([['A', ext(100, 5000, 'MatMul+1|100;3000;42;4100;900;43')], ['B', ext(2000, 4000)], ['C', ext(9000, 1000)]]);
    const read: Array<[number, number]> = [[100, 5000], [100, 3000], [4100, 900], [2000, 4000], [9000, 1000]];
    const out = relayMapped(graph, data);
    const offsets = externalRefs(out.graph).flatMap((r) => r.offsets);
    expect(offsets).toHaveLength(read.length);
    read.forEach(([o, n], i) => {
      expect(offsets[i]! % 4096).toBe(0);
      expect(out.data.subarray(offsets[i]!, offsets[i]! + n).equals(data.subarray(o, o + n))).toBe(true);
    });
    expect(mappedProblem(out.graph, out.data.byteLength)).toBeNull();
    // Ranges on pages already stay where they are, and the graph comes back byte for byte.
    const onPages = external([['A', ext(0, 5000, 'MatMul+1|8192;900;43')], ['B', ext(0, 3000)]]);
    expect(relayMapped(onPages, data).graph.equals(onPages)).toBe(true);
  });

  it('relaying refuses a range outside the data file, rather than copying other bytes or none', () => {
    const data = Buffer.alloc(10_000, 1);
    const one = (offset: string, length: string) => () => relayMapped(external([['T', { location: MAPPED_FILE_NAME, offset, length }]]), data);
    expect(one('0', '10000')).not.toThrow();
    expect(one('9999', '2')).toThrow(/outside the data file/);
    expect(one('-10', '5')).toThrow(/outside the data file/);
    expect(one('12x', '5')).toThrow(/outside the data file/);
    expect(one('0', '-1')).toThrow(/outside the data file/);
  });

  it('packs data, graph and a trailer that finds the graph again', () => {
    const data = new Uint8Array([1, 2, 3]);
    const graph = new Uint8Array([9, 8]);
    const b = packMapped(data, graph);
    expect([...b.subarray(0, 5)]).toEqual([1, 2, 3, 9, 8]);
    expect(b.subarray(-8).toString('latin1')).toBe('BRULEEMA');
    expect(Number(b.readBigUInt64LE(b.length - 16))).toBe(2);
  });

  describe('load windows (runtime/malloc.ts)', () => {
    // glibc's count of bytes in blocks it mapped on their own (mallinfo2's hblkhd), through koffi as
    // brulee calls glibc (a dependency: \`npm install\` if it is missing).
    let info: (() => { hblkhd: number }) | undefined;
    const mapped = () => {
      if (!info) {
        const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
        const fields = ['arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost'];
        info = koffi.load('libc.so.6').func('mallinfo2', koffi.struct('mallinfo2', Object.fromEntries(fields.map((f) => [f, 'size_t']))), []) as () => { hblkhd: number };
      }
      return Number(info().hblkhd);
    };
    // Whether a 1 MiB block (a Buffer's memory: malloc) becomes a mapping of its own, as blocks over brulee's threshold do.
    const ownMapping = () => {
      const before = mapped();
      const b = Buffer.allocUnsafeSlow(1 << 20);
      const grew = mapped() - before >= 1 << 20;
      b[0] = 1;
      return grew;
    };

    // What a window asks of glibc, recorded (mallopt's M_TRIM_THRESHOLD is -1, M_MMAP_THRESHOLD -3).
    const recorder = () => {
      const calls: string[] = [];
      const ctl: MallocControl = {
        mallopt: (p, v) => (calls.push(`mallopt ${p} ${v}`), 1),
        mallocTrim: (pad) => (calls.push(`trim ${pad}`), 1),
      };
      return { calls, ctl };
    };
    const OPEN = ['mallopt -1 2147483647', `mallopt -3 ${LOAD_WINDOW_MMAP_THRESHOLD}`];
    // The tunables' values put back (vitest.config.ts starts test processes with brulee's, as nodes), then a trim.
    const CLOSE = ['mallopt -3 131072', 'mallopt -1 131072', 'trim 0'];

    it('raises the thresholds while loads run (loads at once share one window, a failed load closes it too), then puts back the tunables and trims', async () => {
      expect(process.env.GLIBC_TUNABLES).toMatch(/glibc\.malloc\.mmap_threshold=131072/);
      const { calls, ctl } = recorder();
      const opened = loadWindowsOpened();
      let release!: () => void;
      const first = inLoadWindow(() => new Promise<void>((r) => (release = r)), ctl);
      const inside = await inLoadWindow(async () => {
        expect(trimHeap(ctl)).toBe(false); // never while a window is open
        return [...calls];
      }, ctl);
      expect(inside).toEqual(OPEN);
      expect(calls).toEqual(OPEN);
      release();
      await first;
      expect(calls).toEqual([...OPEN, ...CLOSE]);
      await expect(inLoadWindow(() => Promise.reject(new Error('no')), ctl)).rejects.toThrow('no');
      expect(calls).toEqual([...OPEN, ...CLOSE, ...OPEN, ...CLOSE]);
      expect(loadWindowsOpened() - opened).toBe(2);
      // After evictions: one trim in the next turn however many ask; and one at once when asked.
      calls.length = 0;
      trimFreed(ctl);
      trimFreed(ctl);
      expect(calls).toEqual([]);
      await new Promise((r) => setImmediate(r));
      expect(calls).toEqual(['trim 0']);
      expect(trimHeap(ctl)).toBe(true);
      expect(calls).toEqual(['trim 0', 'trim 0']);
    });

    it('reads the tunables as glibc does (decimal or 0x hex), and counts the prepacked bytes a window saves (all but the largest blob)', () => {
      expect(tunable({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072' }, 'mmap_threshold', 1)).toBe(131072);
      expect(tunable({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1:glibc.malloc.trim_threshold=0x20000' }, 'trim_threshold', 1)).toBe(131072);
      expect(tunable({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072' }, 'trim_threshold', 7)).toBe(7);
      expect(tunable({}, 'mmap_threshold', 9)).toBe(9);
      const graph = Buffer.from('a|0;300000;11 b|4096;200000;12 c|8192;131071;13 d|0;100;14', 'latin1');
      expect(prepackedReuseBytes(graph)).toBe(200000);
      expect(prepackedReuseBytes(graph, 100)).toBe(200000 + 131071 + 100);
    });

    // The kernel's transparent huge page mode ('always', 'madvise' or 'never'), or null where there is none.
    const thpMode = () => {
      try {
        return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? null;
      } catch {
        return null;
      }
    };

    it.runIf(process.platform === 'linux' && thpMode() === 'madvise')('asks for transparent huge pages for the blocks glibc maps (glibc.malloc.hugetlb=1: a weight copy faults in 2 MiB at a time)', () => {
      const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
      const libc = koffi.load('libc.so.6');
      const malloc = libc.func('void* malloc(size_t)') as (n: number) => unknown;
      const free = libc.func('void free(void*)') as (p: unknown) => void;
      // Whether the mapping holding `p` may take huge pages (THPeligible in /proc/self/smaps).
      const eligible = (p: unknown) => {
        const at = BigInt(koffi.address(p) as bigint);
        let inside = false;
        for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
          const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
          if (m) inside = BigInt(`0x${m[1]}`) <= at && at < BigInt(`0x${m[2]}`);
          else if (inside && line.startsWith('THPeligible:')) return line.trim().endsWith('1');
        }
        throw new Error('no mapping holds the block');
      };
      const block = malloc(4 << 20); // over the mmap threshold: a mapping of its own
      try {
        expect(eligible(block)).toBe(true);
      } finally {
        free(block);
      }
    });

    it.runIf(process.platform === 'linux')('in a window, glibc really serves a 1 MiB block from the heap (not a mapping of its own)', async () => {
      const ctl = mallocControl();
      expect(ctl).not.toBeNull();
      expect(await inLoadWindow(async () => ownMapping(), ctl)).toBe(false);
    });

    it.runIf(process.platform === 'linux')("a model's first load in a window is measured at what it keeps, whatever free pages the heap held before", async () => {
      const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
      const libc = koffi.load('libc.so.6');
      const malloc = libc.func('void* malloc(size_t)') as (n: number) => unknown;
      const free = libc.func('void free(void*)') as (p: unknown) => void;
      const memset = libc.func('void* memset(void*, int, size_t)') as (p: unknown, c: number, n: number) => unknown;
      const ctl = mallocControl();
      // Earlier work: 400 blocks of 100 KiB (heap blocks, under the threshold), every hundredth
      // still live: four free runs of 9.9 MiB between them, resident, and not at the heap's top.
      const small = Array.from({ length: 400 }, () => {
        const b = malloc(100 * 1024);
        memset(b, 1, 100 * 1024);
        return b;
      });
      const live = small.filter((_, i) => i % 100 === 99);
      small.forEach((b, i) => i % 100 !== 99 && free(b));
      // A load that keeps 24 MiB (three 8 MiB blocks), in a window: without the trim before the
      // measurement it took the free pages (measured ~0), or its window's trim gave them back.
      const kept: unknown[] = [];
      const fp = new Footprints();
      await fp.load('m', () =>
        inLoadWindow(async () => {
          for (let i = 0; i < 3; i++) kept.push(memset(malloc(8 << 20), 2, 8 << 20));
        }, ctl),
      );
      for (const b of [...kept, ...live]) free(b);
      expect(fp.measured('m') / (1 << 20)).toBeGreaterThan(20);
      expect(fp.measured('m') / (1 << 20)).toBeLessThan(32);
    });

    it('a mapped model with several large prepacked weights loads in one, to the same bits as the original; one with a single large weight does not', async () => {
      // 64 -> 1024 -> 1024 -> 1024 -> 1024 -> 16: three 4 MiB weights, each packed again at load.
      const big = mlpModel({ inputSize: 64, hidden: [1024, 1024, 1024, 1024], outputSize: 16, seed: 7 });
      const src = join(dir, 'big.onnx');
      writeFileSync(src, big);
      const out = join(dir, 'big', MAPPED_FILE_NAME);
      mkdirSync(join(dir, 'big'));
      expect(await deriveOptimized(src, out)).toEqual({ form: 'mapped' });
      const reuse = prepackedReuseBytes((await readMappedGraph(out))!);
      expect(reuse).toBeGreaterThanOrEqual(LOAD_WINDOW_MIN_REUSE_BYTES);
      expect(reuse).toBeGreaterThanOrEqual(2 * 1024 * 1024 * 4);
      // The model above: one 2 MB weight, and a 128 KiB one (all its copy could reuse).
      const { out: small } = await derive('no-window');
      expect(prepackedReuseBytes((await readMappedGraph(small))!)).toBeLessThan(LOAD_WINDOW_MIN_REUSE_BYTES);

      const opened = loadWindowsOpened();
      const model = await loadModel(out, { preOptimized: true });
      expect(loadWindowsOpened() - opened).toBe(process.platform === 'linux' ? 1 : 0);
      await loadModel(small, { preOptimized: true }).then((m) => m.dispose());
      expect(loadWindowsOpened() - opened).toBe(process.platform === 'linux' ? 1 : 0);
      await expectBitsOfOriginal(model, big, [1, 3], 20);
    });
  });
});
