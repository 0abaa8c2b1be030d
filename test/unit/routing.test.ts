import { describe, expect, it } from 'vitest';
import { chooseNode, type NodeView } from '../../queue/routing';
import { decayRates, shares } from '../../runtime/popularity';

const node = (id: string, o: Partial<NodeView> = {}): NodeView => ({ id, budgetBytes: 100, usedBytes: 0, resident: [], queued: 0, ...o });

describe('chooseNode', () => {
  it('prefers a node where the model is warm, least queued first', () => {
    const nodes = [node('a', { resident: ['m'], queued: 5 }), node('b', { resident: ['m'], queued: 1 }), node('c', { queued: 0 })];
    expect(chooseNode(nodes, 'm', 10).id).toBe('b');
  });
  it('else a node with free room, least queued', () => {
    const nodes = [node('a', { usedBytes: 95 }), node('b', { usedBytes: 50, queued: 3 }), node('c', { usedBytes: 10, queued: 2 })];
    expect(chooseNode(nodes, 'm', 20).id).toBe('c');
  });
  it('else any node whose budget can hold it', () => {
    const nodes = [node('small', { budgetBytes: 10 }), node('full', { usedBytes: 100 })];
    expect(chooseNode(nodes, 'm', 50).id).toBe('full');
  });
  it('a model bigger than every live budget is a 503 (the nodes that could hold it are down), and says so when no node is alive', () => {
    expect(() => chooseNode([node('a')], 'm', 101)).toThrow(/no live node can hold this model now.*largest live node budget is 100 bytes/);
    expect(() => chooseNode([node('a')], 'm', 101)).toThrow(expect.objectContaining({ code: 'NO_NODE_AVAILABLE', status: 503 }));
    expect(() => chooseNode([], 'm', 1)).toThrow(/no runtime node is alive/);
  });
});

describe('popularity', () => {
  it('shares follow the counts of the first interval', () => {
    const r = decayRates(undefined, { a: 30, b: 10 }, 10_000, 300_000);
    expect(shares(r.rates)).toEqual({ a: 0.75, b: 0.25 });
  });
  it('old rates decay with exp(-dt/window) and new counts weigh the rest', () => {
    const first = decayRates(undefined, { a: 100 }, 0, 1000);
    const second = decayRates(first, { b: 100 }, 1000, 1000);
    const keep = Math.exp(-1);
    expect(second.rates.a).toBeCloseTo(keep * first.rates.a!, 9);
    expect(second.rates.b).toBeCloseTo((1 - keep) * 100, 9);
  });
});
