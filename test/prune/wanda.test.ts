/**
 * Wanda against a direct transcription of the reference (lib/prune.py prune_wanda): float32 metric
 * |W|·sqrt(scaler_row), per-row torch.sort(stable=True) and the first int(cols·p) indices, or per
 * group of M topk(N, largest=False) (ties: lowest index, our documented rule).
 */
import { describe, expect, it } from 'vitest';
import { wandaPrune } from '../../src/prune/wanda.js';
import { lcg, randomMatrix, stableOrder, tiedMatrix, zeros } from './helpers.js';

/** The reference's float32 metric, element by element. */
function refScore(w: Float32Array, s: ArrayLike<number>, cols: number, i: number): number {
  const f = Math.fround;
  return f(Math.abs(w[i]) * f(Math.sqrt(f(s[i % cols]))));
}

function refWandaUnstructured(w: Float32Array, s: ArrayLike<number>, rows: number, cols: number, p: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  const k = Math.floor(cols * p);
  for (let r = 0; r < rows; r++) {
    const order = stableOrder((j) => refScore(w, s, cols, r * cols + j), cols);
    for (const j of order.slice(0, k)) mask[r * cols + j] = 1;
  }
  return mask;
}

function refWandaNM(w: Float32Array, s: ArrayLike<number>, rows: number, cols: number, n: number, m: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      const width = Math.min(m, cols - g);
      const order = stableOrder((j) => refScore(w, s, cols, r * cols + g + j), width);
      for (const j of order.slice(0, Math.min(n, width))) mask[r * cols + g + j] = 1;
    }
  }
  return mask;
}

function stats(cols: number, seed: number, tied: boolean, f64: boolean): Float32Array | Float64Array {
  const r = lcg(seed);
  const values = Array.from({ length: cols }, () => (tied ? [0.25, 1, 4][Math.floor(r() * 3)] : 0.01 + 3 * r() * r()));
  return f64 ? Float64Array.from(values) : Float32Array.from(values);
}

function check(rows: number, cols: number, seed: number, tied: boolean, spec: { kind: 'unstructured'; sparsity: number } | { kind: 'nm'; n: number; m: number }) {
  const w = tied ? tiedMatrix(rows, cols, seed) : randomMatrix(rows, cols, seed);
  const s = stats(cols, seed + 1, tied, seed % 2 === 0);
  const orig = Float32Array.from(w);
  const mask = spec.kind === 'nm' ? refWandaNM(orig, s, rows, cols, spec.n, spec.m) : refWandaUnstructured(orig, s, rows, cols, spec.sparsity);
  const res = wandaPrune({ data: w, rows, cols }, s, spec);
  let mismatches = 0;
  for (let i = 0; i < w.length; i++) if (w[i] !== (mask[i] ? 0 : orig[i])) mismatches++;
  expect(mismatches).toBe(0);
  expect(res.pruned).toBe(zeros(w));
  expect(res.total).toBe(rows * cols);
  return { w, orig, res };
}

describe('Wanda, unstructured', () => {
  for (const [rows, cols, p, tied] of [[32, 64, 0.5, false], [17, 93, 0.6, false], [40, 50, 0.5, true], [25, 31, 0.3, true], [8, 200, 0.9, true]] as const) {
    it(`same mask as the reference on ${rows}x${cols}, p=${p}${tied ? ', with ties' : ''}`, () => {
      const { w } = check(rows, cols, rows + cols, tied, { kind: 'unstructured', sparsity: p });
      if (!tied) {
        // Per row exactly int(cols·p), so the realised sparsity is the reference's, not more.
        for (let r = 0; r < rows; r++) expect(zeros(w.subarray(r * cols, (r + 1) * cols))).toBe(Math.floor(cols * p));
      }
    });
  }

  it('ties break by index: equal scores prune the leftmost first', () => {
    const w = Float32Array.from([3, 1, 1, 1, 1, 2, /* row 2 */ 1, 1, 1, 1, 1, 1]);
    wandaPrune({ data: w, rows: 2, cols: 6 }, new Float32Array(6).fill(1), { kind: 'unstructured', sparsity: 0.5 });
    expect(Array.from(w)).toEqual([3, 0, 0, 0, 1, 2, 0, 0, 0, 1, 1, 1]);
  });

  it('uses the activation norms, not only |W|', () => {
    // Equal weights: the column with the smaller input norm goes.
    const w = Float32Array.from([1, 1, 1, 1]);
    wandaPrune({ data: w, rows: 1, cols: 4 }, Float64Array.from([9, 1, 4, 16]), { kind: 'unstructured', sparsity: 0.5 });
    expect(Array.from(w)).toEqual([1, 0, 0, 1]);
  });
});

describe('Wanda, N:M', () => {
  for (const [rows, cols, n, m, tied] of [[16, 64, 2, 4, false], [16, 64, 4, 8, false], [20, 48, 2, 4, true], [12, 30, 2, 4, true], [12, 30, 3, 4, false], [9, 44, 4, 8, true], [5, 19, 1, 2, false]] as const) {
    it(`${n}:${m} on ${rows}x${cols}${tied ? ' with ties' : ''}: same mask, at least N zeros per group`, () => {
      const { w, orig, res } = check(rows, cols, 3 * rows + cols, tied, { kind: 'nm', n, m });
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < cols; g += m) {
          const width = Math.min(m, cols - g);
          const group = w.subarray(r * cols + g, r * cols + g + width);
          const before = zeros(orig.subarray(r * cols + g, r * cols + g + width));
          // Exactly min(N, width) unless the group already had more zeros (those score 0 and go first).
          expect(zeros(group)).toBe(Math.max(Math.min(n, width), before));
        }
      }
      expect((res.notes ?? []).length).toBe(cols % m ? 1 : 0);
    });
  }
});
