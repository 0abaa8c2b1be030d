import { describe, expect, it } from 'vitest';
import { WarmPool, type EvictionEvent } from '../../runtime/warm-pool';
import { recorder, spec } from '../support/warm-pool';
import { within } from '../support/within';

// What calls hold beside their models (WarmPool.acquire's CallBytes, issue 12 §4): admitted with
// the model in one step, evicting or waiting as a load does; the growth a run may cause reserved
// ahead and moved to the model by `resize`; the tensor bytes held until freed, after the lease.

function pool(budgetBytes: number) {
  const evictions: EvictionEvent[] = [];
  const { policy, requests } = recorder();
  const p = new WarmPool<string>({ budgetBytes, policy, now: () => 50, load: async (s) => s.key, onEvict: (e) => evictions.push(e), admitTimeoutMs: 60_000 });
  return { p, evictions, requests };
}

describe('WarmPool: bytes of calls in flight', () => {
  it("a call's tensor bytes are charged with its model, evict an idle model when they do not fit, and stay charged after the lease until freed", async () => {
    const { p, evictions } = pool(100);
    (await p.acquire(spec('a', 40))).release();
    (await p.acquire(spec('b', 40))).release();
    // b warm, with 30 bytes of tensors: 110 > 100, so the idle a goes (never b itself).
    const l = await p.acquire(spec('b', 40), undefined, { bytes: 30 });
    expect(evictions.map((e) => e.key)).toEqual(['a']);
    expect([p.usedBytes, p.callBytes, p.peakUsedBytes]).toEqual([70, 30, 80]);
    l.release();
    expect([p.usedBytes, p.callBytes]).toEqual([70, 30]); // answered yet? not until free()
    l.reservation.set(50); // its outputs are larger than reserved: charged, the pool evicts what it can
    expect([p.usedBytes, p.callBytes, p.unreservedBytes]).toEqual([90, 50, 20]);
    l.reservation.free();
    l.reservation.free();
    expect([p.usedBytes, p.callBytes]).toEqual([40, 0]);
    expect(p.peakUsedBytes).toBeLessThanOrEqual(100);
  });

  it('a call that asks with a larger figure for its resident model (a newer measurement) waits for room, not refused as never fitting', async () => {
    const { p } = pool(100);
    const a = await p.acquire(spec('a', 20), undefined, { bytes: 30 });
    // Charged 20 as resident; this call's spec says 60. Beside 20 its 70 bytes of tensors fit the budget.
    let admitted = false;
    const b = p.acquire(spec('a', 60), undefined, { bytes: 70 }).then((l) => ((admitted = true), l));
    await new Promise((r) => setTimeout(r, 5));
    expect(admitted).toBe(false);
    a.release();
    a.reservation.free();
    const lb = await within(1000, 'the call waiting for room', b);
    expect([p.usedBytes, p.callBytes]).toEqual([90, 70]);
    lb.release();
    lb.reservation.free();
  });

  it('calls whose tensors do not fit beside models in flight wait, holding nothing, and get in as the others are freed', async () => {
    const { p } = pool(100);
    const a = await p.acquire(spec('a', 50), undefined, { bytes: 30 });
    let admitted = false;
    const b = p.acquire(spec('a', 50), undefined, { bytes: 30 }).then((l) => ((admitted = true), l));
    await new Promise((r) => setTimeout(r, 5));
    expect(admitted).toBe(false);
    expect([p.usedBytes, p.list()[0]!.inFlight]).toEqual([80, 1]); // the waiting call holds nothing
    a.release();
    await new Promise((r) => setTimeout(r, 5));
    expect(admitted).toBe(false); // released, but its tensors are not freed yet
    a.reservation.free();
    const lb = await within(1000, 'the call waiting for tensor bytes', b);
    expect([p.usedBytes, p.callBytes, p.peakUsedBytes]).toEqual([80, 30, 80]);
    lb.release();
    lb.reservation.free();
    expect(p.usedBytes).toBe(50);
  });

  it("a run's reserved growth becomes its model's charge on resize, so used bytes do not rise; what it did not use goes back with the lease", async () => {
    const { p, evictions } = pool(100);
    (await p.acquire(spec('idle', 20))).release();
    const l = await p.acquire(spec('a', 30), undefined, { bytes: 10, growth: 40 }); // 100: exactly the budget
    expect([p.usedBytes, p.callBytes]).toEqual([100, 50]);
    p.resize('a', 55); // grew 25 of the 40 reserved
    expect([p.usedBytes, p.callBytes, p.peakUsedBytes, evictions.length]).toEqual([100, 25, 100, 0]);
    p.resize('a', 75); // 20 more: 15 left of the reserve, 5 past it, so the idle model goes
    expect([p.usedBytes, p.callBytes, evictions.map((e) => e.key)]).toEqual([85, 10, ['idle']]);
    expect([p.peakUsedBytes, p.unreservedBytes]).toEqual([105, 5]); // past the reserve is past the budget until the eviction
    l.release();
    l.reservation.free();
    expect([p.usedBytes, p.callBytes]).toEqual([75, 0]);
  });

  it('what a call asks beyond the budget less its model is capped there: it runs rather than never', async () => {
    const { p } = pool(100);
    const l = await within(1000, 'a call larger than the room', p.acquire(spec('a', 60), undefined, { bytes: 30, growth: 30 }));
    expect([p.usedBytes, p.callBytes]).toEqual([100, 40]);
    l.release();
    l.reservation.free();
    expect(p.usedBytes).toBe(60);
  });
});
