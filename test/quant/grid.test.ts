/**
 * The per-row grid against a float64 transcription of the SparseGPT reference's Quantizer
 * (quant.py: configure(bits, perchannel=True, sym=False, mse=False); find_params(W, weight=True);
 * quantize(x, scale, zero, maxq) = scale · (clamp(round(x / scale) + zero, 0, maxq) - zero)).
 */
import { describe, expect, it } from 'vitest';
import { codeOf, findRowGrid, quantizeRowsInPlace, quantizeValue, valueOf } from '../../src/quant/grid.js';
import { gaussian, lcg } from '../prune/helpers.js';

/** torch.round: half to even. */
function roundEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Reference find_params for one row, in float64. */
function refParams(row: ArrayLike<number>, bits: number): { scale: number; zero: number; maxq: number; xmin: number } {
  const maxq = 2 ** bits - 1;
  let xmin = Math.min(0, ...Array.from(row));
  let xmax = Math.max(0, ...Array.from(row));
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  const scale = (xmax - xmin) / maxq;
  // + 0: an integer zero point has no sign (-xmin is -0 for an all-positive row).
  return { scale, zero: roundEven(-xmin / scale) + 0, maxq, xmin };
}

function refQuantize(x: number, p: { scale: number; zero: number; maxq: number }): number {
  const q = Math.min(p.maxq, Math.max(0, roundEven(x / p.scale) + p.zero));
  return p.scale * (q - p.zero);
}

/** How far x / scale is from a rounding tie (ties can flip between float32 and float64 arithmetic). */
function tieDistance(x: number): number {
  return Math.abs(x - Math.floor(x) - 0.5);
}

/** Rows with zeros (pruned), an all-positive row, an all-negative row and an all-zero row. */
function testMatrix(rows: number, cols: number, seed: number): Float32Array {
  const g = gaussian(lcg(seed));
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = g() * 0.05;
  for (let i = 0; i < w.length; i += 3) w[i] = 0;
  for (let c = 0; c < cols; c++) {
    w[0 * cols + c] = Math.abs(w[0 * cols + c]);
    w[1 * cols + c] = -Math.abs(w[1 * cols + c]);
    w[2 * cols + c] = 0;
  }
  return w;
}

describe('findRowGrid / quantizeValue vs the reference Quantizer', () => {
  for (const bits of [8, 4, 3, 2]) {
    it(`${bits} bits: scales, zero points and quantized values match`, () => {
      const [rows, cols] = [24, 96];
      const w = testMatrix(rows, cols, 100 + bits);
      const grid = findRowGrid(w, rows, cols, bits);
      expect(grid.maxq).toBe(2 ** bits - 1);
      let compared = 0;
      for (let r = 0; r < rows; r++) {
        const row = w.subarray(r * cols, (r + 1) * cols);
        const ref = refParams(row, bits);
        // The stored scale is the reference's rounded once to float32.
        expect(grid.scale[r]).toBe(Math.fround(ref.scale));
        if (tieDistance(-ref.xmin / ref.scale) > 1e-4) expect(grid.zero[r]).toBe(ref.zero);
        for (let c = 0; c < cols; c++) {
          const x = row[c];
          const ours = quantizeValue(grid, r, x);
          expect(Math.fround(ours)).toBe(ours); // a float32 number
          if (x === 0) {
            expect(ours).toBe(0);
            expect(refQuantize(x, ref)).toBe(0);
          }
          if (tieDistance(x / ref.scale) < 1e-4) continue;
          expect(Math.abs(ours - refQuantize(x, ref))).toBeLessThanOrEqual(1e-6 * ref.scale * ref.maxq);
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(0.95 * rows * cols);
    });
  }

  it('an all-zero row gets the reference range [-1, 1]: scale 2/maxq, zero round(1/scale)', () => {
    const g = findRowGrid(new Float32Array(8), 1, 8, 4);
    expect(g.scale[0]).toBe(Math.fround(2 / 15));
    // In float32, as the reference computes it, 1 / fround(2/15) is 7.4999995, which rounds to 7.
    expect(Math.fround(1 / Math.fround(2 / 15))).toBeLessThan(7.5);
    expect(g.zero[0]).toBe(7);
    expect(quantizeValue(g, 0, 0)).toBe(0);
  });

  it('rounds exact ties to even, as torch.round', () => {
    // Row range [-1, 2] with 2 bits: scale = 1 exactly, zero = 1.
    const row = Float32Array.from([-1, 0.5, 1.5, 2, -0.5, 0.25]);
    const g = findRowGrid(row, 1, row.length, 2);
    expect([g.scale[0], g.zero[0]]).toEqual([1, 1]);
    const ref = refParams(row, 2);
    const ours = Array.from(row, (x) => quantizeValue(g, 0, x));
    expect(ours).toEqual(Array.from(row, (x) => refQuantize(x, ref)));
    expect(ours).toEqual([-1, 0, 2, 2, 0, 0]);
  });

  it('values on the grid are fixed points and every code decodes to itself', () => {
    const [rows, cols] = [6, 40];
    const w = testMatrix(rows, cols, 9);
    for (const bits of [4, 8]) {
      const g = findRowGrid(w, rows, cols, bits);
      const q = w.slice();
      quantizeRowsInPlace(g, q, cols);
      const again = q.slice();
      quantizeRowsInPlace(g, again, cols);
      expect(Array.from(again)).toEqual(Array.from(q));
      for (let r = 0; r < rows; r++) for (let code = 0; code <= g.maxq; code++) expect(codeOf(g, r, valueOf(g, r, code))).toBe(code);
    }
  });

  it('rejects widths without a byte code and shape mismatches', () => {
    expect(() => findRowGrid(new Float32Array(4), 2, 2, 9)).toThrow(/bits must be one of/);
    expect(() => findRowGrid(new Float32Array(4), 3, 2, 4)).toThrow(/not 3x2/);
  });
});
