import { describe, expect, it } from 'vitest';
import { Footprints, Turns } from '../../runtime/footprint';

const tick = () => new Promise((r) => setTimeout(r, 1));

describe('Turns', () => {
  it('an exclusive operation never overlaps another operation, and a waiting one goes before later shared ones', async () => {
    const t = new Turns();
    const log: string[] = [];
    let running = 0;
    let overlapDuringExclusive = false;
    const op = (name: string, exclusive: boolean) =>
      t.run(exclusive, async () => {
        running++;
        log.push(`+${name}`);
        await tick();
        if (exclusive && running > 1) overlapDuringExclusive = true;
        await tick();
        running--;
        log.push(`-${name}`);
      });
    const all = [op('s1', false), op('s2', false), op('x', true), op('s3', false)];
    await Promise.all(all);
    expect(overlapDuringExclusive).toBe(false);
    // s1 and s2 ran together; x after both; s3 (asked after x) after x.
    expect(log.indexOf('+x')).toBeGreaterThan(Math.max(log.indexOf('-s1'), log.indexOf('-s2')));
    expect(log.indexOf('+s3')).toBeGreaterThan(log.indexOf('-x'));
  });
});

describe('Footprints', () => {
  it('charges what the first load and runs added, at least the registered bytes, and measures no more once it knows the model', async () => {
    let native = 1000;
    const grown: Array<[string, number]> = [];
    const f = new Footprints({ firstRuns: 2, measure: () => native, onGrow: (k, b) => grown.push([k, b]) });
    expect(f.charge('m', 50)).toBe(50);
    await f.load('m', async () => void (native += 40));
    expect(f.charge('m', 50)).toBe(50); // 40 measured < 50 registered
    await f.run('m', 100, async () => void (native += 30));
    expect(f.charge('m', 50)).toBe(70);
    await f.run('m', 100, async () => void (native += 5));
    expect(f.measured('m')).toBe(75);
    // Third run, same input size: not measured (a shared turn), so growth is not attributed.
    await f.run('m', 100, async () => void (native += 99));
    expect(f.measured('m')).toBe(75);
    // A larger input than any measured: measured again.
    await f.run('m', 200, async () => void (native += 10));
    expect(f.measured('m')).toBe(85);
    // Memory handed back during a measured run is not a negative charge.
    await f.run('m', 300, async () => void (native -= 500));
    expect(f.measured('m')).toBe(85);
    // A reload is charged in full up front, and not measured.
    await f.load('m', async () => void (native += 40));
    expect(f.measured('m')).toBe(85);
    expect(grown).toEqual([['m', 40], ['m', 70], ['m', 75], ['m', 85]]);
    f.forget('m');
    expect(f.charge('m', 50)).toBe(50);
  });

  it("leaves out of a measured run's growth the bytes `outside` names in its result (outputs made in a session host's thread)", async () => {
    let native = 1000;
    const f = new Footprints({ firstRuns: 3, measure: () => native });
    await f.load('m', async () => void (native += 40));
    // The run grew the process by 30 (the arena) + 64 (its outputs, which the main thread's ArrayBuffers do not show).
    const out = await f.run('m', 100, async () => ((native += 94), { bytes: 64 }), (r) => r.bytes);
    expect(out).toEqual({ bytes: 64 });
    expect(f.measured('m')).toBe(70);
    // More outside than the growth is no negative charge.
    await f.run('m', 100, async () => ((native += 10), { bytes: 64 }), (r) => r.bytes);
    expect(f.measured('m')).toBe(70);
  });

  it('charges a model measured above the cap (the budget) the cap, never more: it runs alone rather than never', async () => {
    let native = 0;
    const f = new Footprints({ measure: () => native, capBytes: 100 });
    await f.load('m', async () => void (native += 60));
    expect(f.charge('m', 50)).toBe(60);
    await f.run('m', 1, async () => void (native += 90)); // disturbed: 150 in all
    expect(f.measured('m')).toBe(150);
    expect(f.charge('m', 50)).toBe(100);
    // What registration measured is charged in full even past the cap (admission refuses it then).
    expect(f.charge('m', 120)).toBe(120);
  });

  it('a failed measured operation records nothing and lets the next one be measured', async () => {
    let native = 0;
    const f = new Footprints({ measure: () => native });
    await expect(f.load('m', async () => { native += 10; throw new Error('bad model'); })).rejects.toThrow('bad model');
    expect(f.measured('m')).toBe(0);
    await f.load('m', async () => void (native += 7));
    expect(f.measured('m')).toBe(7);
  });
});
