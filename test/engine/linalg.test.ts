/**
 * Each primitive against a plain float64 JS implementation written here (textbook loops, no blocking, no ORT).
 * Float32 products are compared with the float64 product of the same float32 inputs; the float64
 * factorisations with the float64 definitions (choleskyInverseUpper: cholesky(cholesky_inverse(cholesky(H))),
 * upper), including sizes that are not multiples of the 128-wide diagonal blocks and products big enough to
 * be split into several ORT runs. The damped Gram matrices have condition numbers of about 3e3 (damping
 * 0.01), 2e4 (0.001) and 3e5 (0.0001); observed errors are ~1e-13–1e-12, the bounds leave room for other
 * BLAS builds.
 */
import { describe, expect, it } from 'vitest';
import {
  NotPositiveDefiniteError,
  accumulateGram,
  cholesky,
  choleskyInverseUpper,
  gemmAccumulate,
  invertSpd,
  matmul,
} from '../../src/engine/linalg.js';
import { factorScratch } from '../../src/engine/cholesky.js';
import { releaseScratch, scratch64 } from '../../src/engine/scratch.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}

function randomF32(len: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: len }, r);
}

/** op(A)·op(B) in float64 with the triple loop, shapes as stored. */
function refProduct(a: ArrayLike<number>, aShape: [number, number], b: ArrayLike<number>, bShape: [number, number], transA = false, transB = false): Float64Array {
  const [m, k] = transA ? [aShape[1], aShape[0]] : aShape;
  const n = transB ? bShape[0] : bShape[1];
  const at = (i: number, p: number) => (transA ? a[p * aShape[1] + i] : a[i * aShape[1] + p]);
  const bt = (p: number, j: number) => (transB ? b[j * bShape[1] + p] : b[p * bShape[1] + j]);
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += at(i, p) * bt(p, j);
      c[i * n + j] = s;
    }
  }
  return c;
}

/** max |x − ref| / max |ref|. */
function relErr(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(x.length).toBe(ref.length);
  let e = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    e = Math.max(e, Math.abs(x[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return e / m;
}

/** Cholesky–Crout, column by column: L[:, j] from A[:, j] − L[:, :j]·L[j, :j]ᵀ. */
function refCholesky(a: ArrayLike<number>, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= l[j * n + k] ** 2;
    if (!(d > 0)) throw new Error(`reference: not SPD at ${j}`);
    const djj = Math.sqrt(d);
    l[j * n + j] = djj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / djj;
    }
  }
  return l;
}

/** Inverse of a lower-triangular L by forward substitution, one column of the identity at a time. */
function refLowerInverse(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let col = 0; col < n; col++) {
    for (let i = col; i < n; i++) {
      let s = i === col ? 1 : 0;
      for (let k = col; k < i; k++) s -= l[i * n + k] * x[k * n + col];
      x[i * n + col] = s / l[i * n + i];
    }
  }
  return x;
}

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

/** H⁻¹ = L⁻ᵀ·L⁻¹ (torch.cholesky_inverse of cholesky(H)). */
function refInverse(h: ArrayLike<number>, n: number): Float64Array {
  const m = refLowerInverse(refCholesky(h, n), n);
  return refProduct(m, [n, n], m, [n, n], true, false);
}

/** SparseGPT's definition: cholesky(cholesky_inverse(cholesky(H)), upper=True). */
function refInverseUpper(h: ArrayLike<number>, n: number): Float64Array {
  return transpose(refCholesky(refInverse(h, n), n), n);
}

/**
 * A damped Gram matrix like SparseGPT's Hessian: H = 2/N·XᵀX + damp·mean(diag)·I, with X low-rank plus
 * noise and per-channel scales spread over e^±2 (outlier channels), rounded to float32 as H is stored.
 */
function dampedGram(n: number, samples: number, rank: number, damp: number, seed: number): Float32Array {
  const r = rng(seed);
  const z = Float64Array.from({ length: samples * rank }, r);
  const mix = Float64Array.from({ length: rank * n }, r);
  const scale = Float64Array.from({ length: n }, () => Math.exp(4 * r()));
  const x = new Float64Array(samples * n);
  for (let s = 0; s < samples; s++) {
    for (let j = 0; j < n; j++) {
      let v = 0.05 * r();
      for (let q = 0; q < rank; q++) v += z[s * rank + q] * mix[q * n + j];
      x[s * n + j] = v * scale[j];
    }
  }
  const g = refProduct(x, [samples, n], x, [samples, n], true, false);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += g[i * n + i] * (2 / samples);
  mean /= n;
  const h = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) h[i] = g[i] * (2 / samples);
  for (let i = 0; i < n; i++) h[i * n + i] += damp * mean;
  return h;
}

describe('matmul (float32)', () => {
  const cases: [string, number, number, number, boolean, boolean][] = [
    ['37×53 · 53×29', 37, 53, 29, false, false],
    ['transA', 41, 17, 23, true, false],
    ['transB', 5, 64, 33, false, true],
    ['transA and transB', 19, 7, 1, true, true],
    ['1×1', 1, 1, 1, false, false],
  ];
  for (const [name, m, k, n, tA, tB] of cases) {
    it(name, async () => {
      const aShape: [number, number] = tA ? [k, m] : [m, k];
      const bShape: [number, number] = tB ? [n, k] : [k, n];
      const a = randomF32(m * k, m + 1);
      const b = randomF32(k * n, n + 2);
      const c = await matmul(a, aShape, b, bShape, { transA: tA, transB: tB });
      expect(c).toBeInstanceOf(Float32Array);
      expect(relErr(c, refProduct(a, aShape, b, bShape, tA, tB))).toBeLessThan(1e-6);
    });
  }

  it('writes into out, also when the product is split into several runs (output > 4 MiB)', async () => {
    const [m, k, n] = [1200, 20, 1001];
    const a = randomF32(k * m, 3);
    const b = randomF32(n * k, 4);
    const out = new Float32Array(m * n).fill(Number.NaN);
    const c = await matmul(a, [k, m], b, [n, k], { transA: true, transB: true, out });
    expect(c).toBe(out);
    expect(relErr(out, refProduct(a, [k, m], b, [n, k], true, true))).toBeLessThan(1e-6);
  });

  it('rejects mismatched shapes and a wrong-sized out', async () => {
    const a = randomF32(6, 1);
    expect(() => matmul(a, [2, 3], a, [2, 3])).toThrow(/op\(A\) is 2×3 but op\(B\) is 2×3/);
    expect(() => matmul(a, [2, 3], a, [3, 2], { out: new Float32Array(3) })).toThrow(/out has 3 elements/);
    const sq = randomF32(4, 2);
    await expect(matmul(sq, [2, 2], randomF32(4, 3), [2, 2], { out: sq })).rejects.toThrow(/overlaps an input/);
  });

  it('an empty inner dimension gives zeros', async () => {
    const c = await matmul(new Float32Array(0), [3, 0], new Float32Array(0), [0, 2]);
    expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('gemmAccumulate (float32)', () => {
  it('c −= A·Bᵀ (SparseGPT lazy update: alpha −1, beta 1) on odd shapes', async () => {
    const [m, k, n] = [31, 9, 45];
    const a = randomF32(m * k, 5);
    const b = randomF32(n * k, 6);
    const c = randomF32(m * n, 7);
    const ab = refProduct(a, [m, k], b, [n, k], false, true);
    const want = Float64Array.from(c, (v, i) => v - ab[i]);
    await gemmAccumulate(c, [m, n], a, [m, k], b, [n, k], { transB: true, alpha: -1, beta: 1 });
    expect(relErr(c, want)).toBeLessThan(1e-6);
  });

  it('alpha 0.5, beta 2 with transA, split into several runs', async () => {
    const [m, k, n] = [1100, 7, 1000];
    const a = randomF32(k * m, 8);
    const b = randomF32(k * n, 9);
    const c = randomF32(m * n, 10);
    const ab = refProduct(a, [k, m], b, [k, n], true, false);
    const want = Float64Array.from(c, (v, i) => 0.5 * ab[i] + 2 * v);
    await gemmAccumulate(c, [m, n], a, [k, m], b, [k, n], { transA: true, alpha: 0.5, beta: 2 });
    expect(relErr(c, want)).toBeLessThan(1e-6);
  });

  it('beta 0 overwrites c, NaNs included', async () => {
    const a = randomF32(12, 11);
    const b = randomF32(12, 12);
    const c = new Float32Array(9).fill(Number.NaN);
    await gemmAccumulate(c, [3, 3], a, [3, 4], b, [4, 3], { beta: 0 });
    expect(relErr(c, refProduct(a, [3, 4], b, [4, 3]))).toBeLessThan(1e-6);
  });

  it('rejects a C of the wrong shape', () => {
    const a = randomF32(12, 1);
    expect(() => gemmAccumulate(new Float32Array(9), [3, 3], a, [3, 4], a, [3, 4])).toThrow();
    expect(() => gemmAccumulate(new Float32Array(8), [2, 4], a, [3, 4], a, [4, 3])).toThrow(/C is \[2,4\]/);
  });
});

describe('accumulateGram (float32)', () => {
  it('h += xᵀx accumulates over batches in place (37 rows × 53 columns, then 5 more rows)', async () => {
    const n = 53;
    const h = randomF32(n * n, 13);
    const want = Float64Array.from(h);
    for (const [rows, seed] of [[37, 14], [5, 15]]) {
      const x = randomF32(rows * n, seed);
      const g = refProduct(x, [rows, n], x, [rows, n], true, false);
      for (let i = 0; i < n * n; i++) want[i] += g[i];
      await accumulateGram(h, n, x, rows);
    }
    expect(relErr(h, want)).toBeLessThan(1e-6);
  });

  it('a Gram matrix too big for one ORT output (1100² float32, few rows) is written in several runs', async () => {
    const n = 1100;
    const rows = 12;
    const x = randomF32(rows * n, 16);
    const h = new Float32Array(n * n).fill(1);
    await accumulateGram(h, n, x, rows);
    const g = refProduct(x, [rows, n], x, [rows, n], true, false);
    expect(relErr(h, Float64Array.from(g, (v) => v + 1))).toBeLessThan(1e-6);
  });

  it('many rows into a large h (the lower-triangle-and-mirror path) match and stay exactly symmetric', async () => {
    const n = 1030;
    const rows = 520;
    const x = randomF32(rows * n, 17);
    const h = randomF32(n * n, 18);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) h[i * n + j] = h[j * n + i];
    const want = Float64Array.from(h);
    for (let r = 0; r < rows; r++) {
      const xr = x.subarray(r * n, (r + 1) * n);
      for (let i = 0; i < n; i++) {
        const xi = xr[i];
        for (let j = 0; j < n; j++) want[i * n + j] += xi * xr[j];
      }
    }
    await accumulateGram(h, n, x, rows);
    expect(relErr(h, want)).toBeLessThan(1e-6);
    let asymmetric = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) if (h[i * n + j] !== h[j * n + i]) asymmetric++;
    expect(asymmetric).toBe(0);
  });

  it('zero rows is a no-op; a wrong-sized x throws', async () => {
    const h = new Float32Array(4).fill(2);
    await accumulateGram(h, 2, new Float32Array(0), 0);
    expect(Array.from(h)).toEqual([2, 2, 2, 2]);
    expect(() => accumulateGram(h, 2, new Float32Array(3), 2)).toThrow(/x has 3 elements/);
  });
});

describe('cholesky (float64)', () => {
  for (const [n, seed] of [[1, 1], [37, 2], [128, 3], [129, 4], [300, 5], [517, 6]]) {
    it(`matches Cholesky–Crout at n = ${n}`, async () => {
      const h = Float64Array.from(dampedGram(n, Math.max(4, n >> 1), Math.max(1, n >> 3), 0.01, seed));
      const l = await cholesky(h, n);
      const ref = refCholesky(h, n);
      expect(relErr(l, ref)).toBeLessThan(1e-11);
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(l[i * n + j]).toBe(0);
      // In place, and into the same out again.
      expect(await cholesky(h, n, { out: h })).toBe(h);
      expect(relErr(h, ref)).toBeLessThan(1e-11);
    });
  }

  it('throws NotPositiveDefiniteError naming the failing pivot, and recovers afterwards', async () => {
    const n = 300;
    const h = Float64Array.from(dampedGram(n, 200, 30, 0.01, 7));
    const bad = Float64Array.from(h);
    bad[250 * n + 250] = -1;
    const err = await cholesky(bad, n).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotPositiveDefiniteError);
    expect((err as NotPositiveDefiniteError).pivot).toBe(250);
    expect((err as Error).message).toMatch(/not positive definite: pivot 250 of 300/);
    // Indefinite, zero and NaN-polluted matrices fail too.
    await expect(cholesky(Float64Array.of(1, 2, 2, 1), 2)).rejects.toThrow(/pivot 1 of 2 is -3/);
    await expect(cholesky(new Float64Array(16), 4)).rejects.toThrow(/pivot 0 of 4 is 0/);
    const nan = Float64Array.from(h);
    nan[200 * n + 3] = Number.NaN;
    await expect(cholesky(nan, n)).rejects.toThrow(/pivot 200 of 300 is NaN/);
    // The scratch memory was released: a good matrix still factors.
    expect(relErr(await cholesky(h, n), refCholesky(h, n))).toBeLessThan(1e-11);
  });
});

describe('choleskyInverseUpper (float64)', () => {
  for (const [n, damp, seed] of [
    [2, 0.01, 1],
    [37, 0.01, 2],
    [200, 0.01, 3],
    [333, 0.0001, 4],
  ]) {
    it(`equals cholesky(cholesky_inverse(cholesky(H)), upper) at n = ${n}, damping ${damp}`, async () => {
      const h = dampedGram(n, Math.max(4, n >> 1), Math.max(1, n >> 3), damp, seed);
      const u = await choleskyInverseUpper(h, n);
      expect(relErr(u, refInverseUpper(h, n))).toBeLessThan(1e-9);
      for (let i = 0; i < n; i++) {
        expect(u[i * n + i]).toBeGreaterThan(0);
        for (let j = 0; j < i; j++) expect(u[i * n + j]).toBe(0);
      }
    });
  }

  it('writes into out and reports a failing pivot as an index of H', async () => {
    const n = 140;
    const h = dampedGram(n, 100, 10, 0.01, 9);
    const out = new Float64Array(n * n).fill(7);
    expect(await choleskyInverseUpper(h, n, { out })).toBe(out);
    expect(relErr(out, refInverseUpper(h, n))).toBeLessThan(1e-9);
    // In place: the float64 input itself as the result (what the SparseGPT driver does).
    const hd = Float64Array.from(h);
    expect(await choleskyInverseUpper(hd, n, { out: hd })).toBe(hd);
    expect(relErr(hd, refInverseUpper(h, n))).toBeLessThan(1e-9);
    const bad = Float32Array.from(h);
    bad[5 * n + 5] = -bad[5 * n + 5];
    const err = await choleskyInverseUpper(bad, n).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotPositiveDefiniteError);
    expect((err as NotPositiveDefiniteError).pivot).toBe(5);
  });

  it('leaves the strict lower triangle of an in-place H untouched when it fails (SparseGPT rebuilds H from it)', async () => {
    const n = 300;
    const h = dampedGram(n, 200, 20, 0.01, 12);
    h[250 * n + 250] = -1; // fails late, after the top-level blocks have been written
    const hd = Float64Array.from(h);
    const err = await choleskyInverseUpper(hd, n, { out: hd }).catch((e: unknown) => e);
    expect((err as NotPositiveDefiniteError).pivot).toBe(250);
    let changed = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) if (!Object.is(hd[i * n + j], h[i * n + j])) changed++;
    expect(changed).toBe(0);
  });

  it('is served entirely by the scratch it reserves (no throwaway allocations), and that is at most half of H plus chunks', async () => {
    for (const n of [100, 129, 700, 1500]) {
      releaseScratch();
      const h = dampedGram(n, 16, 4, 0.1, n);
      await choleskyInverseUpper(h, n);
      expect(scratch64.highWater).toBeGreaterThan(0);
      expect(scratch64.highWater).toBeLessThanOrEqual(factorScratch(n));
      expect(scratch64.capacity).toBe(factorScratch(n));
      if (n >= 700) expect(factorScratch(n)).toBeLessThan(n * n / 2 + 2 * (4 << 20) / 8 + 1);
    }
    releaseScratch();
  });
});

describe('concurrent calls', () => {
  it('share scratch memory safely (calls are serialised)', async () => {
    const n = 190;
    const h1 = dampedGram(n, 90, 20, 0.01, 21);
    const h2 = dampedGram(n, 80, 25, 0.001, 22);
    const a = randomF32(300 * 40, 23);
    const [u1, u2, c] = await Promise.all([choleskyInverseUpper(h1, n), choleskyInverseUpper(h2, n), matmul(a, [300, 40], a, [300, 40], { transA: true })]);
    expect(relErr(u1, refInverseUpper(h1, n))).toBeLessThan(1e-9);
    expect(relErr(u2, refInverseUpper(h2, n))).toBeLessThan(1e-9);
    expect(relErr(c, refProduct(a, [300, 40], a, [300, 40], true, false))).toBeLessThan(1e-6);
  });
});

describe('invertSpd (float64)', () => {
  for (const [n, seed] of [[3, 1], [129, 2], [260, 3]]) {
    it(`equals L⁻ᵀL⁻¹ at n = ${n}, also in place`, async () => {
      const h = dampedGram(n, Math.max(4, n >> 1), Math.max(1, n >> 3), 0.01, seed);
      const ref = refInverse(h, n);
      expect(relErr(await invertSpd(h, n), ref)).toBeLessThan(1e-9);
      const hd = Float64Array.from(h);
      expect(await invertSpd(hd, n, { out: hd })).toBe(hd);
      expect(relErr(hd, ref)).toBeLessThan(1e-9);
    });
  }

  it('throws NotPositiveDefiniteError for an indefinite matrix', async () => {
    await expect(invertSpd(Float64Array.of(4, 0, 0, 0, -1, 0, 0, 0, 9), 3)).rejects.toThrow(/pivot 1 of 3 is -1/);
  });
});
