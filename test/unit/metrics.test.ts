import { describe, expect, it } from 'vitest';
import { Metrics } from '../../runtime/metrics';

const lines = async (m: Metrics, fn: string) => (await m.text()).split('\n').filter((l) => l.includes(`function="${fn}"`));

describe('Metrics: series by function', () => {
  it('a scrape adds the registered functions at zero and drops those deleted since the last one, but not while the list cannot be read', async () => {
    const m = new Metrics();
    let registered: string[] | Error = ['a', 'b'];
    m.functions(async () => {
      if (registered instanceof Error) throw registered;
      return registered;
    });
    m.invocations.inc({ function: 'b', outcome: 'ok' }, 2);
    m.execSeconds.observe({ function: 'b' }, 0.01);
    expect(await lines(m, 'a')).toContain('brulee_invocations_total{function="a",outcome="ok"} 0');
    expect(await lines(m, 'b')).toContain('brulee_invocations_total{function="b",outcome="ok"} 2');
    // Redis away: the list is unknown, nothing goes.
    registered = new Error('Redis away');
    expect(await lines(m, 'b')).toContain('brulee_exec_seconds_count{function="b"} 1');
    registered = ['a'];
    expect(await lines(m, 'b')).toEqual([]);
    expect((await lines(m, 'a')).length).toBeGreaterThan(0);
    // Registered again: from zero.
    registered = ['a', 'b'];
    expect(await lines(m, 'b')).toContain('brulee_invocations_total{function="b",outcome="ok"} 0');
    // Its histograms too (seeded again: `forgetFunction` forgot it was seeded).
    expect(await lines(m, 'b')).toContain('brulee_exec_seconds_count{function="b"} 0');
  });

  it('forgetFunction takes every series of a function out at once', async () => {
    const m = new Metrics();
    m.invocations.inc({ function: 'f', outcome: 'error' });
    m.evictions.inc({ function: 'f', cause: 'unload' });
    m.loadSeconds.observe({ function: 'f' }, 0.1);
    m.batchSize.observe({ function: 'f' }, 4);
    m.prewarms.inc({ function: 'f', by: 'api' });
    m.invocations.inc({ function: 'g', outcome: 'ok' });
    m.forgetFunction('f');
    expect(await lines(m, 'f')).toEqual([]);
    expect(await lines(m, 'g')).toEqual(['brulee_invocations_total{function="g",outcome="ok"} 1']);
  });
});
