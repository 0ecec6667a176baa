/**
 * SparseGPT against a float64 transcription of the reference fasterprune (sparsegpt-ref.ts), plus
 * the behaviours the reference leaves open (damping retries) and the point of the method: a smaller
 * layer-output error than Wanda and magnitude on correlated inputs.
 */
import { describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { inverseHessian, sparsegptPrune } from '../../src/prune/sparsegpt.js';
import { wandaPrune } from '../../src/prune/wanda.js';
import { magnitudePrune } from '../../src/prune/magnitude.js';
import { ColumnNormAccumulator, GramAccumulator } from '../../src/prune/stats.js';
import type { SparsitySpec } from '../../src/prune/spec.js';
import { refSparseGPT } from './sparsegpt-ref.js';
import { gaussian, lcg, randomMatrix, zeros } from './helpers.js';

/** Correlated layer inputs X = Z·A [tokens, cols], a few columns scaled up like LLM outlier features. */
function correlatedInputs(tokens: number, cols: number, seed: number, rank = Math.ceil(cols / 2)): Float32Array {
  const z = randomMatrix(tokens, rank, seed);
  const a = randomMatrix(rank, cols, seed + 1, 1 / Math.sqrt(rank));
  const g = gaussian(lcg(seed + 2));
  const scale = Array.from({ length: cols }, (_, j) => (j % 7 === 3 ? 8 : 1) * Math.exp(0.5 * g()));
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < cols; j++) {
      let s = 0.05 * g(); // a little independent noise keeps H full rank
      for (let k = 0; k < rank; k++) s += z[t * rank + k] * a[k * cols + j];
      x[t * cols + j] = s * scale[j];
    }
  }
  return x;
}

/** (2/N) XᵀX in float64, rounded to float32 once (what the accumulator hands to sparsegptPrune). */
function gram(x: Float32Array, tokens: number, cols: number, sequences: number): Float32Array {
  const h = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let t = 0; t < tokens; t++) s += x[t * cols + i] * x[t * cols + j];
      h[i * cols + j] = (2 / sequences) * s;
    }
  }
  return h;
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

interface Case {
  name: string;
  rows: number;
  cols: number;
  spec: SparsitySpec;
  blocksize?: number;
  deadCols?: number[];
}

const cases: Case[] = [
  { name: 'unstructured 50%, blocksize 32 not dividing 70 columns', rows: 24, cols: 70, spec: { kind: 'unstructured', sparsity: 0.5 }, blocksize: 32 },
  { name: 'unstructured 60%, default blocksize 128 over 150 columns', rows: 12, cols: 150, spec: { kind: 'unstructured', sparsity: 0.6 } },
  { name: '2:4, blocksize 32, 70 columns (tail of 2)', rows: 24, cols: 70, spec: { kind: 'nm', n: 2, m: 4 }, blocksize: 32 },
  { name: '4:8, blocksize 16, 64 columns', rows: 20, cols: 64, spec: { kind: 'nm', n: 4, m: 8 }, blocksize: 16 },
  { name: '4:8, blocksize 24, 70 columns (tail of 6)', rows: 16, cols: 70, spec: { kind: 'nm', n: 4, m: 8 }, blocksize: 24 },
  // M not dividing / wider than the in-block sub-block of 8 columns (sub-blocks of 6 and 16).
  { name: '3:6, blocksize 24, 64 columns (tail of 4)', rows: 12, cols: 64, spec: { kind: 'nm', n: 3, m: 6 }, blocksize: 24 },
  { name: '8:16, blocksize 48, 100 columns (tail of 4)', rows: 12, cols: 100, spec: { kind: 'nm', n: 8, m: 16 }, blocksize: 48 },
  { name: 'unstructured 50% with dead columns', rows: 16, cols: 48, spec: { kind: 'unstructured', sparsity: 0.5 }, blocksize: 16, deadCols: [0, 5, 17, 47] },
  { name: '2:4 with dead columns', rows: 16, cols: 48, spec: { kind: 'nm', n: 2, m: 4 }, blocksize: 16, deadCols: [1, 2, 3, 30] },
];

describe('SparseGPT matches a float64 transcription of the reference', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const tokens = 3 * c.cols, sequences = 3;
      const x = correlatedInputs(tokens, c.cols, c.rows * 31 + c.cols);
      for (const j of c.deadCols ?? []) for (let t = 0; t < tokens; t++) x[t * c.cols + j] = 0;
      const h = gram(x, tokens, c.cols, sequences);
      const hCopy = Float32Array.from(h);
      const w = randomMatrix(c.rows, c.cols, c.cols * 7 + c.rows);
      const ref = refSparseGPT(w, c.rows, c.cols, h, c.spec, c.blocksize ?? 128, 0.01);

      const res = await sparsegptPrune({ data: w, rows: c.rows, cols: c.cols }, h, c.spec, c.blocksize ? { blocksize: c.blocksize } : {});

      // The caller's H is shared between layers: it must come back untouched.
      expect(Array.from(h)).toEqual(Array.from(hCopy));
      let maskMismatch = 0;
      for (let i = 0; i < w.length; i++) if ((ref.w[i] === 0) !== (w[i] === 0)) maskMismatch++;
      expect(maskMismatch).toBe(0);
      expect(relDiff(w, ref.w)).toBeLessThan(1e-4);
      expect(Math.abs(res.loss! - ref.loss) / ref.loss).toBeLessThan(1e-4);
      expect(res.retries).toBe(0);
      expect(res.damp).toBe(0.01);
      expect(res.total).toBe(c.rows * c.cols);
      expect(res.pruned).toBe(zeros(w));

      for (const j of c.deadCols ?? []) for (let r = 0; r < c.rows; r++) expect(w[r * c.cols + j]).toBe(0);
      if (c.deadCols) expect(res.notes?.join(' ')).toMatch(/never active/);

      if (c.spec.kind === 'nm') {
        const { n, m } = c.spec;
        for (let r = 0; r < c.rows; r++) {
          for (let g = 0; g < c.cols; g += m) {
            const width = Math.min(m, c.cols - g);
            const z = zeros(w.subarray(r * c.cols + g, r * c.cols + g + width));
            // Exactly min(N, width), more only where dead columns were zeroed beforehand.
            const deadHere = (c.deadCols ?? []).filter((j) => j >= g && j < g + width).length;
            expect(z).toBe(Math.max(Math.min(n, width), deadHere));
          }
        }
      } else {
        // The reference rule: per block, int(numel·p)+1 entries are <= the threshold (no ties in
        // continuous data; dead columns are zeros and tie only among themselves at score 0).
        const bs = c.blocksize ?? 128;
        for (let i1 = 0; i1 < c.cols; i1 += bs) {
          const i2 = Math.min(i1 + bs, c.cols);
          let z = 0;
          for (let r = 0; r < c.rows; r++) for (let j = i1; j < i2; j++) if (w[r * c.cols + j] === 0) z++;
          const numel = c.rows * (i2 - i1);
          const deadHere = (c.deadCols ?? []).filter((j) => j >= i1 && j < i2).length * c.rows;
          expect(z).toBe(Math.max(Math.floor(numel * c.spec.sparsity) + 1, deadHere));
        }
      }
    });
  }

  for (const [name, spec, wbits] of [['unstructured 50% + 4-bit', { kind: 'unstructured', sparsity: 0.5 }, 4], ['2:4 + 8-bit', { kind: 'nm', n: 2, m: 4 }, 8]] as const) {
    it(`joint quantization (--wbits): ${name}`, async () => {
      const rows = 16, cols = 64, tokens = 192;
      const h = gram(correlatedInputs(tokens, cols, 5), tokens, cols, 3);
      const w = randomMatrix(rows, cols, 11);
      const ref = refSparseGPT(w, rows, cols, h, spec, 32, 0.01, wbits);
      const res = await sparsegptPrune({ data: w, rows, cols }, h, spec, { blocksize: 32, wbits });
      let maskMismatch = 0;
      for (let i = 0; i < w.length; i++) if ((ref.w[i] === 0) !== (w[i] === 0)) maskMismatch++;
      expect(maskMismatch).toBe(0);
      expect(relDiff(w, ref.w)).toBeLessThan(1e-4);
      expect(Math.abs(res.loss! - ref.loss) / ref.loss).toBeLessThan(1e-4);
      // Every row holds at most 2^wbits distinct values, 0 among them.
      for (let r = 0; r < rows; r++) expect(new Set(w.subarray(r * cols, (r + 1) * cols)).size).toBeLessThanOrEqual(2 ** wbits);
    });
  }

  it('rejects a blocksize that is not a multiple of M for N:M', async () => {
    const w = { data: new Float32Array(4 * 12), rows: 4, cols: 12 };
    const h = new Float32Array(144);
    await expect(sparsegptPrune(w, h, { kind: 'nm', n: 2, m: 4 }, { blocksize: 6 })).rejects.toThrow(/multiple of M = 4/);
    await expect(sparsegptPrune(w, h, { kind: 'nm', n: 2, m: 4 }, { blocksize: 6 })).rejects.toBeInstanceOf(ShearsError);
  });
});

describe('SparseGPT damping retries', () => {
  it('raises the damping 10x until the Cholesky succeeds, and says so', async () => {
    // Eigenvalues of [[1, 1.5], [1.5, 1]] blocks: 2.5 and -0.5; mean diag 1. Damping 0.01 and 0.1
    // leave an eigenvalue at -0.49 / -0.4; damping 1 lifts it to +0.5.
    const n = 4;
    const h = new Float32Array(n * n);
    for (const b of [0, 2]) {
      h[b * n + b] = h[(b + 1) * n + b + 1] = 1;
      h[b * n + b + 1] = h[(b + 1) * n + b] = 1.5;
    }
    const w = Float32Array.from([1, -2, 3, -4, 0.5, 0.25, -0.125, 2]);
    const res = await sparsegptPrune({ data: w, rows: 2, cols: n }, h, { kind: 'unstructured', sparsity: 0.5 });
    expect(res.retries).toBe(2);
    expect(res.damp).toBe(1);
    expect(res.notes?.join(' ')).toMatch(/2 retries/);
    // Same result as the reference run directly at the damping that worked.
    const ref = refSparseGPT(Float32Array.from([1, -2, 3, -4, 0.5, 0.25, -0.125, 2]), 2, n, h, { kind: 'unstructured', sparsity: 0.5 }, 128, res.damp!);
    expect(relDiff(w, ref.w)).toBeLessThan(1e-5);
  });

  it('retries a singular H given with damp 0 at the default damping', async () => {
    const n = 3;
    const h = Float32Array.from([1, 1, 0, 1, 1, 0, 0, 0, 2]); // columns 0 and 1 identical inputs
    const w = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const res = await sparsegptPrune({ data: w, rows: 2, cols: n }, h, { kind: 'unstructured', sparsity: 0.5 }, { damp: 0 });
    expect(res.retries).toBe(1);
    expect(res.damp).toBe(0.01);
  });

  it('factors H in place, rebuilding it between retries, and one inverse serves every layer reading the input', async () => {
    // n > 128 runs the blocked factorisation; the indefinite pair is at H's start, which the flipped
    // factorisation reaches last, after every level above it has written into the matrix.
    const n = 300, rows = 6, tokens = 400;
    const h = gram(correlatedInputs(tokens, n, 31), tokens, n, 4);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) h[j * n + i] = h[i * n + j]; // exactly symmetric
    h[1] = h[n] = 1.2 * Math.max(h[0], h[n + 1]) + 1.2 * Math.abs(h[0] - h[n + 1]);
    const spec: SparsitySpec = { kind: 'unstructured', sparsity: 0.5 };
    const h64 = Float64Array.from(h);
    const inverse = await inverseHessian(h64, n, { inPlace: true });
    expect(inverse.retries).toBeGreaterThan(0);
    expect(inverse.u).toBe(h64); // U took H's place
    for (const seed of [32, 33]) {
      const w0 = randomMatrix(rows, n, seed);
      const fromH = Float32Array.from(w0), shared = Float32Array.from(w0);
      const a = await sparsegptPrune({ data: fromH, rows, cols: n }, h, spec);
      const b = await sparsegptPrune({ data: shared, rows, cols: n }, inverse, spec);
      expect(b.retries).toBe(a.retries);
      expect(b.damp).toBe(a.damp);
      expect(b.loss).toBe(a.loss);
      expect(Buffer.from(shared.buffer).equals(Buffer.from(fromH.buffer))).toBe(true);
    }
    await expect(inverseHessian(h, n, { inPlace: true })).rejects.toThrow(/Float64Array/);
  });

  it('gives up with a one-line ShearsError after 3 retries', async () => {
    const n = 3;
    const h = new Float32Array(n * n);
    for (let j = 0; j < n; j++) h[j * n + j] = -1; // negative definite: damping only makes it worse
    const w = { data: new Float32Array(2 * n).fill(1), rows: 2, cols: n };
    const err = await sparsegptPrune(w, h, { kind: 'unstructured', sparsity: 0.5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShearsError);
    expect((err as Error).message).toMatch(/not positive definite.*3 retries/);
  });
});

describe('SparseGPT on a layer with correlated inputs', () => {
  it('reconstructs the layer output better than Wanda, and Wanda better than magnitude', async () => {
    const rows = 48, cols = 96, sequences = 4, seqlen = 96, tokens = sequences * seqlen;
    const x = correlatedInputs(tokens, cols, 2024, 24);
    const gramAcc = new GramAccumulator(cols);
    const normAcc = new ColumnNormAccumulator(cols);
    for (let s = 0; s < sequences; s++) {
      const batch = x.subarray(s * seqlen * cols, (s + 1) * seqlen * cols);
      await gramAcc.add(batch, seqlen, 1);
      await normAcc.add(batch, seqlen, 1);
    }
    await gramAcc.finish();
    const w0 = randomMatrix(rows, cols, 77);
    const outputError = (w: Float32Array) => {
      let e = 0;
      for (let t = 0; t < tokens; t++) {
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let j = 0; j < cols; j++) s += (w0[r * cols + j] - w[r * cols + j]) * x[t * cols + j];
          e += s * s;
        }
      }
      return e;
    };
    for (const spec of [{ kind: 'unstructured', sparsity: 0.5 }, { kind: 'nm', n: 2, m: 4 }] as SparsitySpec[]) {
      const ws = Float32Array.from(w0), ww = Float32Array.from(w0), wm = Float32Array.from(w0);
      await sparsegptPrune({ data: ws, rows, cols }, gramAcc.result(), spec, { blocksize: 32 });
      wandaPrune({ data: ww, rows, cols }, normAcc.result(), spec);
      magnitudePrune({ data: wm, rows, cols }, spec);
      const [es, ew, em] = [outputError(ws), outputError(ww), outputError(wm)];
      expect(es).toBeLessThan(ew);
      expect(ew).toBeLessThan(em);
    }
  });
});
