/**
 * PCG on a fixed mask against a float64 direct solve of each row's normal equations (written here:
 * Gaussian elimination with partial pivoting on (H + λI)_SS x_S = ((H + λI) w0)_S).
 */
import { describe, expect, it } from 'vitest';
import { pcgRefine } from '../../src/prune/pcg.js';
import { gaussian, lcg, randomMatrix } from './helpers.js';
import { solve64 } from '../helpers/solve64.js';

/** Correlated inputs [tokens, n] with a few large columns, like LLM layer inputs; one column never active. */
function inputs(tokens: number, n: number, seed: number, dead = -1): Float64Array {
  const rank = Math.ceil(n / 2);
  const z = randomMatrix(tokens, rank, seed);
  const a = randomMatrix(rank, n, seed + 1, 1 / Math.sqrt(rank));
  const g = gaussian(lcg(seed + 2));
  const x = new Float64Array(tokens * n);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < n; j++) {
      if (j === dead) continue;
      let s = 0.05 * g();
      for (let k = 0; k < rank; k++) s += z[t * rank + k] * a[k * n + j];
      x[t * n + j] = s * (j % 5 === 2 ? 6 : 1);
    }
  }
  return x;
}

function gram64(x: Float64Array, tokens: number, n: number): Float64Array {
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < n; i++) {
      const xi = x[t * n + i];
      if (xi === 0) continue;
      for (let j = 0; j < n; j++) h[i * n + j] += (2 / tokens) * xi * x[t * n + j];
    }
  }
  return h;
}

/** ‖(w0 − w)·Xᵀ‖² summed over rows, scaled like H = (2/N)ΣXᵀX with N = tokens: float64 from X itself. */
function layerError(x: Float64Array, tokens: number, n: number, w0: ArrayLike<number>, w: ArrayLike<number>, rows: number): number {
  let e = 0;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < tokens; t++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (w0[r * n + j] - w[r * n + j]) * x[t * n + j];
      e += s * s;
    }
  }
  return (2 / tokens) * e;
}

/** Float64 solution of each row's masked normal equations. */
function directSolve(h: Float64Array, n: number, w0: Float32Array, keep: Uint8Array, rows: number, ridge: number): Float64Array {
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const s: number[] = [];
    for (let j = 0; j < n; j++) if (keep[r * n + j] && h[j * n + j] > 0) s.push(j);
    const m = s.length;
    const a = s.map((i) => s.map((j) => h[i * n + j] + (i === j ? ridge : 0)));
    const b = s.map((i) => {
      let v = ridge * w0[r * n + i];
      for (let j = 0; j < n; j++) v += h[i * n + j] * w0[r * n + j];
      return v;
    });
    const sol = m === 0 ? [] : solve64(a, b.map((v) => [v])).map((row) => row[0]);
    s.forEach((j, k) => (out[r * n + j] = sol[k]));
    // Kept weights of never-active inputs are left as they were.
    for (let j = 0; j < n; j++) if (keep[r * n + j] && !(h[j * n + j] > 0)) out[r * n + j] = w0[r * n + j];
  }
  return out;
}

/** Half of each row zeroed at random positions (the mask a method would leave), dense rows unchanged. */
function pruneHalf(w0: Float32Array, rows: number, n: number, seed: number): { x: Float32Array; keep: Uint8Array } {
  const rand = lcg(seed);
  const x = Float32Array.from(w0);
  const keep = new Uint8Array(rows * n).fill(1);
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: n }, (_, j) => j);
    for (let i = n - 1; i > 0; i--) {
      const k = Math.floor(rand() * (i + 1));
      [order[i], order[k]] = [order[k], order[i]];
    }
    for (const j of order.slice(0, n / 2)) {
      x[r * n + j] = 0;
      keep[r * n + j] = 0;
    }
  }
  return { x, keep };
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

describe('pcgRefine', () => {
  const n = 48, rows = 12, tokens = 400, dead = 7;
  const xin = inputs(tokens, n, 11, dead);
  const h64 = gram64(xin, tokens, n);
  let diagMean = 0;
  for (let j = 0; j < n; j++) diagMean += h64[j * n + j] / n;
  const ridge = 0.01 * diagMean;
  const w0 = randomMatrix(rows, n, 5);

  it('converges to the float64 direct solve, and the error in the H norm falls at every step', async () => {
    const { x, keep } = pruneHalf(w0, rows, n, 3);
    const ref = directSolve(h64, n, w0, keep, rows, ridge);
    const r = await pcgRefine(h64, n, w0, x, rows, { iterations: 60, tolerance: 1e-10, ridge, trace: true });
    expect(relDiff(x, ref)).toBeLessThan(1e-6);
    expect(r.converged).toBe(rows);
    expect(r.residual).toBeLessThanOrEqual(1e-10);
    // CG minimises E_λ = ‖x − x*‖²_(H+λI) + const over growing Krylov spaces: it never rises.
    const e = r.trace!.dampedError;
    for (let k = 1; k < e.length; k++) expect(e[k]).toBeLessThanOrEqual(e[k - 1] + 1e-12 * e[0]);
    expect(e[e.length - 1]).toBeLessThan(e[0]);
    // The Euclidean residual ends far below where it started.
    const res = r.trace!.residual;
    expect(res[res.length - 1]).toBeLessThan(1e-6 * res[0]);
    // The mask is unchanged: pruned weights stay exactly zero, kept ones stay non-zero.
    for (let i = 0; i < x.length; i++) expect(x[i] === 0).toBe(keep[i] === 0);
  });

  it('with float32 H and the reference defaults (10 steps): undamped error below the unrefined one, near the optimum', async () => {
    const { x, keep } = pruneHalf(w0, rows, n, 4);
    const before = layerError(xin, tokens, n, w0, x, rows);
    const r = await pcgRefine(Float32Array.from(h64), n, w0, x, rows, { ridge });
    const after = layerError(xin, tokens, n, w0, x, rows);
    const optimum = layerError(xin, tokens, n, w0, directSolve(h64, n, w0, keep, rows, ridge), rows);
    expect(r.iterations).toBeLessThanOrEqual(10);
    expect(after).toBeLessThan(before);
    expect(after).toBeLessThan(optimum * 1.05);
    // The reported errors are the same quantity as the float64 reference's.
    expect(r.errorBefore).toBeCloseTo(before, -Math.floor(Math.log10(before)) + 4);
    expect(Math.abs(r.errorAfter - after) / after).toBeLessThan(1e-4);
  });

  it('leaves weights on inputs that were never active alone, and an explicit support wins over x0', async () => {
    const { x, keep } = pruneHalf(w0, rows, n, 6);
    for (let r = 0; r < rows; r++) x[r * n + dead] = w0[r * n + dead] || 1; // kept, dead input
    const support = Uint8Array.from(keep);
    support[0] = 0; // row 0, column 0 frozen at its value
    const x00 = x[0];
    await pcgRefine(h64, n, w0, x, rows, { ridge, support });
    for (let r = 0; r < rows; r++) expect(x[r * n + dead]).toBe(w0[r * n + dead] || 1);
    expect(x[0]).toBe(x00);
  });

  it('gives the same bits with its steps split over two cores as on one', async () => {
    // 1500 rows × 48 = 72000 values: above the size from which engine/parallel.ts splits a step.
    const many = 1500;
    const w = randomMatrix(many, n, 12);
    const h32 = Float32Array.from(h64);
    const out: Float32Array[] = [];
    const saved = process.env.SHEARS_THREADS;
    try {
      for (const threads of ['1', '2']) {
        process.env.SHEARS_THREADS = threads;
        const { x } = pruneHalf(w, many, n, 13);
        const r = await pcgRefine(h32, n, w, x, many, { ridge, tolerance: 1e-3 });
        expect(r.converged).toBeGreaterThan(0); // some rows stop early, on each side of the split
        out.push(x);
      }
    } finally {
      if (saved === undefined) delete process.env.SHEARS_THREADS;
      else process.env.SHEARS_THREADS = saved;
    }
    expect(Buffer.from(out[1].buffer).equals(Buffer.from(out[0].buffer))).toBe(true);
  });

  it('many rows are solved in chunks with the same result as one at a time', async () => {
    const wide = 1100, many = 1000; // 953 rows per chunk of about 1M values: two chunks
    const hw = Float32Array.from(gram64(inputs(64, wide, 2), 64, wide));
    const w = randomMatrix(many, wide, 8);
    const { x } = pruneHalf(w, many, wide, 9);
    const single = Float32Array.from(x.subarray((many - 1) * wide));
    await pcgRefine(hw, wide, w, x, many, { ridge: 0.1, iterations: 3 });
    await pcgRefine(hw, wide, w.subarray((many - 1) * wide), single, 1, { ridge: 0.1, iterations: 3 });
    expect(relDiff(x.subarray((many - 1) * wide), single)).toBeLessThan(1e-5);
  });
});
