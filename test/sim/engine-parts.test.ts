// The simulator's event loop (`sim/engine.ts`, `NodeRun`) on tiny traces whose every figure is
// worked out by hand in the comments: the exact counts, delays, bytes and the facts each policy
// hook is handed. Written from mutation testing's gaps (test/MUTATION.md, engine).
import { describe, expect, it } from 'vitest';
import { createPolicy } from '../../runtime/policies';
import type { EntryFacts, EvictionPolicy, EvictionRequest, Victim } from '../../runtime/policies/types';
import { simulate, skipChecks, type SimOptions, type SimResult } from '../../sim/engine';
import { buildTrace } from '../../sim/trace';
import { modelsOf, traceOf } from './helpers';

/** The result without the wall time (the one figure that is not a function of the inputs). */
function run(events: [number, string][], table: Parameters<typeof modelsOf>[1], policy: EvictionPolicy, opts: SimOptions): Omit<SimResult, 'wallMs'> {
  const t = traceOf(events);
  const { wallMs: _w, ...r } = simulate(t, modelsOf(t, table), policy, opts);
  return r;
}

describe('simulate: options are checked', () => {
  const t = traceOf([[0, 'A']]);
  const m = modelsOf(t);
  const lru = () => createPolicy('lru');
  it('says which option is wrong and what it got', () => {
    expect(() => simulate(t, [...m, ...m], lru(), { budgetBytes: 1 })).toThrow(new RangeError('simulate: 2 models for 1 functions'));
    for (const b of [0, -1, NaN, Infinity]) {
      expect(() => simulate(t, m, lru(), { budgetBytes: b })).toThrow(new RangeError(`simulate: budgetBytes must be a positive number, got ${b}`));
    }
    for (const k of [0, 1.5, NaN]) {
      expect(() => simulate(t, m, lru(), { budgetBytes: 1, slots: k })).toThrow(new RangeError(`simulate: slots must be an integer >= 1, got ${k}`));
    }
    for (const s of [-1, NaN]) {
      expect(() => simulate(t, m, lru(), { budgetBytes: 1, sweepMs: s })).toThrow(new RangeError(`simulate: sweepMs must be >= 0, got ${s}`));
    }
    for (const p of [-1, NaN]) {
      expect(() => simulate(t, m, lru(), { budgetBytes: 1, popularityFirstRefreshMs: p })).toThrow(new RangeError(`simulate: popularityFirstRefreshMs must be >= 0, got ${p}`));
    }
  });
  it('takes the edge values', () => {
    // The smallest budget that holds A (1 byte), one slot, checks before every call, a refresh at 0.
    const r = run([[0, 'A']], {}, lru(), { budgetBytes: 1, slots: 1, sweepMs: 0, popularityFirstRefreshMs: 0 });
    expect([r.invocations, r.coldStarts, r.refused]).toEqual([1, 1, 0]);
  });
});

describe('simulate: the figures of a run, by hand', () => {
  // A (2 bytes, load 100, exec 10), B (1, 50, 5), C (2, 30, 20), D (4 bytes: larger than the budget, 3).
  const table = { A: { sizeBytes: 2, loadMs: 100, execMs: 10 }, B: { sizeBytes: 1, loadMs: 50, execMs: 5 }, C: { sizeBytes: 2, loadMs: 30, execMs: 20 }, D: { sizeBytes: 4 } };
  const events: [number, string][] = [[0, 'A'], [10, 'B'], [20, 'A'], [300, 'C'], [400, 'D']];
  // One slot, LRU, budget 3:
  //   0    A loads (0-100), runs to 110: waits 100, latency 110, queued 0      used 2
  //   110  B (arrived 10) loads (110-160), runs to 165: waits 50, latency 155, queued 100   used 3
  //   165  A (arrived 20) hits, runs to 175: latency 155, queued 145
  //   300  C needs 2 + 3 - 3 = 2: LRU evicts B (last used 160), then A (165); loads 300-330, runs
  //        to 350: waits 30, latency 50                                          used 2
  //   400  D (4 > 3) is refused; the run ends at 400.
  // Bytes held: 2 x 110 + 3 x 190 + 2 x 100 = 990 byte-ms over 400 ms.
  it('counts every invocation', () => {
    expect(run(events, table, createPolicy('lru'), { budgetBytes: 3 })).toEqual({
      policy: 'lru', budgetBytes: 3, invocations: 5, refused: 1, coldStarts: 3, hitRatio: 1 / 4,
      loads: 3, prewarmLoads: 0, evictions: 2, expirations: 0,
      loadDelayMs: 180, meanLoadDelayMs: 45, execMs: 45, loadDelayPctOfExec: 400,
      meanLatencyMs: (110 + 155 + 155 + 50) / 4, p99LatencyMs: 155, meanQueueMs: (100 + 145) / 4,
      byteSeconds: 0.99, meanUsedBytes: 990 / 400, peakUsedBytes: 3, simulatedMs: 400,
    });
  });
  it('counts only the invocations arriving in the report window, and the bytes held in it', () => {
    // [10, 300): B and the second A. Bytes: 2 x 100 (10-110) + 3 x 190 (110-300) = 770 over 290 ms.
    expect(run(events, table, createPolicy('lru'), { budgetBytes: 3, reportFromMs: 10, reportToMs: 300 })).toEqual({
      policy: 'lru', budgetBytes: 3, invocations: 2, refused: 0, coldStarts: 1, hitRatio: 1 / 2,
      loads: 3, prewarmLoads: 0, evictions: 2, expirations: 0,
      loadDelayMs: 50, meanLoadDelayMs: 25, execMs: 15, loadDelayPctOfExec: (100 * 50) / 15,
      meanLatencyMs: 155, p99LatencyMs: 155, meanQueueMs: (100 + 145) / 2,
      byteSeconds: 0.77, meanUsedBytes: 770 / 290, peakUsedBytes: 3, simulatedMs: 400,
    });
  });
  it('wallMs is the wall time of the call', () => {
    const t = traceOf(events);
    const t0 = performance.now();
    const r = simulate(t, modelsOf(t, table), createPolicy('lru'), { budgetBytes: 3 });
    const t1 = performance.now();
    expect(r.wallMs).toBeGreaterThanOrEqual(0);
    expect(r.wallMs).toBeLessThanOrEqual(t1 - t0);
  });
  it('a window with nothing served gives zeros, not NaN', () => {
    // Only D arrives in [400, 500): refused. Bytes: C's 2 from 400 to the end at 400: none.
    expect(run(events, table, createPolicy('lru'), { budgetBytes: 3, reportFromMs: 400, reportToMs: 500 })).toEqual({
      policy: 'lru', budgetBytes: 3, invocations: 1, refused: 1, coldStarts: 0, hitRatio: 0,
      loads: 3, prewarmLoads: 0, evictions: 2, expirations: 0,
      loadDelayMs: 0, meanLoadDelayMs: 0, execMs: 0, loadDelayPctOfExec: 0,
      meanLatencyMs: 0, p99LatencyMs: 0, meanQueueMs: 0,
      byteSeconds: 0, meanUsedBytes: 0, peakUsedBytes: 3, simulatedMs: 400,
    });
  });
});

/**
 * A policy that writes down every call with the facts it is handed, and answers from scripts:
 * `victims` names keys in a fixed order (the simulator must skip those it may not evict),
 * `expire` and `warm` by the time of the check.
 */
class Recorder implements EvictionPolicy {
  readonly name = 'recorder';
  readonly log: string[] = [];
  constructor(
    private readonly victims: (req: EvictionRequest) => readonly string[] = (req) => req.candidates.map((c) => c.key),
    readonly expire?: (now: number) => readonly string[],
    readonly warm?: (now: number) => readonly string[],
    private readonly ask: readonly string[] = [],
  ) {
    // Without a script, no hook at all (as a policy without keep-alive or pre-warming).
    if (!expire) Object.defineProperty(this, 'expired', { value: undefined });
    if (!warm) Object.defineProperty(this, 'prewarm', { value: undefined });
  }
  private static facts(e: EntryFacts): string {
    return `${e.key}(hits ${e.hits}, loaded ${e.loadedAt}, used ${e.lastUsedAt}, pop ${e.popularity.toFixed(4)})`;
  }
  selectVictims(req: EvictionRequest): Victim[] {
    const i = req.incoming;
    this.log.push(`select@${req.now} need ${req.needBytes} [${req.candidates.map(Recorder.facts).join(' ')}] for ${i.key}(${i.sizeBytes} B, load ${i.loadMs}, exec ${i.execMs}, pop ${i.popularity.toFixed(4)})`);
    return this.victims(req).map((key) => ({ key, reason: 'script' }));
  }
  onLoad(e: EntryFacts, now: number): void {
    this.log.push(`load@${now} ${Recorder.facts(e)}`);
  }
  onAccess(e: EntryFacts, now: number): void {
    this.log.push(`access@${now} ${Recorder.facts(e)}`);
  }
  onEvict(key: string, now: number): void {
    this.log.push(`evict@${now} ${key}`);
  }
  expired(entries: readonly EntryFacts[], now: number): Victim[] {
    this.log.push(`expired@${now} [${entries.map((e) => e.key).join(' ')}]`);
    return this.expire!(now).map((key) => ({ key, reason: 'script' }));
  }
  prewarm(now: number, isResident: (key: string) => boolean, freeBytes?: number): Victim[] {
    this.log.push(`prewarm@${now} free ${freeBytes} resident [${this.ask.filter(isResident).join(' ')}]`);
    return this.warm!(now).map((key) => ({ key, reason: 'script' }));
  }
}

/** Runs `policy` and returns its log beside the simulator's own callbacks and the result. */
function recorded(events: [number, string][], table: Parameters<typeof modelsOf>[1], policy: Recorder, opts: SimOptions) {
  const calls: string[] = [];
  const r = run(events, table, policy, {
    ...opts,
    onEvict: (key, now, cause) => calls.push(`evicted ${key}@${now} ${cause}`),
    onServe: (key, waitMs, cold) => calls.push(`served ${key} wait ${waitMs}${cold ? ' cold' : ''}`),
    onLoadStart: (key, prewarm) => calls.push(`loading ${key}${prewarm ? ' prewarm' : ''}`),
  });
  return { log: policy.log, calls, r };
}

describe('simulate: what policies are handed and what the simulator does with their answers', () => {
  it('three slots: joins, hits, candidates without the models in flight, victims it may not evict skipped', () => {
    // Budget 3, 1 byte and 100 ms loads each; B runs 100 ms, the others 10 ms. The policy names
    // zz (unknown), D (not loaded), C, B, A, E, F, in that order, whatever the candidates.
    const table = { B: { loadMs: 100, execMs: 100 }, A: { loadMs: 100, execMs: 10 }, C: { loadMs: 100, execMs: 10 }, D: { loadMs: 100, execMs: 10 }, E: { loadMs: 100, execMs: 10 }, F: { loadMs: 100, execMs: 10 } };
    const events: [number, string][] = [[0, 'A'], [10, 'A'], [20, 'B'], [115, 'C'], [130, 'E'], [140, 'F'], [400, 'A'], [600, 'E'], [700, 'D']];
    const p = new Recorder(() => ['zz', 'D', 'C', 'B', 'A', 'E', 'F']);
    const { log, calls, r } = recorded(events, table, p, { budgetBytes: 3, slots: 3 });
    const f = (k: string, hits: number, loaded: number, used: number) => `${k}(hits ${hits}, loaded ${loaded}, used ${used}, pop 0.0000)`;
    expect(log).toEqual([
      // 0: A loads in slot 0 (to 100, runs to 110); 10: A joins it in slot 1 (touches it at 100);
      // 20: B loads in slot 2 (to 120, runs to 220).
      `load@100 ${f('A', 1, 100, 100)}`,
      `access@100 ${f('A', 2, 100, 100)}`,
      // 115: C loads in slot 0 (to 215). 120: B loaded.
      `load@120 ${f('B', 1, 120, 120)}`,
      // 130: E needs 1 byte. B runs, C loads: only A is a candidate. zz, D, C, B skipped; A goes.
      `select@130 need 1 [${f('A', 2, 100, 100)}] for E(1 B, load 100, exec 10, pop 0.0000)`,
      'evict@130 A',
      // 140: F waits for a slot (the three run to 225, 240, 220).
      `load@215 ${f('C', 1, 215, 215)}`,
      // 220: B's slot frees; F needs 1 byte: B is the candidate (C runs, E loads); C skipped.
      `select@220 need 1 [${f('B', 1, 120, 120)}] for F(1 B, load 100, exec 10, pop 0.0000)`,
      'evict@220 B',
      `load@230 ${f('E', 1, 230, 230)}`,
      `load@320 ${f('F', 1, 320, 320)}`,
      // 400: A needs 1 byte; nothing runs: C, E, F in the order they were loaded. C goes.
      `select@400 need 1 [${f('C', 1, 215, 215)} ${f('E', 1, 230, 230)} ${f('F', 1, 320, 320)}] for A(1 B, load 100, exec 10, pop 0.0000)`,
      'evict@400 C',
      `load@500 ${f('A', 1, 500, 500)}`,
      // 600: E hits.
      `access@600 ${f('E', 2, 230, 600)}`,
      // 700: D needs 1 byte: the candidates as the removals left them (F moved into C's place);
      // zz, D (the incoming), C and B are not loaded: A goes.
      `select@700 need 1 [${f('F', 1, 320, 320)} ${f('E', 2, 230, 600)} ${f('A', 1, 500, 500)}] for D(1 B, load 100, exec 10, pop 0.0000)`,
      'evict@700 A',
      `load@800 ${f('D', 1, 800, 800)}`,
    ]);
    expect(calls).toEqual([
      'loading A', 'served A wait 100 cold',
      'served A wait 90 cold',
      'loading B', 'served B wait 100 cold',
      'loading C', 'served C wait 100 cold',
      'evicted A@130 policy', 'loading E', 'served E wait 100 cold',
      'evicted B@220 policy', 'loading F', 'served F wait 100 cold',
      'evicted C@400 policy', 'loading A', 'served A wait 100 cold',
      'served E wait 0',
      'evicted A@700 policy', 'loading D', 'served D wait 100 cold',
    ]);
    expect([r.invocations, r.coldStarts, r.loads, r.evictions, r.peakUsedBytes, r.simulatedMs]).toEqual([9, 8, 7, 4, 3, 810]);
    // Waits: A 100, A 90 (joined), B 100, C 100, E 100, F 100 (+ 80 queued), A 100, D 100.
    expect(r.loadDelayMs).toBe(790);
    expect(r.meanQueueMs).toBe(80 / 9);
  });
});

describe('simulate: a call that waits for memory, or is refused', () => {
  const only = (log: string[]) => log.filter((l) => l.startsWith('select'));
  it('waits while a hit holds the memory, and asks the policy only when the candidates free enough', () => {
    // Budget 2, three slots, 1 byte each, loads 100 ms; X runs 1000 ms. X loads at 0 (done 1100),
    // hits at 2000 (runs to 3000); Z loads at 2001 (fits); Y at 2002 needs 1 byte: X runs, Z
    // loads, so nothing is a candidate: Y waits, without asking the policy. At 2111 Z is done:
    // Y evicts Z (queued 109 ms, waits its own load).
    const table = { X: { loadMs: 100, execMs: 1000 }, Z: { loadMs: 100, execMs: 10 }, Y: { loadMs: 100, execMs: 10 } };
    const { log, r } = recorded([[0, 'X'], [2000, 'X'], [2001, 'Z'], [2002, 'Y']], table, new Recorder(), { budgetBytes: 2, slots: 3 });
    expect(only(log)).toEqual(['select@2111 need 1 [Z(hits 1, loaded 2101, used 2101, pop 0.0000)] for Y(1 B, load 100, exec 10, pop 0.0000)']);
    expect([r.invocations, r.refused, r.coldStarts, r.evictions, r.simulatedMs]).toEqual([4, 0, 3, 1, 3000]);
    expect(r.meanQueueMs).toBe(109 / 4);
  });
  it('waits while two hits hold the memory', () => {
    // Budget 1, three slots: X loads at 0 (done 1100), hits at 2000 and 2001 (run to 3000, 3001);
    // Y at 2002 waits (X runs), again at 3000 (X still runs once), evicts X at 3001.
    const table = { X: { loadMs: 100, execMs: 1000 }, Y: { loadMs: 100, execMs: 10 } };
    const { log, r } = recorded([[0, 'X'], [2000, 'X'], [2001, 'X'], [2002, 'Y']], table, new Recorder(), { budgetBytes: 1, slots: 3 });
    expect(only(log)).toEqual(['select@3001 need 1 [X(hits 3, loaded 100, used 2001, pop 0.0000)] for Y(1 B, load 100, exec 10, pop 0.0000)']);
    expect([r.invocations, r.refused, r.coldStarts, r.evictions, r.simulatedMs]).toEqual([4, 0, 2, 1, 3111]);
    expect(r.meanQueueMs).toBe(999 / 4);
  });
  it('waits for a pre-warm load, and asks the policy only when the loaded models free enough', () => {
    // Budget 3, checks every 1000 ms. A, B (1 byte) load at 0 and 100; C (2 bytes) at 200 evicts
    // A. At 1000 C expires and P (2 bytes) is pre-warmed (to 1100). D (2 bytes) at 1050 needs 2:
    // only B (1 byte) is loaded, so D waits without asking; at 1100 B and P go.
    const table = { C: { sizeBytes: 2 }, P: { sizeBytes: 2, loadMs: 100 }, D: { sizeBytes: 2 } };
    const p = new Recorder(undefined, (now) => (now === 1000 ? ['C'] : []), (now) => (now === 1000 ? ['P'] : []));
    const { log } = recorded([[0, 'A'], [100, 'B'], [200, 'C'], [1050, 'D'], [1500, 'P']], table, p, { budgetBytes: 3 });
    expect(log.filter((l) => /^(select|evict)/.test(l))).toEqual([
      'select@200 need 1 [A(hits 1, loaded 10, used 10, pop 0.0000) B(hits 1, loaded 110, used 110, pop 0.0000)] for C(2 B, load 10, exec 1, pop 0.0000)',
      'evict@200 A',
      'evict@1000 C',
      'select@1100 need 2 [B(hits 1, loaded 110, used 110, pop 0.0000) P(hits 0, loaded 1100, used 1100, pop 0.0000)] for D(2 B, load 10, exec 1, pop 0.0000)',
      'evict@1100 B',
      'evict@1100 P',
      'select@1500 need 1 [D(hits 1, loaded 1110, used 1110, pop 0.0000)] for P(2 B, load 100, exec 1, pop 0.0000)',
      'evict@1500 D',
    ]);
  });
  it('refuses a call when the policy frees too little and nothing is in flight', () => {
    // Budget 1: A loads at 0; B at 200 needs 1 byte, the policy names nothing: refused; A hits.
    const { log, r } = recorded([[0, 'A'], [200, 'B'], [300, 'A']], {}, new Recorder(() => []), { budgetBytes: 1 });
    expect(log).toEqual([
      'load@10 A(hits 1, loaded 10, used 10, pop 0.0000)',
      'select@200 need 1 [A(hits 1, loaded 10, used 10, pop 0.0000)] for B(1 B, load 10, exec 1, pop 0.0000)',
      'access@300 A(hits 2, loaded 10, used 300, pop 0.0000)',
    ]);
    expect([r.invocations, r.refused, r.coldStarts, r.loads, r.evictions, r.peakUsedBytes]).toEqual([3, 1, 1, 1, 0, 1]);
  });
  it('evicts the victims named only until the model fits, and asks when the candidates free exactly enough', () => {
    // Budget 3: A, B, C (1 byte) loaded; D (1 byte) needs 1: the policy names all three, A goes.
    // Then E (3 bytes) needs 3 = what C, B and D hold (C took A's place among the candidates): all go.
    const { log, r } = recorded([[0, 'A'], [100, 'B'], [200, 'C'], [300, 'D'], [400, 'E']], { E: { sizeBytes: 3 } }, new Recorder(), { budgetBytes: 3 });
    expect(log.filter((l) => l.startsWith('evict'))).toEqual(['evict@300 A', 'evict@400 C', 'evict@400 B', 'evict@400 D']);
    expect([r.coldStarts, r.evictions, r.peakUsedBytes]).toEqual([5, 4, 3]);
  });
  it('refuses a model larger than the budget at once, while other calls run; one as large as the budget loads', () => {
    // Budget 3, two slots: A loads 0-100 (runs to 110); D (4 bytes) at 10 is refused then and
    // there; B at 20 loads in the other slot; E (3 bytes) at 500 evicts A and B (LRU).
    const table = { A: { loadMs: 100, execMs: 10 }, B: { loadMs: 100, execMs: 10 }, D: { sizeBytes: 4 }, E: { sizeBytes: 3, loadMs: 100, execMs: 10 } };
    const r = run([[0, 'A'], [10, 'D'], [20, 'B'], [500, 'E']], table, createPolicy('lru'), { budgetBytes: 3, slots: 2 });
    expect([r.invocations, r.refused, r.coldStarts, r.loads, r.evictions, r.meanQueueMs, r.peakUsedBytes, r.simulatedMs]).toEqual([4, 1, 3, 3, 2, 0, 3, 610]);
  });
});

describe('simulate: keep-alive expiry and pre-warming', () => {
  it('checks every sweepMs: expired gets the evictable entries, prewarm the free bytes; neither may break the rules', () => {
    // Budget 3, two slots, checks every 500 ms, loads 100 ms. S (2 bytes) runs 1000 ms; T, Q 2
    // bytes; the rest 1 byte.
    const table = { S: { sizeBytes: 2, loadMs: 100, execMs: 1000 }, T: { sizeBytes: 2, loadMs: 100, execMs: 10 }, Q: { sizeBytes: 2, loadMs: 100, execMs: 10 }, A: { loadMs: 100, execMs: 10 }, P: { loadMs: 100, execMs: 10 }, R: { loadMs: 100, execMs: 10 } };
    const events: [number, string][] = [[450, 'A'], [1050, 'S'], [1950, 'T'], [3000, 'P'], [3500, 'R'], [4000, 'Q']];
    const expire = (now: number) => (now === 2000 ? ['zz', 'A', 'S', 'R'] : []);
    const warm = (now: number) => (now === 1000 ? ['zz', 'A', 'P', 'T', 'P', 'R'] : now === 2000 ? ['P'] : []);
    const p = new Recorder(undefined, expire, warm, ['A', 'P', 'R', 'zz']);
    const { log, calls, r } = recorded(events, table, p, { budgetBytes: 3, slots: 2, sweepMs: 500 });
    const f = (k: string, hits: number, loaded: number, used: number) => `${k}(hits ${hits}, loaded ${loaded}, used ${used}, pop 0.0000)`;
    expect(log).toEqual([
      // 450: A loads (to 550). 500: nothing evictable (no expired call); A loading counts as loaded.
      'prewarm@500 free 2 resident [A]',
      `load@550 ${f('A', 1, 550, 550)}`,
      // 1000: zz unknown, A loaded, P loads (2 bytes used), T does not fit, P is loading, R loads.
      'expired@1000 [A]',
      'prewarm@1000 free 2 resident [A]',
      // 1050: S needs 2 bytes; only A is a candidate: S waits for the pre-warm loads (to 1100).
      `load@1100 ${f('P', 0, 1100, 1100)}`,
      `load@1100 ${f('R', 0, 1100, 1100)}`,
      `select@1100 need 2 [${f('A', 1, 550, 550)} ${f('P', 0, 1100, 1100)} ${f('R', 0, 1100, 1100)}] for S(2 B, load 100, exec 1000, pop 0.0000)`,
      'evict@1100 A',
      'evict@1100 P',
      `load@1200 ${f('S', 1, 1200, 1200)}`,
      // 1500: S runs: only R is evictable.
      'expired@1500 [R]',
      'prewarm@1500 free 0 resident [R]',
      // 1950: T needs 2 bytes; S runs: T waits. 2000: zz, A (not loaded), S (runs) are skipped, R
      // expires; no pre-warming while T waits.
      'expired@2000 [R]',
      'evict@2000 R',
      // 2200: S is done; T needs 1 byte more: S goes.
      `select@2200 need 1 [${f('S', 1, 1200, 1200)}] for T(2 B, load 100, exec 10, pop 0.0000)`,
      'evict@2200 S',
      `load@2300 ${f('T', 1, 2300, 2300)}`,
      'expired@2500 [T]',
      'prewarm@2500 free 1 resident []',
      'expired@3000 [T]',
      'prewarm@3000 free 1 resident []',
      // 3000: P fits.
      `load@3100 ${f('P', 1, 3100, 3100)}`,
      'expired@3500 [T P]',
      'prewarm@3500 free 0 resident [P]',
      `select@3500 need 1 [${f('T', 1, 2300, 2300)} ${f('P', 1, 3100, 3100)}] for R(1 B, load 100, exec 10, pop 0.0000)`,
      'evict@3500 T',
      `load@3600 ${f('R', 1, 3600, 3600)}`,
      'expired@4000 [P R]',
      'prewarm@4000 free 1 resident [P R]',
      `select@4000 need 1 [${f('P', 1, 3100, 3100)} ${f('R', 1, 3600, 3600)}] for Q(2 B, load 100, exec 10, pop 0.0000)`,
      'evict@4000 P',
      `load@4100 ${f('Q', 1, 4100, 4100)}`,
    ]);
    expect(calls).toEqual([
      'loading A', 'served A wait 100 cold',
      'loading P prewarm', 'loading R prewarm',
      'evicted A@1100 policy', 'evicted P@1100 policy', 'loading S', 'served S wait 100 cold',
      'evicted R@2000 expired',
      'evicted S@2200 policy', 'loading T', 'served T wait 100 cold',
      'loading P', 'served P wait 100 cold',
      'evicted T@3500 policy', 'loading R', 'served R wait 100 cold',
      'evicted P@4000 policy', 'loading Q', 'served Q wait 100 cold',
    ]);
    expect([r.invocations, r.coldStarts, r.loads, r.prewarmLoads, r.evictions, r.expirations, r.peakUsedBytes, r.simulatedMs]).toEqual([6, 6, 8, 2, 5, 1, 3, 4110]);
    // Queued: S 50 (1050 to 1100), T 250 (1950 to 2200).
    expect(r.meanQueueMs).toBe(300 / 6);
    // The same without the callbacks.
    const { wallMs: _w, ...plain } = simulate(traceOf(events), modelsOf(traceOf(events), table), new Recorder(undefined, expire, warm), { budgetBytes: 3, slots: 2, sweepMs: 500 });
    expect(plain).toEqual(r);
  });
});

describe('simulate: progress', () => {
  it('reports every 2^18 dispatched invocations, and runs without a progress callback', () => {
    // 2^18 + 1 hits of one model (1 ms apart, 0 ms exec): one report, after the 2^18th.
    const n = (1 << 18) + 1;
    const t = buildTrace(Float64Array.from({ length: n }, (_, i) => i), new Uint32Array(n), ['A'], 'test');
    const m = [{ key: 'A', sizeBytes: 1, loadMs: 0, execMs: 0 }];
    const seen: [number, number][] = [];
    let calls = 0;
    const r = simulate(t, m, createPolicy('lru'), { budgetBytes: 1, onProgress: (done, total) => (calls++ < 3 ? seen.push([done, total]) : 0) });
    expect(seen).toEqual([[1 << 18, n]]);
    expect(calls).toBe(1);
    expect(simulate(t, m, createPolicy('lru'), { budgetBytes: 1 }).invocations).toBe(r.invocations);
  });
});

describe('simulate: popularity as the policy sees it', () => {
  // Refreshes every 100 ms with a 100 ms window: keep = e^-1 of the rate at each refresh, and
  // popularity = rate / sum of rates (sim/popularity.ts, the runtime's decayRates).
  const k = Math.exp(-1);
  const events: [number, string][] = [[0, 'A'], [10, 'A'], [20, 'B'], [150, 'C'], [250, 'B'], [300, 'A']];
  const opts: SimOptions = { budgetBytes: 2, popularityRefreshMs: 100, popularityWindowMs: 100 };
  const fx = (key: string, hits: number, loaded: number, used: number, pop: number) => `${key}(hits ${hits}, loaded ${loaded}, used ${used}, pop ${pop.toFixed(4)})`;
  it('is the decayed share as of the last refresh, on loads, hits, candidates and the incoming model', () => {
    // Counts: A 2, B 1 by the refresh at 100; C 1 by 200; B 1 by 300.
    const t300 = 2 * k * k + (k * k + 1) + k;
    const { log } = recorded(events, {}, new Recorder(), opts);
    expect(log).toEqual([
      `load@10 ${fx('A', 1, 10, 10, 0)}`,
      `access@11 ${fx('A', 2, 10, 11, 0)}`,
      `load@30 ${fx('B', 1, 30, 30, 0)}`,
      // 100: A 2/3, B 1/3.
      `select@150 need 1 [${fx('A', 2, 10, 11, 2 / 3)} ${fx('B', 1, 30, 30, 1 / 3)}] for C(1 B, load 10, exec 1, pop 0.0000)`,
      'evict@150 A',
      `load@160 ${fx('C', 1, 160, 160, 0)}`,
      // 200: rates 2k, k, 1.
      `access@250 ${fx('B', 2, 30, 250, k / (3 * k + 1))}`,
      // 300 (refreshed before the call at 300): rates 2k², k² + 1, k.
      `select@300 need 1 [${fx('B', 2, 30, 250, (k * k + 1) / t300)} ${fx('C', 1, 160, 160, k / t300)}] for A(1 B, load 10, exec 1, pop ${(2 * k * k / t300).toFixed(4)})`,
      'evict@300 B',
      `load@310 ${fx('A', 1, 310, 310, 2 * k * k / t300)}`,
    ]);
  });
  it('a load that spans a refresh is handed the share as of its end', () => {
    // No memory pressure. A at 0 and 10; B at 150 loads 100 ms, to 250: the refresh at 200 saw
    // B once (rates 2k for A, 1 for B).
    const { log } = recorded([[0, 'A'], [10, 'A'], [150, 'B']], { B: { loadMs: 100 } }, new Recorder(), { ...opts, budgetBytes: 10 });
    expect(log.at(-1)).toBe(`load@250 ${fx('B', 1, 250, 250, 1 / (2 * k + 1))}`);
  });
  it('the first refresh can be moved (popularityFirstRefreshMs)', () => {
    // Refreshes at 15, 115, 215: A 2 by 15; B 1 by 115 (rates 2k, 1); C 1 by 215.
    const { log } = recorded(events.slice(0, 4), {}, new Recorder(), { ...opts, popularityFirstRefreshMs: 15 });
    expect(log[3]).toBe(`select@150 need 1 [${fx('A', 2, 10, 11, 2 * k / (2 * k + 1))} ${fx('B', 1, 30, 30, 1 / (2 * k + 1))}] for C(1 B, load 10, exec 1, pop 0.0000)`);
  });
  it('a policy that says it never reads popularity gets 0 and the same choices', () => {
    class Blind extends Recorder {
      readonly usesPopularity = false;
    }
    const seen = recorded(events, {}, new Recorder(), opts);
    const blind = recorded(events, {}, new Blind(), opts);
    expect(blind.log).toEqual(seen.log.map((l) => l.replace(/pop \d\.\d{4}/g, 'pop 0.0000')));
    expect(blind.r).toEqual(seen.r);
  });
});

describe('simulate: checks with an empty cache, and a policy that only pre-warms', () => {
  it('a check before anything is loaded calls no expired; prewarm alone makes the checks run', () => {
    // Checks every 1000 ms. At 1000 nothing is loaded: no expired call (only prewarm's).
    const keepAlive = new Recorder(undefined, () => [], () => []);
    expect(recorded([[1500, 'A']], {}, keepAlive, { budgetBytes: 1 }).log).toEqual(['prewarm@1000 free 1 resident []', 'load@1510 A(hits 1, loaded 1510, used 1510, pop 0.0000)']);
    // A policy with prewarm and no expired: B is pre-warmed at 1000 (loaded at 1010), hit at 2500.
    const warmOnly = new Recorder(undefined, undefined, (now) => (now === 1000 ? ['B'] : []));
    const { log, r } = recorded([[500, 'A'], [2500, 'B']], {}, warmOnly, { budgetBytes: 2 });
    expect(log).toEqual([
      'load@510 A(hits 1, loaded 510, used 510, pop 0.0000)',
      'prewarm@1000 free 1 resident []',
      'load@1010 B(hits 0, loaded 1010, used 1010, pop 0.0000)',
      'prewarm@2000 free 0 resident []',
      'access@2500 B(hits 1, loaded 1010, used 2500, pop 0.0000)',
    ]);
    expect([r.coldStarts, r.prewarmLoads]).toEqual([1, 1]);
  });
});

describe('simulate: pre-warm loads end each at its own time', () => {
  it('two pre-warm loads of 100 and 300 ms finish at 1100 and 1300', () => {
    const warm = new Recorder(undefined, undefined, (now) => (now === 1000 ? ['P', 'R'] : []));
    const { log } = recorded([[0, 'A'], [2000, 'A'], [2000, 'P'], [2000, 'R']], { P: { loadMs: 100 }, R: { loadMs: 300 } }, warm, { budgetBytes: 3 });
    expect(log.slice(0, 4)).toEqual([
      'load@10 A(hits 1, loaded 10, used 10, pop 0.0000)',
      'prewarm@1000 free 2 resident []',
      'load@1100 P(hits 0, loaded 1100, used 1100, pop 0.0000)',
      'load@1300 R(hits 0, loaded 1300, used 1300, pop 0.0000)',
    ]);
  });
});

describe('simulate: keep-alive candidates named by the policy (expiryCandidates)', () => {
  it('hands expired the evictable ones among them, once each, in the order of the loaded models; none: no call', () => {
    // Budget 3, two slots: A loads 0-10, B 10-20, C 20-30 (C then runs to 2030). At 1000 the
    // policy names C (runs), zz, B, A, B again and D (not loaded): expired gets A, B. At 2000 it
    // names nothing: no call.
    class Hinted extends Recorder {
      expiryCandidates(now: number): readonly string[] {
        return now === 1000 ? ['C', 'zz', 'B', 'A', 'B', 'D'] : [];
      }
    }
    const table = { C: { execMs: 2000 } };
    const { log, r } = recorded([[0, 'A'], [10, 'B'], [20, 'C'], [2500, 'D']], table, new Hinted(undefined, () => ['A', 'B']), { budgetBytes: 3, slots: 2 });
    expect(log).toEqual([
      `load@10 A(hits 1, loaded 10, used 10, pop 0.0000)`,
      `load@20 B(hits 1, loaded 20, used 20, pop 0.0000)`,
      `load@30 C(hits 1, loaded 30, used 30, pop 0.0000)`,
      'expired@1000 [A B]',
      'evict@1000 A',
      'evict@1000 B',
      `load@2510 D(hits 1, loaded 2510, used 2510, pop 0.0000)`,
    ]);
    expect([r.expirations, r.evictions]).toEqual([2, 0]);
  });
});

describe('skipChecks', () => {
  it('leaves a check already past tNext where it is (the loop would not step)', () => {
    expect(skipChecks(5000, 1000, 1000, Infinity)).toBe(5000);
    expect(skipChecks(5000, 1000, 9000, 3000)).toBe(5000);
  });
});

/**
 * A recorder with the lazy-check hints, answering from scripts by the time it is asked at, and
 * writing each question down: `quietUntil@t = x`, `nextCheckAt@t = x`.
 */
class Hinted extends Recorder {
  constructor(
    private readonly quiet: (now: number) => number,
    private readonly next: (now: number) => number,
    expire: (now: number) => readonly string[],
    warm: (now: number) => readonly string[],
    ask: readonly string[],
  ) {
    super(undefined, expire, warm, ask);
  }
  quietUntil(now: number): number {
    const v = this.quiet(now);
    this.log.push(`quietUntil@${now} = ${v}`);
    return v;
  }
  nextCheckAt(now: number): number {
    const v = this.next(now);
    this.log.push(`nextCheckAt@${now} = ${v}`);
    return v;
  }
}

describe('simulate: the checks the hints let it skip, and only those', () => {
  it('skips a check before quietUntil even after an event, one before nextCheckAt only while nothing happened, and runs the one at either', () => {
    // Budget 2, checks every 1000 ms. A (1 byte) loads 0-10; hit at 1500; B at 9000. The policy
    // says: quiet until 3000 (asked at 1000), until the check's own time after; after the check at
    // 3000 the next check that could matter is at 6000, after the one at 6000 none (nothing is
    // loaded). A expires at 6000; prewarm names nothing. Each answer holds by the hints' contract
    // (sim/hints.ts): the checks skipped would have named nothing.
    const p = new Hinted(
      (now) => (now === 1000 ? 3000 : now),
      (now) => (now === 3000 ? 6000 : now === 6000 ? Infinity : now),
      (now) => (now >= 6000 ? ['A'] : []),
      () => [],
      ['A'],
    );
    const { log, calls, r } = recorded([[0, 'A'], [1500, 'A'], [9000, 'B']], {}, p, { budgetBytes: 2 });
    expect(log).toEqual([
      'load@10 A(hits 1, loaded 10, used 10, pop 0.0000)',
      'expired@1000 [A]',
      'prewarm@1000 free 1 resident [A]',
      'quietUntil@1000 = 3000',
      // The hit makes the state change: nextCheckAt's answer for 1000 is not asked for (it would
      // not hold), but quietUntil's still does: the check at 2000 is skipped.
      'access@1500 A(hits 2, loaded 10, used 1500, pop 0.0000)',
      // 3000: the check at quietUntil runs.
      'expired@3000 [A]',
      'prewarm@3000 free 1 resident [A]',
      'quietUntil@3000 = 3000',
      // Nothing happens after it: nextCheckAt is asked (for 3000) when the check at 4000 is due;
      // 4000 and 5000 are skipped; the check at 6000 runs.
      'nextCheckAt@3000 = 6000',
      'expired@6000 [A]',
      'evict@6000 A',
      'prewarm@6000 free 2 resident []',
      'quietUntil@6000 = 6000',
      // 7000, 8000 and 9000 skipped (B's call at 9000 comes after the check due then).
      'nextCheckAt@6000 = Infinity',
      'load@9010 B(hits 1, loaded 9010, used 9010, pop 0.0000)',
    ]);
    expect(calls).toEqual(['loading A', 'served A wait 10 cold', 'served A wait 0', 'evicted A@6000 expired', 'loading B', 'served B wait 10 cold']);
    expect([r.expirations, r.evictions, r.coldStarts, r.simulatedMs]).toEqual([1, 0, 2, 9011]);
  });

  it('a check that pre-warms a model before the next call ends the turn: the call then hits it', () => {
    // Checks every 1000 ms (the next at 2000, after the call). B is pre-warmed at 1000 and loaded
    // at 1010; its call at 1500 is a hit.
    const warmOnly = new Recorder(undefined, undefined, (now) => (now === 1000 ? ['B'] : []));
    const { log, calls, r } = recorded([[500, 'A'], [1500, 'B']], {}, warmOnly, { budgetBytes: 2 });
    expect(log).toEqual([
      'load@510 A(hits 1, loaded 510, used 510, pop 0.0000)',
      'prewarm@1000 free 1 resident []',
      'load@1010 B(hits 0, loaded 1010, used 1010, pop 0.0000)',
      'access@1500 B(hits 1, loaded 1010, used 1500, pop 0.0000)',
    ]);
    expect(calls).toEqual(['loading A', 'served A wait 10 cold', 'loading B prewarm', 'served B wait 0']);
    expect([r.coldStarts, r.prewarmLoads, r.loadDelayMs, r.simulatedMs]).toEqual([1, 1, 10, 1501]);
  });
});

describe('simulate: whole calls between checks (serveSerial) count as events for the checks', () => {
  it('a call taken whole after a check makes the next check run, whatever nextCheckAt said before it', () => {
    // Budget 2, checks every 1000 ms. The check at 1000 finds nothing loaded; nextCheckAt says no
    // check matters until a hook is called. A is called at 1500 and served whole (load 1500-1510,
    // done 1511) before the check due at 2000; that check must run (A was loaded since) and
    // expires A. Only then is nextCheckAt's answer trusted: the checks up to B's call are skipped.
    const p = new Hinted((now) => now, () => Infinity, (now) => (now >= 2000 ? ['A'] : []), () => [], ['A']);
    const { log, calls, r } = recorded([[1500, 'A'], [5000, 'B']], {}, p, { budgetBytes: 2 });
    expect(log).toEqual([
      'prewarm@1000 free 2 resident []',
      'quietUntil@1000 = 1000',
      'load@1510 A(hits 1, loaded 1510, used 1510, pop 0.0000)',
      'expired@2000 [A]',
      'evict@2000 A',
      'prewarm@2000 free 2 resident []',
      'quietUntil@2000 = 2000',
      'nextCheckAt@2000 = Infinity',
      'load@5010 B(hits 1, loaded 5010, used 5010, pop 0.0000)',
    ]);
    expect(calls).toEqual(['loading A', 'served A wait 10 cold', 'evicted A@2000 expired', 'loading B', 'served B wait 10 cold']);
    expect([r.expirations, r.coldStarts, r.simulatedMs]).toEqual([1, 2, 5011]);
  });
  it('a call that joins a pre-warm load waits for its end; a check while a hit runs leaves the running model out', () => {
    // Budget 3, checks every 1000 ms (each runs: no hints). A loads 0-10 and runs to 30. W is
    // pre-warmed at 1000 (500 ms, to 1500); its call at 1200 joins that load: a cold start of
    // 300 ms, touched at 1500, done at 1510. A's hit at 2990 runs to 3010, so the check at 3000
    // hands expired W only, and pre-warms P (100 ms, to 3100); P's call at 3050 joins it (50 ms).
    const table = { A: { execMs: 20 }, W: { loadMs: 500, execMs: 10 }, P: { loadMs: 100, execMs: 10 } };
    const p = new Recorder(undefined, () => [], (now) => (now === 1000 ? ['W'] : now === 3000 ? ['P'] : []), ['W', 'P']);
    const { log, calls, r } = recorded([[0, 'A'], [1200, 'W'], [2990, 'A'], [3050, 'P']], table, p, { budgetBytes: 3 });
    expect(log).toEqual([
      'load@10 A(hits 1, loaded 10, used 10, pop 0.0000)',
      'expired@1000 [A]',
      'prewarm@1000 free 2 resident []',
      'load@1500 W(hits 0, loaded 1500, used 1500, pop 0.0000)',
      'access@1500 W(hits 1, loaded 1500, used 1500, pop 0.0000)',
      'expired@2000 [A W]',
      'prewarm@2000 free 1 resident [W]',
      'access@2990 A(hits 2, loaded 10, used 2990, pop 0.0000)',
      'expired@3000 [W]',
      'prewarm@3000 free 1 resident [W]',
      'load@3100 P(hits 0, loaded 3100, used 3100, pop 0.0000)',
      'access@3100 P(hits 1, loaded 3100, used 3100, pop 0.0000)',
    ]);
    expect(calls).toEqual(['loading A', 'served A wait 10 cold', 'loading W prewarm', 'served W wait 300 cold', 'served A wait 0', 'loading P prewarm', 'served P wait 50 cold']);
    expect([r.coldStarts, r.prewarmLoads, r.loadDelayMs, r.simulatedMs]).toEqual([3, 2, 360, 3110]);
  });
});

describe('simulate: loads that end at the same instant', () => {
  it('pre-warm loads finish first, in the order they started, then the calls\' own loads', () => {
    // Budget 3. P and R are pre-warmed at 1000 (100 ms loads, to 1100); A arrives at 1050 and
    // loads 50 ms, also to 1100. P and R are hit at 5000.
    const warm = new Recorder(undefined, undefined, (now) => (now === 1000 ? ['P', 'R'] : []));
    const table = { A: { loadMs: 50 }, P: { loadMs: 100 }, R: { loadMs: 100 } };
    const { log, calls } = recorded([[1050, 'A'], [5000, 'P'], [5000, 'R']], table, warm, { budgetBytes: 3 });
    expect(log.slice(0, 4)).toEqual([
      'prewarm@1000 free 3 resident []',
      'load@1100 P(hits 0, loaded 1100, used 1100, pop 0.0000)',
      'load@1100 R(hits 0, loaded 1100, used 1100, pop 0.0000)',
      'load@1100 A(hits 1, loaded 1100, used 1100, pop 0.0000)',
    ]);
    expect(calls.slice(0, 4)).toEqual(['loading P prewarm', 'loading R prewarm', 'loading A', 'served A wait 50 cold']);
  });
});

describe('simulate: one model named for expiry (evictableAmong with one key)', () => {
  it('hands expired a lone named model only when it is loaded and idle: not unknown, not absent, not loading, not in flight', () => {
    // Budget 4, checks every 1000 ms. A loads 0-10 (runs to 20). W is pre-warmed at 2000 (loads to
    // 3500). C arrives at 5500 (loads to 5510, runs to 8510). B arrives at 9500. The policy names
    // one model a check: zz (unknown) at 1000, B (known, not loaded) at 2000, W (loading, nothing
    // in flight) at 3000, A (loaded, idle) at 4000, C (running) at 6000 and 7000, W (loaded, idle)
    // at 8000; expired returns nothing, so nothing is evicted.
    class OneKey extends Recorder {
      expiryCandidates(now: number): readonly string[] {
        const named: Record<number, string> = { 1000: 'zz', 2000: 'B', 3000: 'W', 4000: 'A', 6000: 'C', 7000: 'C', 8000: 'W' };
        return named[now] === undefined ? [] : [named[now]!];
      }
    }
    const table = { A: { loadMs: 10, execMs: 10 }, W: { loadMs: 1500, execMs: 10 }, C: { loadMs: 10, execMs: 3000 }, B: { loadMs: 10, execMs: 10 } };
    const p = new OneKey(undefined, () => [], (now) => (now === 2000 ? ['W'] : []));
    const { log, calls, r } = recorded([[0, 'A'], [5500, 'C'], [9500, 'B'], [9600, 'W']], table, p, { budgetBytes: 4, sweepMs: 1000 });
    expect(log.filter((l) => l.startsWith('expired'))).toEqual(['expired@4000 [A]', 'expired@8000 [W]']);
    expect(log).toEqual([
      'load@10 A(hits 1, loaded 10, used 10, pop 0.0000)',
      'prewarm@1000 free 3 resident []',
      'prewarm@2000 free 3 resident []',
      'prewarm@3000 free 2 resident []',
      'load@3500 W(hits 0, loaded 3500, used 3500, pop 0.0000)',
      'expired@4000 [A]',
      'prewarm@4000 free 2 resident []',
      'prewarm@5000 free 2 resident []',
      'load@5510 C(hits 1, loaded 5510, used 5510, pop 0.0000)',
      'prewarm@6000 free 1 resident []',
      'prewarm@7000 free 1 resident []',
      'expired@8000 [W]',
      'prewarm@8000 free 1 resident []',
      'prewarm@9000 free 1 resident []',
      'load@9510 B(hits 1, loaded 9510, used 9510, pop 0.0000)',
      'access@9600 W(hits 1, loaded 3500, used 9600, pop 0.0000)',
    ]);
    expect(calls).toEqual(['loading A', 'served A wait 10 cold', 'loading W prewarm', 'loading C', 'served C wait 10 cold', 'loading B', 'served B wait 10 cold', 'served W wait 0']);
    expect([r.expirations, r.evictions, r.prewarmLoads]).toEqual([0, 0, 1]);
  });
});
