import { describe, expect, it } from 'vitest';
import { chooseNode, queueWaitMs, type NodeView } from '../../queue/routing';
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

describe('chooseNode at its edges (each worked out by hand)', () => {
  const cost = (o: Partial<{ loadMs: number; execMs: number; pending: number }> = {}) => ({ loadMs: 50, execMs: 10, pending: 3, ...o });

  it('the wait on a node: queued jobs x exec time over the jobs it runs at once (at least 1)', () => {
    expect(queueWaitMs(node('a', { queued: 8 }), 10)).toBe(80);
    expect(queueWaitMs(node('a', { queued: 8, parallel: 4 }), 10)).toBe(20);
    expect(queueWaitMs(node('a', { queued: 8, parallel: 0 }), 10)).toBe(80);
    expect(queueWaitMs(node('a', { queued: 0, parallel: 2 }), 10)).toBe(0);
  });

  it('equal queues: the node with the most free bytes, then the smallest id, whatever the order given', () => {
    const free = [node('a', { usedBytes: 60, queued: 2 }), node('b', { usedBytes: 20, queued: 2 }), node('c', { usedBytes: 40, queued: 2 })];
    expect(chooseNode(free, 'm', 10).id).toBe('b');
    expect(chooseNode([...free].reverse(), 'm', 10).id).toBe('b');
    const same = [node('c', { queued: 1 }), node('a', { queued: 1 }), node('b', { queued: 1 })];
    expect(chooseNode(same, 'm', 10).id).toBe('a');
    expect(chooseNode([...same].reverse(), 'm', 10).id).toBe('a');
    const warm = [node('z', { resident: ['m'], queued: 3 }), node('y', { resident: ['m'], queued: 3 }), node('x', { resident: ['m'], queued: 4 })];
    expect(chooseNode(warm, 'm', 10).id).toBe('y');
    // Fewer queued beats more free bytes.
    expect(chooseNode([node('a', { usedBytes: 0, queued: 3 }), node('b', { usedBytes: 80, queued: 2 })], 'm', 10).id).toBe('b');
  });

  it('a node whose free bytes equal the model size has room; a node whose budget equals it can hold it', () => {
    expect(chooseNode([node('full', { usedBytes: 100 }), node('exact', { usedBytes: 70, queued: 5 })], 'm', 30).id).toBe('exact');
    expect(chooseNode([node('small', { budgetBytes: 29, usedBytes: 0 }), node('exact', { budgetBytes: 30, usedBytes: 30, queued: 7 })], 'm', 30).id).toBe('exact');
  });

  it('no node has room: the least queued of those that can hold it', () => {
    const nodes = [node('busy', { usedBytes: 100, queued: 5 }), node('small', { budgetBytes: 40, queued: 0 }), node('calm', { usedBytes: 90, queued: 1 })];
    expect(chooseNode(nodes, 'm', 50).id).toBe('calm');
  });

  it('one pending call of its own is enough to weigh a copy', () => {
    const nodes = [node('a', { resident: ['m'], queued: 8 }), node('b')];
    expect(chooseNode(nodes, 'm', 10, cost({ pending: 1 })).id).toBe('b');
    expect(chooseNode(nodes, 'm', 10, cost({ pending: 0 })).id).toBe('a');
  });

  it('a copy goes where load plus that queue is least, and only when it beats the warm wait strictly', () => {
    // Warm wait 6 x 10 = 60 ms; b: 50 + 1 x 10 = 60 ms (a tie: stay warm); c: 50 + 0 = 50 ms.
    expect(chooseNode([node('a', { resident: ['m'], queued: 6 }), node('b', { queued: 1 })], 'm', 10, cost()).id).toBe('a');
    expect(chooseNode([node('a', { resident: ['m'], queued: 6 }), node('b', { queued: 1 }), node('c')], 'm', 10, cost()).id).toBe('c');
    expect(chooseNode([node('a', { resident: ['m'], queued: 6 }), node('c'), node('b', { queued: 1 })], 'm', 10, cost()).id).toBe('c');
    // A node with exactly the model's size free can take the copy.
    expect(chooseNode([node('a', { resident: ['m'], queued: 8 }), node('b', { usedBytes: 90 })], 'm', 10, cost()).id).toBe('b');
    // b and c tie at 50 + 1 x 10 = 60 ms < 80 ms: the first given takes the copy.
    const tie = [node('a', { resident: ['m'], queued: 8 }), node('b', { queued: 1 }), node('c', { queued: 1 })];
    expect(chooseNode(tie, 'm', 10, cost()).id).toBe('b');
    expect(chooseNode([tie[0]!, tie[2]!, tie[1]!], 'm', 10, cost()).id).toBe('c');
    // A second warm copy is never "a copy elsewhere", however short its queue.
    expect(chooseNode([node('a', { resident: ['m'], queued: 8 }), node('b', { resident: ['m'], queued: 8 }), node('c', { usedBytes: 95 })], 'm', 10, cost()).id).toBe('a');
  });

  it('says how large the largest live budget is, and what to do', () => {
    const nodes = [node('a', { budgetBytes: 40 }), node('b', { budgetBytes: 70 }), node('c', { budgetBytes: 50 })];
    let err: unknown;
    try {
      chooseNode(nodes, 'm', 71);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({
      code: 'NO_NODE_AVAILABLE',
      message: 'no live node can hold this model now: it needs 71 bytes resident and the largest live node budget is 70 bytes; start a node with a larger MEMORY_BUDGET (or bring back the one that held it)',
    });
    expect(() => chooseNode([], 'm', 1)).toThrow(expect.objectContaining({
      code: 'NO_NODE_AVAILABLE', message: 'no runtime node is alive; start one (ROLE=worker or ROLE=all) against the same Redis',
    }));
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
