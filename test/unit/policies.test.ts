import { describe, expect, it } from 'vitest';
import { cremebrulee, utility } from '../../runtime/policies/cremebrulee';
import type { EntryFacts } from '../../runtime/policies/types';

const entry = (key: string, o: Partial<EntryFacts>): EntryFacts => ({
  key, sizeBytes: 100, loadMs: 10, execMs: 1, popularity: 0.5, loadedAt: 0, lastUsedAt: 0, hits: 1, ...o,
});
const incoming = { key: 'new', sizeBytes: 100, loadMs: 10, execMs: 1, popularity: 0 };

describe('CremeBrulee: utility = popularity × load cost / resident bytes', () => {
  it('utility is the product, per byte (worked out by hand)', () => {
    expect(utility({ popularity: 0.2, loadMs: 100, sizeBytes: 400 })).toBe(0.05);
    expect(utility({ popularity: 0.8, loadMs: 1, sizeBytes: 400 })).toBe(0.002);
    // A zero-byte model is charged as one byte, not divided by zero.
    expect(utility({ popularity: 0.5, loadMs: 4, sizeBytes: 0 })).toBe(2);
  });

  it('keeps a rarely used model that is costly to load over a popular one that is cheap (popularity alone picks the other)', () => {
    // rare-costly: 0.2 × 100 / 100 = 0.2; popular-cheap: 0.8 × 1 / 100 = 0.008 -> popular-cheap goes.
    // By popularity alone (or popularity per byte) rare-costly would go.
    const rare = entry('rare-costly', { popularity: 0.2, loadMs: 100 });
    const popular = entry('popular-cheap', { popularity: 0.8, loadMs: 1 });
    const victims = cremebrulee().selectVictims({ now: 0, needBytes: 100, candidates: [rare, popular], incoming });
    expect(victims.map((v) => v.key)).toEqual(['popular-cheap']);
    expect(victims[0]!.reason).toBe('utility 8.000e-3 lowest (popularity 0.8000, load 1.0 ms, 100 B)');
  });

  it('charges per resident byte: of two equally popular, equally costly models the larger goes', () => {
    // big: 0.5 × 10 / 1000 = 0.005; small: 0.5 × 10 / 100 = 0.05.
    const big = entry('big', { sizeBytes: 1000 });
    const small = entry('small', { sizeBytes: 100 });
    expect(cremebrulee().selectVictims({ now: 0, needBytes: 50, candidates: [small, big], incoming }).map((v) => v.key)).toEqual(['big']);
  });

  it('frees only what is needed, lowest utility first', () => {
    const c = [entry('a', { popularity: 0.3 }), entry('b', { popularity: 0.1 }), entry('c', { popularity: 0.2 })];
    expect(cremebrulee().selectVictims({ now: 0, needBytes: 150, candidates: c, incoming }).map((v) => v.key)).toEqual(['b', 'c']);
    expect(cremebrulee().selectVictims({ now: 0, needBytes: 100, candidates: c, incoming }).map((v) => v.key)).toEqual(['b']);
    expect(cremebrulee().name).toBe('cremebrulee');
  });
});
