/**
 * Structured removal on one output projection against a float64 least-squares reference written here:
 * the re-solved kept columns (and bias) are the damped normal-equation solution, the compensated removal
 * leaves a smaller output error than the same removal uncompensated, and it is within a few percent of
 * the undamped optimum.
 */
import { describe, expect, it } from 'vitest';
import { AugmentedGram, removeGroups, type GroupLayout, type StructuredCriterion } from '../../src/structured/solve.js';
import { gaussian, lcg, randomMatrix } from '../prune/helpers.js';
import { solve64 } from '../helpers/solve64.js';

/** Correlated inputs [tokens, n] with a non-zero mean per column (so a bias has something to absorb). */
function inputs(tokens: number, n: number, seed: number): Float32Array {
  const rank = Math.ceil(n / 2);
  const z = randomMatrix(tokens, rank, seed);
  const a = randomMatrix(rank, n, seed + 1, 1 / Math.sqrt(rank));
  const g = gaussian(lcg(seed + 2));
  const mean = Array.from({ length: n }, () => 0.5 * g());
  const x = new Float32Array(tokens * n);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < n; j++) {
      let s = mean[j] + 0.05 * g();
      for (let k = 0; k < rank; k++) s += z[t * rank + k] * a[k * n + j];
      x[t * n + j] = s;
    }
  }
  return x;
}

/**
 * Float64 reference: G = mean x̃x̃ᵀ over tokens (x̃ = [x, 1]); S = kept (+ the constant column with a bias);
 * W'_S = W_S + W_R·G_RS·(G_SS + λI)⁻¹, λ = damp·mean diag G_SS. Returns W' [rows, kept] and b'.
 */
function reference(x: Float32Array, tokens: number, n: number, w: Float32Array, rows: number, bias: Float32Array | undefined, kept: number[], damp: number) {
  const N = n + 1;
  const G = Array.from({ length: N }, () => new Array<number>(N).fill(0));
  for (let t = 0; t < tokens; t++) {
    const xt = [...x.subarray(t * n, (t + 1) * n), 1];
    for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) G[i][j] += (xt[i] * xt[j]) / tokens;
  }
  const S = bias ? [...kept, n] : kept;
  const R = Array.from({ length: n }, (_, c) => c).filter((c) => !kept.includes(c));
  const lambda = (damp * S.reduce((s, c) => s + G[c][c], 0)) / S.length;
  const A = S.map((i) => S.map((j) => G[i][j] + (i === j ? lambda : 0)));
  // Δᵀ = A⁻¹·(W_R G_RS)ᵀ: solve A·Y = G_SR·W_Rᵀ  (k × rows)
  const rhs = S.map((s) => Array.from({ length: rows }, (_, r) => R.reduce((acc, c) => acc + G[s][c] * w[r * n + c], 0)));
  const Y = solve64(A, rhs);
  const wOut = new Float64Array(rows * kept.length);
  const bOut = bias ? new Float64Array(rows) : undefined;
  for (let r = 0; r < rows; r++) {
    kept.forEach((c, j) => (wOut[r * kept.length + j] = w[r * n + c] + Y[j][r]));
    if (bOut) bOut[r] = bias![r] + Y[S.length - 1][r];
  }
  return { w: wOut, b: bOut };
}

/** ‖(W x + b) − (W' x_S + b')‖² per token, in float64 from the raw inputs. */
function outputError(x: Float32Array, tokens: number, n: number, w: Float32Array, rows: number, bias: Float32Array | undefined, kept: number[], w2: ArrayLike<number>, b2: ArrayLike<number> | undefined): number {
  let e = 0;
  const k = kept.length;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let y = bias ? bias[r] : 0;
      for (let c = 0; c < n; c++) y += w[r * n + c] * x[t * n + c];
      let y2 = b2 ? b2[r] : 0;
      for (let j = 0; j < k; j++) y2 += w2[r * k + j] * x[t * n + kept[j]];
      e += (y - y2) ** 2;
    }
  }
  return e / tokens;
}

/** Undamped least squares over the kept columns (and bias): the best any re-solve can do. */
function optimum(x: Float32Array, tokens: number, n: number, w: Float32Array, rows: number, bias: Float32Array | undefined, kept: number[]): number {
  const r = reference(x, tokens, n, w, rows, bias, kept, 1e-12);
  return outputError(x, tokens, n, w, rows, bias, kept, r.w, r.b);
}

async function gramOf(x: Float32Array, tokens: number, n: number): Promise<Float64Array> {
  const acc = new AugmentedGram(n);
  // Two batches, as the block runner feeds micro-batches.
  const half = Math.floor(tokens / 2);
  await acc.add(x.subarray(0, half * n), half, 1);
  await acc.add(x.subarray(half * n), tokens - half, 1);
  return await acc.result();
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const channelLayout = (n: number, remove: number): GroupLayout => ({ groups: Array.from({ length: n }, (_, j) => [j]), partitions: [Array.from({ length: n }, (_, j) => j)], removePer: remove });

describe('MLP channel removal on the down projection', () => {
  const tokens = 600, n = 48, rows = 20;
  const x = inputs(tokens, n, 11);
  const w = randomMatrix(rows, n, 12, 0.3);
  const biasCases: [string, Float32Array | undefined][] = [['no bias (Llama)', undefined], ['with bias (OPT, GPT-2, GPT-NeoX)', randomMatrix(1, rows, 13, 0.1)]];

  for (const [label, bias] of biasCases) {
    it(`${label}: the re-solve is the float64 damped least-squares solution and beats plain removal`, async () => {
      const g = await gramOf(x, tokens, n);
      const layout = channelLayout(n, 18);
      const p = { w, rows, n, bias };
      const comp = await removeGroups(p, layout, g, { criterion: 'wanda', compensate: true, damp: 1e-4 });
      const plain = await removeGroups(p, layout, g, { criterion: 'wanda', compensate: false, damp: 1e-4 });
      expect(comp.keptCols).toEqual(plain.keptCols);
      expect(comp.keptCols.length).toBe(n - 18);
      const ref = reference(x, tokens, n, w, rows, bias, comp.keptCols, 1e-4);
      expect(relDiff(comp.w, ref.w)).toBeLessThan(1e-3);
      if (bias) expect(relDiff(comp.bias!, ref.b!)).toBeLessThan(1e-3);
      const eComp = outputError(x, tokens, n, w, rows, bias, comp.keptCols, comp.w, comp.bias);
      const ePlain = outputError(x, tokens, n, w, rows, bias, plain.keptCols, plain.w, plain.bias);
      const eBest = optimum(x, tokens, n, w, rows, bias, comp.keptCols);
      expect(eComp).toBeLessThan(0.5 * ePlain);
      expect(eComp).toBeLessThan(1.05 * eBest);
      // The reported loss is that same output error, from the Gram matrix.
      expect(comp.loss! / eComp).toBeCloseTo(1, 3);
      expect(plain.loss! / ePlain).toBeCloseTo(1, 3);
    });
  }

  it('the OBS criterion (sparsegpt) picks channels whose re-solved error is no larger than the Wanda-sp choice, and magnitude is worst', async () => {
    const g = await gramOf(x, tokens, n);
    const errs: Record<StructuredCriterion, number> = { magnitude: 0, wanda: 0, sparsegpt: 0 };
    for (const criterion of ['magnitude', 'wanda', 'sparsegpt'] as const) {
      const r = await removeGroups({ w, rows, n }, channelLayout(n, 24), g, { criterion, compensate: criterion !== 'magnitude', damp: 1e-4 });
      errs[criterion] = outputError(x, tokens, n, w, rows, undefined, r.keptCols, r.w, r.bias);
    }
    expect(errs.sparsegpt).toBeLessThanOrEqual(errs.wanda * 1.001);
    expect(errs.wanda).toBeLessThan(errs.magnitude);
  });
});

describe('attention head removal on the output projection', () => {
  const tokens = 500, D = 4, H = 8, KV = 4, rows = 24;
  const n = H * D;
  const x = inputs(tokens, n, 21);
  const w = randomMatrix(rows, n, 22, 0.3);

  it('one query head from every KV group: whole heads go, the re-solve matches float64 and beats plain removal', async () => {
    const g = await gramOf(x, tokens, n);
    const layout: GroupLayout = {
      groups: Array.from({ length: H }, (_, h) => Array.from({ length: D }, (_, d) => h * D + d)),
      partitions: Array.from({ length: KV }, (_, k) => [2 * k, 2 * k + 1]),
      removePer: 1,
    };
    for (const criterion of ['wanda', 'sparsegpt'] as const) {
      const comp = await removeGroups({ w, rows, n }, layout, g, { criterion, compensate: true, damp: 1e-4 });
      // One head of each pair, whole heads only.
      expect(comp.removed.length).toBe(KV);
      for (let k = 0; k < KV; k++) expect(comp.removed.filter((h) => Math.floor(h / 2) === k)).toHaveLength(1);
      expect(comp.keptCols).toEqual(Array.from({ length: H }, (_, h) => h).filter((h) => !comp.removed.includes(h)).flatMap((h) => Array.from({ length: D }, (_, d) => h * D + d)));
      const plain = await removeGroups({ w, rows, n }, layout, g, { criterion, compensate: false, damp: 1e-4 });
      const ref = reference(x, tokens, n, w, rows, undefined, comp.keptCols, 1e-4);
      expect(relDiff(comp.w, ref.w)).toBeLessThan(1e-3);
      const eComp = outputError(x, tokens, n, w, rows, undefined, comp.keptCols, comp.w, undefined);
      const ePlain = outputError(x, tokens, n, w, rows, undefined, plain.keptCols, plain.w, undefined);
      expect(eComp).toBeLessThan(0.5 * ePlain);
      expect(eComp).toBeLessThan(1.05 * optimum(x, tokens, n, w, rows, undefined, comp.keptCols));
    }
  });
});
