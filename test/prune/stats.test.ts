/** The accumulators against direct float64 sums over the same batches. */
import { describe, expect, it } from 'vitest';
import { ColumnNormAccumulator, GramAccumulator, reuseStatisticStorage } from '../../src/prune/stats.js';
import { randomMatrix } from './helpers.js';

/** Batches of [tokens, cols] with uneven token and sequence counts, and activations of mixed scale. */
function batches(cols: number) {
  const shapes = [
    { tokens: 64, sequences: 1 },
    { tokens: 130, sequences: 2 },
    { tokens: 0, sequences: 0 },
    { tokens: 33, sequences: 1 },
  ];
  return shapes.map(({ tokens, sequences }, i) => {
    const x = randomMatrix(tokens, cols, 100 + i);
    for (let t = 0; t < tokens; t++) x[t * cols + (i % cols)] *= 20; // an outlier feature
    return { x, tokens, sequences };
  });
}

describe('GramAccumulator', () => {
  // One product over the whole matrix, and 70 columns in three row chunks of the lower triangle (32, 32 and 6
  // rows: packed, then unfolded in place).
  for (const [cols, chunkElems] of [[37, undefined], [70, 300]] as const) it(`gives (2/N) Σ XᵀX with N = sequences, symmetric, to float32 accuracy (${cols} columns${chunkElems ? ', lower triangle in chunks' : ''})`, async () => {
    const acc = new GramAccumulator(cols, { chunkElems });
    const ref = new Float64Array(cols * cols);
    let n = 0;
    for (const b of batches(cols)) {
      await acc.add(b.x, b.tokens, b.sequences);
      n += b.sequences;
      for (let t = 0; t < b.tokens; t++) {
        for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) ref[i * cols + j] += b.x[t * cols + i] * b.x[t * cols + j];
      }
    }
    expect(acc.sequences).toBe(4);
    expect(acc.tokens).toBe(227);
    // The batches are stacked for one larger product: H is complete only after finish().
    expect(() => acc.result()).toThrow(/before finish/);
    await acc.finish();
    const h = acc.result();
    let maxDiag = 0;
    for (let i = 0; i < cols; i++) maxDiag = Math.max(maxDiag, ref[i * cols + i] * (2 / n));
    for (let i = 0; i < cols * cols; i++) {
      expect(Math.abs(h[i] - (2 / n) * ref[i])).toBeLessThan(1e-5 * maxDiag);
    }
    for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) expect(Math.abs(h[i * cols + j] - h[j * cols + i])).toBeLessThan(1e-6 * maxDiag);
    if (chunkElems) for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) expect(h[i * cols + j]).toBe(h[j * cols + i]);
    // result() is final and stable: the layers sharing the input all read the same H.
    expect(acc.result()).toBe(h);
    await expect(acc.add(new Float32Array(cols), 1, 1)).rejects.toThrow(/after result/);
    // The last reader takes H widened to float64 in place: every value exactly the float32 one.
    const copy = Float32Array.from(h);
    const h64 = acc.takeFloat64();
    expect(h64).toBeInstanceOf(Float64Array);
    expect(h64.length).toBe(cols * cols);
    expect(h64.buffer).toBe(h.buffer);
    for (let i = 0; i < cols * cols; i++) expect(Object.is(h64[i], copy[i])).toBe(true);
    expect(() => acc.result()).toThrow(/after takeFloat64/);
  });

  it('is all zeros before any data, and checks batch shapes', async () => {
    const acc = new GramAccumulator(3);
    await expect(acc.add(new Float32Array(5), 2, 1)).rejects.toThrow(/not 2x3/);
    await acc.finish();
    expect(Array.from(acc.result())).toEqual(new Array(9).fill(0));
  });

  it('sums batches that overflow the row stack, and batches larger than it, without losing rows', async () => {
    // A stack of 8 rows; batches of 5, 5 (overflowing: split), 19 (larger than the stack after a flush), 3.
    const cols = 6;
    const acc = new GramAccumulator(cols, { stackRows: 8 });
    const ref = new Float64Array(cols * cols);
    for (const [tokens, seed] of [[5, 1], [5, 2], [19, 3], [3, 4]]) {
      const x = randomMatrix(tokens, cols, seed);
      await acc.add(x, tokens, 1);
      for (let t = 0; t < tokens; t++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) ref[i * cols + j] += x[t * cols + i] * x[t * cols + j];
    }
    await acc.finish();
    const h = acc.result();
    for (let i = 0; i < cols * cols; i++) expect(Math.abs(h[i] - (2 / 4) * ref[i])).toBeLessThan(1e-5);
    expect(acc.tokens).toBe(32);
  });
});

describe('GramAccumulator storage reuse (the prune driver, small models)', () => {
  // 70 columns in three packed chunks and 37 in one product: a released accumulator's buffer and stack,
  // holding the last block's H (and, after takeFloat64, its float64 form), serve the next one, which must
  // start from zero.
  for (const [cols, chunkElems] of [[37, undefined], [70, 300]] as const) it(`a reused buffer and stack give the same H as fresh ones (${cols} columns)`, async () => {
    reuseStatisticStorage(true);
    try {
      const first = new GramAccumulator(cols, { chunkElems, stackRows: 16 });
      await first.add(randomMatrix(40, cols, 7), 40, 2);
      await first.finish();
      first.takeFloat64().fill(123);
      first.release();
      const x = randomMatrix(29, cols, 8);
      const reused = new GramAccumulator(cols, { chunkElems, stackRows: 16 });
      await reused.add(x, 29, 1);
      await reused.finish();
      reuseStatisticStorage(false);
      const fresh = new GramAccumulator(cols, { chunkElems, stackRows: 16 });
      await fresh.add(x, 29, 1);
      await fresh.finish();
      expect(reused.result().buffer).toBe((first as unknown as { buffer: ArrayBuffer }).buffer);
      expect(Array.from(reused.result())).toEqual(Array.from(fresh.result()));
    } finally {
      reuseStatisticStorage(false);
    }
  });
});

describe('ColumnNormAccumulator', () => {
  it('gives s_j = (1/N) Σ x_j² with N = sequences', async () => {
    const cols = 29;
    const acc = new ColumnNormAccumulator(cols);
    const ref = new Float64Array(cols);
    let n = 0;
    for (const b of batches(cols)) {
      await acc.add(b.x, b.tokens, b.sequences);
      n += b.sequences;
      for (let t = 0; t < b.tokens; t++) for (let j = 0; j < cols; j++) ref[j] += b.x[t * cols + j] ** 2;
    }
    const s = acc.result();
    expect(s).toBeInstanceOf(Float64Array);
    // Each batch is summed in float32 (as torch does): relative error of a float32 sum of ≤ 130 squares.
    for (let j = 0; j < cols; j++) expect(Math.abs(s[j] / (ref[j] / n) - 1)).toBeLessThan(2e-6);
    expect(acc.sequences).toBe(4);
    await expect(acc.add(new Float32Array(3), 1, 1)).rejects.toThrow(/not 1x29/);
  });
});
