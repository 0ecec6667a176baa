/** The packed lower triangle of a Gram sum (engine/gram.ts) against float64 sums of the same rows. */
import { describe, expect, it } from 'vitest';
import { accumulatePacked, addUnfolded, gramChunks, packedLength, unfoldInPlace } from '../../src/engine/gram.js';
import { serial } from '../../src/engine/gemm.js';
import { randomMatrix } from '../prune/helpers.js';

describe('gramChunks', () => {
  it('70 columns at 300 values a chunk: rows 0–32, 32–64, 64–70 (at least 32 rows each), packed in order', () => {
    const c = gramChunks(70, 300);
    expect(c).toEqual([
      { r0: 0, r1: 32, offset: 0 },
      { r0: 32, r1: 64, offset: 32 * 32 },
      { r0: 64, r1: 70, offset: 32 * 32 + 32 * 64 },
    ]);
    expect(packedLength(c)).toBe(32 * 32 + 32 * 64 + 6 * 70);
  });

  for (const n of [1100, 2048, 5632, 11008]) {
    it(`${n} columns: chunks tile the rows, each output within 4 MiB (or 32 rows), packed within n²`, () => {
      const c = gramChunks(n);
      let r0 = 0;
      for (const k of c) {
        expect(k.r0).toBe(r0);
        expect((k.r1 - k.r0) * k.r1 <= 2 ** 20 || k.r1 - k.r0 === 32).toBe(true);
        r0 = k.r1;
      }
      expect(r0).toBe(n);
      expect(packedLength(c) <= n * n).toBe(true);
    });
  }
});

function reference(n: number, batches: Float32Array[]): Float64Array {
  const want = new Float64Array(n * n);
  for (const x of batches) {
    for (let t = 0; t < x.length / n; t++) {
      for (let i = 0; i < n; i++) {
        const xi = x[t * n + i];
        for (let j = 0; j < n; j++) want[i * n + j] += xi * x[t * n + j];
      }
    }
  }
  return want;
}

function worstRelative(h: Float32Array, want: Float64Array, n: number): number {
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, Math.abs(want[i * n + i]));
  let worst = 0;
  for (let k = 0; k < n * n; k++) worst = Math.max(worst, Math.abs(h[k] - want[k]));
  return worst / maxDiag;
}

describe('accumulatePacked', () => {
  it('1100 columns (two chunks), two batches: unfolded in place to the full, exactly symmetric Σ xᵀx', async () => {
    const n = 1100;
    const chunks = gramChunks(n);
    expect(chunks.length).toBe(2);
    const h = new Float32Array(n * n);
    const batches = [randomMatrix(40, n, 1), randomMatrix(23, n, 2)];
    for (const x of batches) await serial(() => accumulatePacked(h, n, chunks, x, x.length / n));
    unfoldInPlace(h, n, chunks);
    expect(worstRelative(h, reference(n, batches), n)).toBeLessThan(1e-5);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) if (h[i * n + j] !== h[j * n + i]) throw new Error(`asymmetric at ${i},${j}`);
  });

  it('adds the unfolded triangle into a matrix that is not symmetric (70 columns, three chunks)', async () => {
    const n = 70;
    const chunks = gramChunks(n, 300);
    const packed = new Float32Array(packedLength(chunks));
    const x = randomMatrix(9, n, 3);
    await serial(() => accumulatePacked(packed, n, chunks, x, 9));
    const h = randomMatrix(n, n, 4);
    const want = reference(n, [x]);
    for (let k = 0; k < n * n; k++) want[k] += h[k];
    addUnfolded(h, n, packed, chunks);
    expect(worstRelative(h, want, n)).toBeLessThan(1e-5);
  });

  it('refuses a packed array too short for its chunks and an x of the wrong size', async () => {
    const chunks = gramChunks(70, 300);
    await expect(serial(() => accumulatePacked(new Float32Array(10), 70, chunks, new Float32Array(70), 1))).rejects.toThrow(/its chunks need 3492/);
    await expect(serial(() => accumulatePacked(new Float32Array(4900), 70, chunks, new Float32Array(69), 1))).rejects.toThrow(/expected 1×70/);
  });
});
