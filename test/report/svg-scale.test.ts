/** Scales and ticks: expected values worked out by hand from the definitions (1-2-5 steps, log decades). */
import { describe, expect, it } from 'vitest';
import { formatNumber, linearScale, linearTicks, logScale, logTicks, niceLinearDomain, niceLogDomain, niceStep, scaleFor } from '../../src/report/svg/scale.js';

const labelled = (ticks: { value: number; minor: boolean }[]): number[] => ticks.filter((t) => !t.minor).map((t) => t.value);

describe('linear ticks', () => {
  it('steps by 1, 2 or 5 times a power of ten, never more than `count` intervals', () => {
    expect(niceStep(10, 5)).toBe(2);
    expect(niceStep(1, 5)).toBe(0.2);
    expect(niceStep(0.3, 5)).toBe(0.1); // raw 0.06 → next of 1, 2, 5, 10 × 0.01 is 10 × 0.01
    expect(niceStep(73, 5)).toBe(20); // raw 14.6
    expect(niceStep(100, 10)).toBe(10);
    expect(niceStep(7, 1)).toBe(10);
    expect(() => niceStep(0, 5)).toThrow();
  });

  it('puts ticks on the multiples of the step inside the range, labelled with the step\'s decimals', () => {
    const t = linearTicks(0, 1, 5);
    expect(t.map((x) => x.value)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(t.map((x) => x.label)).toEqual(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    expect(linearTicks(-3, 7, 5).map((x) => x.label)).toEqual(['-2', '0', '2', '4', '6']);
    expect(linearTicks(0.1, 0.3, 5).map((x) => x.value)).toEqual([0.1, 0.15, 0.2, 0.25, 0.3]);
  });

  it('widens a domain to whole steps, and a single value to a small interval around it', () => {
    expect(niceLinearDomain(3.2, 97)).toEqual([0, 100]);
    expect(niceLinearDomain(50.02, 90.01)).toEqual([50, 100]);
    // 5 ± 0.5, then whole steps of niceStep(1, 5) = 0.2
    expect(niceLinearDomain(5, 5)).toEqual([4.4, 5.6]);
    expect(niceLinearDomain(0, 0)).toEqual([-1, 1]);
  });
});

describe('log ticks', () => {
  it('widens to 1, 2 or 5 times a power of ten at both ends', () => {
    expect(niceLogDomain(4.1, 310)).toEqual([2, 500]);
    expect(niceLogDomain(1, 1000)).toEqual([1, 1000]);
    expect(niceLogDomain(0.03, 0.7)).toEqual([0.02, 1]);
    expect(niceLogDomain(5, 5)).toEqual([2, 10]);
    expect(() => niceLogDomain(0, 10)).toThrow();
  });

  it('labels 1, 2, 5 per decade over 1–3 decades and marks the other integers as minor ticks', () => {
    const t = logTicks(1, 1000);
    const expectLabelled: number[] = [];
    for (const p of [1, 10, 100]) for (const m of [1, 2, 5]) expectLabelled.push(m * p);
    expectLabelled.push(1000);
    expect(labelled(t)).toEqual(expectLabelled);
    expect(t.length).toBe(9 * 3 + 1); // every integer multiple of each decade, plus 1000
    expect(t.filter((x) => x.minor).every((x) => x.label === '')).toBe(true);
    expect(t.find((x) => x.value === 200)!.label).toBe('200');
  });

  it('labels only powers of ten beyond 3 decades', () => {
    const t = logTicks(1, 1e5);
    expect(labelled(t)).toEqual([1, 10, 100, 1000, 10000, 100000]);
    expect(t.filter((x) => !x.minor).map((x) => x.label)).toEqual(['1', '10', '100', '1000', '10000', '1e5']);
    expect(labelled(logTicks(1e-4, 1e6)).map(formatNumber)).toEqual(['1e-4', '0.001', '0.01', '0.1', '1', '10', '100', '1000', '10000', '1e5', '1e6']);
  });

  it('labels every integer within one decade, and falls back to linear ticks inside a narrow range', () => {
    expect(labelled(logTicks(2, 9))).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(labelled(logTicks(4.1, 4.9))).toEqual([4.2, 4.4, 4.6, 4.8]);
  });

  it('keeps labelled ticks increasing and inside the domain for many domains', () => {
    for (let lo = 0.013; lo < 5e4; lo *= 3.7) {
      for (const span of [1.3, 4, 30, 900, 2e5]) {
        const [a, b] = niceLogDomain(lo, lo * span);
        const v = labelled(logTicks(a, b));
        expect(v.length).toBeGreaterThanOrEqual(2);
        for (let k = 1; k < v.length; k++) expect(v[k]).toBeGreaterThan(v[k - 1]);
        expect(v[0]).toBeGreaterThanOrEqual(a);
        expect(v[v.length - 1]).toBeLessThanOrEqual(b);
      }
    }
  });
});

describe('scales', () => {
  it('maps a log domain geometrically: the geometric mean lands half-way', () => {
    const s = logScale([1, 100], [0, 200]);
    expect(s.map(1)).toBeCloseTo(0, 12);
    expect(s.map(10)).toBeCloseTo(100, 12);
    expect(s.map(100)).toBeCloseTo(200, 12);
    // pixel y grows downwards: a reversed range puts large values at the top
    const y = logScale([2, 500], [400, 50]);
    expect(y.map(Math.sqrt(2 * 500))).toBeCloseTo(225, 9);
    expect(() => s.map(0)).toThrow();
  });

  it('maps a linear domain affinely', () => {
    const s = linearScale([50, 100], [72, 672]);
    expect(s.map(75)).toBe(372);
    expect(s.map(50)).toBe(72);
  });

  it('builds a nice scale from data, dropping values a log axis cannot show', () => {
    const s = scaleFor('log', [4.1, 310, 0, -3, NaN, Infinity], [0, 1]);
    expect(s.domain).toEqual([2, 500]);
    expect(scaleFor('linear', [3, 7], [0, 1], { includeZero: true }).domain).toEqual([0, 8]);
  });
});

describe('formatNumber', () => {
  it('writes plot-sized numbers plainly and extreme ones with an exponent', () => {
    expect(formatNumber(0.5)).toBe('0.5');
    expect(formatNumber(20)).toBe('20');
    expect(formatNumber(0.1 + 0.2)).toBe('0.3');
    expect(formatNumber(2e6)).toBe('2e6');
    expect(formatNumber(99999)).toBe('99999');
    expect(formatNumber(-2.5e7)).toBe('-2.5e7');
    expect(formatNumber(5e-4)).toBe('5e-4');
    expect(formatNumber(0)).toBe('0');
  });
});
