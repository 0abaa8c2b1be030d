import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../runtime/policies/random';
import { readAzure, sortRange, sortRangeByCompare } from '../../sim/azure';
import { mapModels, readPaperModels } from '../../sim/models';
import { readPlainTrace, splitCsv, totalBytes } from '../../sim/trace';

const HEAD = 'HashOwner,HashApp,HashFunction,Trigger';
/** Temp folders made here, removed after the file's tests. */
const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
function azureDir(rows: string[], minutes: number[]): string {
  const dir = tempDir('brulee-azure-');
  writeFileSync(join(dir, 'invocations.csv'), [`${HEAD},${minutes.join(',')}`, ...rows].join('\n') + '\n');
  return dir;
}

describe('Azure Functions 2019 reader', () => {
  it('spreads a minute evenly: c calls at (j + 0.5) x 60000 / c', () => {
    const t = readAzure(azureDir(['o,a,f1,http,2,0,1', 'o,a,f2,timer,0,1,0'], [10, 11, 12]));
    expect(Array.from(t.times)).toEqual([15_000, 45_000, 90_000, 150_000]);
    expect(Array.from(t.fns, (f) => t.functions[f])).toEqual(['f1', 'f1', 'f2', 'f1']);
    expect(t.minutes).toEqual([10, 11, 12]);
    expect(t.spanMs).toBe(180_000);
  });
  it('spreads at seeded random inside the minute, repeatably', () => {
    const dir = azureDir(['o,a,f1,http,50,50', 'o,a,f2,http,30,0'], [0, 1]);
    const a = readAzure(dir, { spread: 'random', seed: 3 });
    const b = readAzure(dir, { spread: 'random', seed: 3 });
    const c = readAzure(dir, { spread: 'random', seed: 4 });
    expect(Array.from(a.times)).toEqual(Array.from(b.times));
    expect(Array.from(a.times)).not.toEqual(Array.from(c.times));
    expect(a.times.length).toBe(130);
    for (let i = 1; i < a.times.length; i++) expect(a.times[i]!).toBeGreaterThanOrEqual(a.times[i - 1]!);
    const minute0 = Array.from(a.times).filter((x) => x < 60_000).length;
    expect(minute0).toBe(80);
  });
  it('takes any span of minute columns and any number of functions', () => {
    const minutes = Array.from({ length: 7 }, (_, k) => 1000 + k);
    const rows = Array.from({ length: 25 }, (_, f) => `o,a,h${f},http,${minutes.map((_, k) => (f + k) % 3).join(',')}`);
    const t = readAzure(azureDir(rows, minutes));
    expect(t.functions.length).toBe(25);
    expect(t.times.length).toBe(rows.reduce((s, r) => s + r.split(',').slice(4).reduce((a, c) => a + Number(c), 0), 0));
    expect(t.spanMs).toBe(7 * 60_000);
    expect(t.times[t.times.length - 1]!).toBeLessThan(7 * 60_000);
  });
  it('rejects malformed rows with the row number', () => {
    expect(() => readAzure(azureDir(['o,a,f1,http,1,2', 'o,a,f2,http,1,x'], [0, 1]))).toThrow(/invocations\.csv row 3: minute 1 count "x"/);
    expect(() => readAzure(azureDir(['o,a,f1,http,1,2', 'o,a,f2,http,1'], [0, 1]))).toThrow(/row 3: 5 columns, the header has 6/);
    expect(() => readAzure(azureDir(['o,a,f1,http,-1,2'], [0, 1]))).toThrow(/row 2: minute 0 count "-1"/);
    expect(() => readAzure(azureDir([], [5, 4]))).toThrow(/row 1: minute columns must increase/);
    expect(() => readAzure(tempDir('brulee-empty-'))).toThrow(/no invocations\.csv/);
  });
});

describe('CSV fields quoted as RFC 4180 has it (spreadsheets, csv writers with quoting on)', () => {
  it('splits quoted fields: commas and doubled quotes inside, spaces around, empty ones', () => {
    expect(splitCsv('a, b ,c')).toEqual(['a', 'b', 'c']);
    expect(splitCsv('"a,b","say ""hi""",c')).toEqual(['a,b', 'say "hi"', 'c']);
    expect(splitCsv(' "x" , "",y,')).toEqual(['x', '', 'y', '']);
    expect(splitCsv('""""')).toEqual(['"']);
    expect(splitCsv('"1",2,"3"')).toEqual(['1', '2', '3']);
  });
  it('rejects a quote left open, text after a closing quote and a bare quote, naming where', () => {
    expect(() => splitCsv('"a,b', 'f.csv row 7')).toThrow(/^f\.csv row 7: a quoted field is not closed/);
    expect(() => splitCsv('"a"b,c', 'f.csv row 7')).toThrow(/^f\.csv row 7: text after the closing quote of field 1 \("a"\)/);
    expect(() => splitCsv('a,b"c', 'f.csv row 7')).toThrow(/^f\.csv row 7: field 2 \("b\\"c"\) has a quote inside it/);
  });
  it('reads a quoted Azure file and a quoted plain trace as their unquoted forms', () => {
    const quoted = azureDir(['"o","a","f1","http","2","0"', 'o,"a,b",f2,timer,1,1'], [0, 1]);
    const plain = azureDir(['o,a,f1,http,2,0', 'o,ab,f2,timer,1,1'], [0, 1]);
    const [q, p] = [readAzure(quoted), readAzure(plain)];
    expect([Array.from(q.times), Array.from(q.fns), q.functions]).toEqual([Array.from(p.times), Array.from(p.fns), p.functions]);
    expect(() => readAzure(azureDir(['o,a,"f1,http,1,2'], [0, 1]))).toThrow(/invocations\.csv row 2: a quoted field is not closed/);
    const dir = tempDir('brulee-plain-');
    writeFileSync(join(dir, 't.csv'), '"time_ms","function"\r\n"5","b"\r\n1,a\r\n 3 , "a" \r\n');
    const t = readPlainTrace(join(dir, 't.csv'));
    expect([Array.from(t.times), Array.from(t.fns, (f) => t.functions[f])]).toEqual([[0, 2, 4], ['a', 'a', 'b']]);
  });
});

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/**
 * The shared traces and models: `../shared` beside this checkout, or, for a clone of a checkout on
 * this machine (`git clone . $d/p`, as a clean-clone CI run makes), beside the checkout it came from.
 */
function sharedDir(): string {
  const beside = resolve(root, '../shared');
  if (existsSync(beside)) return beside;
  try {
    const origin = execFileSync('git', ['-C', root, 'remote', 'get-url', 'origin'], { encoding: 'utf8' }).trim();
    if (isAbsolute(origin) && existsSync(resolve(origin, '../shared'))) return resolve(origin, '../shared');
  } catch {
    // Not a clone, or no git: only `beside` is looked at.
  }
  return beside;
}
const shared = sharedDir();
const sample = join(shared, 'traces/azure2019-sample100');
const paper = join(shared, 'models/paper-models.json');

describe('the shipped sample with the paper models', () => {
  it('reads 100 functions over 480 minutes and maps them by rank', () => {
    // Not skipped when absent: CI keeps shared/ beside the clone, and a missing trace is a broken setup.
    for (const f of [join(sample, 'invocations.csv'), paper]) {
      expect(existsSync(f), `${f} is missing: the shared traces and models belong beside the clone (../shared), or beside the checkout it was cloned from`).toBe(true);
    }
    const t = readAzure(sample);
    expect(t.functions.length).toBe(100);
    expect(t.minutes.length).toBe(480);
    expect(t.times.length).toBe(339_657);
    const models = readPaperModels(paper);
    expect(models.length).toBe(26);
    const m = mapModels(t, models, 'rank');
    // The most popular function gets the costliest model to load (NASNetLarge, 19.5 s).
    let top = 0;
    for (let f = 1; f < t.functions.length; f++) if (t.counts[f]! > t.counts[top]!) top = f;
    expect(m[top]!.model).toBe('NASNetLarge');
    // roundrobin: function i gets model i mod 26; all models' size is the sum over functions.
    const rr = mapModels(t, models, 'roundrobin');
    expect(rr[27]!.model).toBe(models[1]!.name);
    expect(totalBytes(rr)).toBe(rr.reduce((s, x) => s + x.sizeBytes, 0));
  });
  it('reads the same sample written again with every field quoted and CRLF line ends (as csv.writer(quoting=QUOTE_ALL) writes it)', () => {
    const dir = tempDir('brulee-quoted-');
    for (const f of ['invocations.csv', 'durations.csv', 'memory.csv']) {
      const lines = readFileSync(join(sample, f), 'utf8').trimEnd().split('\n');
      writeFileSync(join(dir, f), lines.map((l) => l.split(',').map((c) => `"${c}"`).join(',')).join('\r\n') + '\r\n');
    }
    const [q, t] = [readAzure(dir), readAzure(sample)];
    expect(q.times.length).toBe(339_657);
    expect(Buffer.compare(Buffer.from(q.times.buffer), Buffer.from(t.times.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(q.fns.buffer), Buffer.from(t.fns.buffer))).toBe(0);
    expect([q.functions, q.minutes, q.info]).toEqual([t.functions, t.minutes, t.info]);
    expect(q.info.filter((i) => i.avgDurationMs !== undefined && i.avgMemoryMb !== undefined).length).toBeGreaterThan(50);
  });
});

describe('sortRange (a minute of calls in time order)', () => {
  it('gives what a comparison sort by (time, position) gives, ties and clusters included', () => {
    const rand = seededRandom(3);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(rand() * 400);
      const from = Math.floor(rand() * 5);
      const kind = trial % 4;
      const times = new Float64Array(from + n + 3);
      for (let i = 0; i < times.length; i++) {
        times[i] =
          kind === 0 ? rand() * 60_000 // spread at random
          : kind === 1 ? Math.floor(rand() * 8) * 7_500 // few distinct times, many ties
          : kind === 2 ? (rand() < 0.9 ? 30_000 + rand() : rand() * 60_000) // one dense cluster
          : 1e9 + ((Math.floor(rand() * 20) + 0.5) * 60_000) / 20; // as the even spread puts them
      }
      const fns = Uint32Array.from(times, (_, i) => i);
      const a = { t: times.slice(), f: fns.slice() };
      const b = { t: times.slice(), f: fns.slice() };
      sortRange(a.t, a.f, from, from + n);
      sortRangeByCompare(b.t, b.f, from, from + n);
      expect(a.t).toEqual(b.t);
      expect(a.f).toEqual(b.f);
    }
  });
});
