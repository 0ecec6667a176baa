/**
 * Magnitude and random pruning, and the shared selection helpers, against direct float64
 * transcriptions of the reference rules (Wanda repository lib/prune.py, prune_magnitude).
 */
import { describe, expect, it } from 'vitest';
import { magnitudePrune } from '../../src/prune/magnitude.js';
import { randomPrune, Rng } from '../../src/prune/random.js';
import { kthSmallest, markSmallestStable } from '../../src/prune/select.js';
import { markLowestInGroup } from '../../src/prune/nm.js';
import { lcg, randomMatrix, stableOrder, tiedMatrix, zeros } from './helpers.js';

/** thresh = sort(|W|)[int(numel·p)]; prune |W| <= thresh. */
function refMagnitude(w: Float32Array, p: number): Float64Array {
  const abs = Array.from(w, Math.abs);
  const sorted = [...abs].sort((a, b) => a - b);
  const thresh = sorted[Math.floor(w.length * p)];
  return Float64Array.from(w, (v) => (Math.abs(v) <= thresh ? 0 : v));
}

/** Per group of m (tail shorter), the min(n, width) lowest scores, ties by index. */
function refNMMask(score: (r: number, c: number) => number, rows: number, cols: number, n: number, m: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      const width = Math.min(m, cols - g);
      const order = stableOrder((j) => score(r, g + j), width);
      for (const j of order.slice(0, Math.min(n, width))) mask[r * cols + g + j] = 1;
    }
  }
  return mask;
}

describe('magnitude, unstructured', () => {
  for (const [rows, cols, p] of [[37, 53, 0.5], [64, 48, 0.7], [5, 7, 0.1], [16, 16, 0.95]] as const) {
    it(`matches the reference rule on random ${rows}x${cols} at p=${p}`, () => {
      const w = randomMatrix(rows, cols, rows * 1000 + cols);
      const expected = refMagnitude(w, p);
      const res = magnitudePrune({ data: w, rows, cols }, { kind: 'unstructured', sparsity: p });
      expect(Array.from(w)).toEqual(Array.from(expected));
      expect(res.total).toBe(rows * cols);
      expect(res.pruned).toBe(zeros(expected));
      // Continuous values: ties are absent, so exactly int(numel·p) + 1 entries are <= the threshold.
      expect(res.pruned).toBe(Math.floor(rows * cols * p) + 1);
    });
  }

  it('prunes every tie at the threshold (more than p), as the reference does', () => {
    const rows = 30, cols = 40, p = 0.3;
    const w = tiedMatrix(rows, cols, 7);
    const expected = refMagnitude(w, p);
    const res = magnitudePrune({ data: w, rows, cols }, { kind: 'unstructured', sparsity: p });
    expect(Array.from(w)).toEqual(Array.from(expected));
    expect(res.pruned / res.total).toBeGreaterThan(p + 0.05);
  });

  it('keeps NaN weights (NaN <= t is false) and ignores them in the threshold order', () => {
    const w = Float32Array.from([NaN, 1, 2, 3, NaN, 4, 5, 6]);
    magnitudePrune({ data: w, rows: 2, cols: 4 }, { kind: 'unstructured', sparsity: 0.5 });
    // sorted: 1 2 3 4 5 6 NaN NaN, index 4 → 5: everything up to 5 goes.
    expect(Array.from(w)).toEqual([NaN, 0, 0, 0, NaN, 0, 0, 6]);
  });
});

describe('magnitude, N:M', () => {
  for (const [rows, cols, n, m, seed] of [[20, 32, 2, 4, 1], [12, 40, 4, 8, 2], [9, 10, 2, 4, 3], [9, 10, 3, 4, 4], [6, 21, 4, 8, 5], [8, 23, 2, 4, 6]] as const) {
    it(`${n}:${m} on ${rows}x${cols} (tail ${cols % m}) matches topk(largest=False) per group`, () => {
      const w = seed % 2 ? randomMatrix(rows, cols, seed) : tiedMatrix(rows, cols, seed);
      const orig = Float32Array.from(w);
      const mask = refNMMask((r, c) => Math.abs(orig[r * cols + c]), rows, cols, n, m);
      const res = magnitudePrune({ data: w, rows, cols }, { kind: 'nm', n, m });
      for (let i = 0; i < w.length; i++) expect(w[i]).toBe(mask[i] ? 0 : orig[i]);
      if (cols % m) expect(res.notes?.[0]).toMatch(/not a multiple/);
      else expect(res.notes).toBeUndefined();
      // Every group has at least min(n, width) zeros (more only where the weights had zeros already).
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < cols; g += m) {
          const width = Math.min(m, cols - g);
          let z = 0, before = 0;
          for (let c = g; c < g + width; c++) {
            if (w[r * cols + c] === 0) z++;
            if (orig[r * cols + c] === 0) before++;
          }
          expect(z).toBe(Math.max(Math.min(n, width), before));
        }
      }
    });
  }
});

describe('random pruning', () => {
  it('prunes exactly int(numel·p) entries, reproducibly per seed', () => {
    for (const p of [0.1, 0.5, 0.73, 0.99]) {
      const rows = 33, cols = 47;
      const a = randomMatrix(rows, cols, 11);
      const b = Float32Array.from(a);
      const c = Float32Array.from(a);
      const ra = randomPrune({ data: a, rows, cols }, { kind: 'unstructured', sparsity: p }, 5);
      randomPrune({ data: b, rows, cols }, { kind: 'unstructured', sparsity: p }, 5);
      randomPrune({ data: c, rows, cols }, { kind: 'unstructured', sparsity: p }, 6);
      expect(ra.pruned).toBe(Math.floor(rows * cols * p));
      expect(zeros(a)).toBe(Math.floor(rows * cols * p));
      expect(Array.from(a)).toEqual(Array.from(b));
      expect(Array.from(a)).not.toEqual(Array.from(c));
    }
  });

  it('spreads its picks uniformly over positions', () => {
    const rows = 4, cols = 25, trials = 2000;
    const hits = new Float64Array(rows * cols);
    for (let s = 0; s < trials; s++) {
      const w = new Float32Array(rows * cols).fill(1);
      randomPrune({ data: w, rows, cols }, { kind: 'unstructured', sparsity: 0.3 }, s * 1_000_003 + 17);
      for (let i = 0; i < w.length; i++) if (w[i] === 0) hits[i]++;
    }
    // Binomial(2000, 0.3): sd ≈ 20.5; 5 sd per position over 100 positions.
    for (const h of hits) expect(Math.abs(h - 600)).toBeLessThan(103);
  });

  it('N:M: exactly min(N, width) per group, tail included', () => {
    const rows = 10, cols = 22, n = 3, m = 8;
    const w = randomMatrix(rows, cols, 12);
    const res = randomPrune({ data: w, rows, cols }, { kind: 'nm', n, m }, 99);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < cols; g += m) {
        let z = 0;
        for (let c = g; c < Math.min(g + m, cols); c++) if (w[r * cols + c] === 0) z++;
        expect(z).toBe(Math.min(n, Math.min(m, cols - g)));
      }
    }
    expect(res.pruned).toBe(rows * (2 * n + Math.min(n, 6)));
  });

  it('Rng yields uniform floats in [0,1) and integers below n', () => {
    const rng = new Rng(123);
    let sum = 0;
    const buckets = new Array(10).fill(0);
    for (let i = 0; i < 20000; i++) {
      const u = rng.nextFloat();
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
      buckets[rng.below(10)]++;
    }
    expect(Math.abs(sum / 20000 - 0.5)).toBeLessThan(0.01);
    for (const b of buckets) expect(Math.abs(b - 2000)).toBeLessThan(200);
    expect(new Rng(2 ** 40 + 1).nextU32()).not.toBe(new Rng(1).nextU32());
  });
});

describe('selection helpers', () => {
  it('kthSmallest equals the sorted array at k, with heavy ties', () => {
    const r = lcg(3);
    for (let trial = 0; trial < 50; trial++) {
      const len = 1 + Math.floor(r() * 300);
      const a = Float64Array.from({ length: len }, () => (trial % 2 ? Math.floor(r() * 5) : r() - 0.5));
      const sorted = Array.from(a).sort((x, y) => x - y);
      const k = Math.floor(r() * len);
      expect(kthSmallest(Float64Array.from(a), k)).toBe(sorted[k]);
    }
    // All equal, and already sorted / reversed inputs.
    expect(kthSmallest(new Float32Array(1000).fill(2), 500)).toBe(2);
    expect(kthSmallest(Float32Array.from({ length: 5000 }, (_, i) => i), 4321)).toBe(4321);
    expect(kthSmallest(Float32Array.from({ length: 5000 }, (_, i) => -i), 10)).toBe(-4989);
  });

  it('kthSmallest on large arrays (bracketed from a sample) equals the sorted array at k', () => {
    const r = lcg(11);
    const n = 200_003;
    const cases: [string, () => number][] = [
      ['uniform', () => r() - 0.5],
      ['squares, as ALPS scores them', () => Math.fround((r() - 0.5) ** 2)],
      ['70% exact zeros', () => (r() < 0.7 ? 0 : r())],
      ['five values', () => Math.floor(r() * 5)],
      ['with ±Infinity', () => (r() < 0.01 ? (r() < 0.5 ? -Infinity : Infinity) : r())],
    ];
    for (const [what, draw] of cases) {
      const a = Float32Array.from({ length: n }, draw);
      const sorted = Float64Array.from(a).sort();
      for (const k of [0, 1, 777, Math.floor(n / 2), Math.floor(n * 0.7), n - 2, n - 1]) {
        expect(kthSmallest(Float32Array.from(a), k), `${what}, k = ${k}`).toBe(sorted[k]);
      }
    }
    // Sorted and constant inputs.
    const ramp = Float64Array.from({ length: n }, (_, i) => i);
    expect(kthSmallest(ramp, 123_456)).toBe(123_456);
    expect(kthSmallest(new Float32Array(n).fill(7), 99)).toBe(7);
  });

  it('markSmallestStable picks the first k of a stable sort, NaN and +Inf last', () => {
    const r = lcg(4);
    for (let trial = 0; trial < 100; trial++) {
      const len = 1 + Math.floor(r() * 40);
      const vals = Float64Array.from({ length: len }, () => {
        const u = r();
        return u < 0.1 ? NaN : u < 0.2 ? Infinity : Math.floor(r() * 4);
      });
      const k = Math.floor(r() * (len + 1));
      const mask = new Uint8Array(len);
      markSmallestStable(vals, 0, len, k, mask, 0, new Float64Array(len));
      const expected = new Uint8Array(len);
      for (const i of stableOrder((i) => vals[i], len).slice(0, k)) expected[i] = 1;
      expect(Array.from(mask)).toEqual(Array.from(expected));
    }
  });

  it('markLowestInGroup handles wide groups like narrow ones', () => {
    const r = lcg(5);
    for (const width of [3, 32, 33, 70]) {
      const vals = Float32Array.from({ length: width }, () => Math.floor(r() * 6));
      const chosen = new Uint8Array(width);
      expect(markLowestInGroup(vals, 0, width, 17, chosen)).toBe(Math.min(17, width));
      const expected = new Uint8Array(width);
      for (const i of stableOrder((i) => vals[i], width).slice(0, 17)) expected[i] = 1;
      expect(Array.from(chosen)).toEqual(Array.from(expected));
    }
  });
});
