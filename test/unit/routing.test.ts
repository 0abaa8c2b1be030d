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

describe('chooseNode adds a copy of a hot model when its queue costs more than a cold start', () => {
  const cost = (o: Partial<{ loadMs: number; execMs: number; pending: number }> = {}) => ({ loadMs: 50, execMs: 10, pending: 3, ...o });
  it('a warm node whose queue waits longer than a load elsewhere: the call goes to a node with room', () => {
    // 8 jobs × 10 ms on one core = 80 ms of wait > 50 ms load + 1 × 10 ms on b.
    const nodes = [node('a', { resident: ['m'], queued: 8 }), node('b', { queued: 1 }), node('c', { queued: 4 })];
    expect(chooseNode(nodes, 'm', 10, cost()).id).toBe('b');
  });
  it('stays on the warm copy while its wait is shorter than a cold start', () => {
    const nodes = [node('a', { resident: ['m'], queued: 4 }), node('b')];
    expect(chooseNode(nodes, 'm', 10, cost()).id).toBe('a');
    // The same queue on a node that runs 4 jobs at once waits a quarter as long.
    expect(chooseNode([node('a', { resident: ['m'], queued: 8, parallel: 4 }), node('b')], 'm', 10, cost()).id).toBe('a');
  });
  it('never duplicates a model with no calls of its own pending (a cold model), however deep the queue', () => {
    const nodes = [node('a', { resident: ['m'], queued: 100 }), node('b')];
    expect(chooseNode(nodes, 'm', 10, cost({ pending: 0 })).id).toBe('a');
    expect(chooseNode(nodes, 'm', 10).id).toBe('a');
  });
  it('adds a copy only into free room, never evicting for it', () => {
    const nodes = [node('a', { resident: ['m'], queued: 100 }), node('b', { usedBytes: 95 })];
    expect(chooseNode(nodes, 'm', 10, cost()).id).toBe('a');
  });
  it('with copies on two nodes, the least queued copy is weighed', () => {
    const nodes = [node('a', { resident: ['m'], queued: 9 }), node('b', { resident: ['m'], queued: 2 }), node('c')];
    expect(chooseNode(nodes, 'm', 10, cost()).id).toBe('b');
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
