import { describe, expect, it } from 'vitest';
import { allTable, boundTable, parseRows, plusTable } from '../../sim/report';

const csv = [
  'policy,budgetBytes,budgetPct,coldStarts,loadDelayPctOfExec',
  'cremebrulee,10,5,120,200.5',
  'cremebrulee-plus,10,5,110,198.25',
  'gdsf,10,5,115,199',
  'belady,10,5,100,197',
  'cremebrulee-oracle,10,5,105,199.5',
  'cremebrulee,20,10,50,0.05',
  'cremebrulee-plus,20,10,51,0.0501',
  'gdsf,20,10,50,0.05',
  'belady,20,10,49,0.04',
  'cremebrulee-oracle,20,10,49,0.04',
].join('\n');

describe('sim/report (the README tables)', () => {
  it('names the closest online policy, leaving the oracles out, and the gaps in points', () => {
    const t = plusTable(parseRows(csv)).split('\n');
    expect(t[2]).toBe('| 5% | 198.3 | gdsf 199.0 | −0.750 | +1.25 | −1.25 | **plus** |');
    // At 10% plus is behind by 0.0001 points and one cold start: a tie in all but name, said so.
    expect(t[3]).toBe('| 10% | 0.0501 | cremebrulee 0.0500 | 0.000 | +0.010 | +0.010 | cremebrulee, gdsf (1 more cold start) |');
  });

  it('bolds the lowest online policy per budget, never an oracle', () => {
    const t = allTable(parseRows(csv)).split('\n');
    expect(t[0]).toBe('| budget | cremebrulee | plus | gdsf | belady | cb-oracle |');
    expect(t[2]).toBe('| 5% | 200.5 | **198.3** | 199.0 | 197.0 | 199.5 |');
    expect(t[3]).toBe('| 10% | **0.0500** | 0.0501 | **0.0500** | 0.0400 | 0.0400 |');
  });

  it('gives every policy\'s load delay over the bound, and the best on-demand one (never a pre-warming policy)', () => {
    const rows = parseRows(csv + '\nbound,10,5,90,100\nbound,20,10,40,0.04');
    const t = boundTable(rows).split('\n');
    expect(t[0]).toBe('| budget | bound (% of exec) | cremebrulee | plus | gdsf | belady | cb-oracle | best on-demand |');
    // plus pre-warms: the bound does not bind it, so it is never the best on-demand policy.
    expect(t[2]).toBe('| 5% | 100.0 | 2.00 | 1.98 | 1.99 | 1.97 | 2.00 | belady 1.97 |');
    expect(t[3]).toBe('| 10% | 0.0400 | 1.25 | 1.25 | 1.25 | 1.00 | 1.00 | belady 1.00 |');
    expect(() => boundTable(parseRows(csv))).toThrow('no bound row at 5%');
  });

  it('says which column is missing', () => {
    expect(() => parseRows('policy,budgetPct\nlru,5', 'x.csv')).toThrow('x.csv: no column coldStarts');
  });
});
