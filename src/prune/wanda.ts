/**
 * Wanda (Sun et al. 2023; reference lib/prune.py prune_wanda): score_ij = |W_ij| · sqrt(s_j) with
 * s_j = (1/N) Σ_sequences Σ_tokens x_j² (stats.ts), no weight update.
 *
 * Unstructured: per output row, the first int(cols · p) indices of torch.sort(score_row, stable=True)
 * are pruned — exactly that many per row, ties in index order. N:M: the N lowest scores of each group
 * of M columns (nm.ts: ties in index order, tail groups lose min(N, width)).
 *
 * Precision: the reference holds scaler_row in float32 and multiplies in float32. We round s_j to
 * float32, take a float32 sqrt and a float32 product (Math.fround of the exact double results, which
 * is what IEEE float32 arithmetic gives), so masks match torch bit for bit, near-ties included.
 */
import { type PruneResult, type SparsitySpec, type Weight, checkSpec, checkWeight, countZeros, tailNote } from './spec.js';
import { markSmallestStable } from './select.js';
import { nmMask } from './nm.js';
import type { PruneMethod } from './method.js';

export const wanda: PruneMethod = { statistic: 'column-norms', prune: (w, input, spec) => wandaPrune(w, input.columnNorms(), spec) };

/** The float32 Wanda score matrix [rows, cols]. */
export function wandaScores(w: Weight, colSq: Float32Array | Float64Array): Float32Array {
  const { rows, cols, data } = w;
  if (colSq.length !== cols) throw new RangeError(`Wanda statistics have ${colSq.length} columns, the weight ${cols}`);
  const root = new Float32Array(cols);
  for (let j = 0; j < cols; j++) root[j] = Math.sqrt(Math.fround(colSq[j]));
  const scores = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let j = 0; j < cols; j++) scores[o + j] = Math.abs(data[o + j]) * root[j];
  }
  return scores;
}

export function wandaPrune(w: Weight, colSq: Float32Array | Float64Array, spec: SparsitySpec): PruneResult {
  checkWeight(w);
  checkSpec(spec);
  const { rows, cols, data } = w;
  const scores = wandaScores(w, colSq);
  let mask: Uint8Array;
  if (spec.kind === 'nm') {
    mask = nmMask(scores, rows, cols, spec.n, spec.m);
  } else {
    mask = new Uint8Array(rows * cols);
    const k = Math.min(Math.floor(cols * spec.sparsity), cols);
    const scratch = new Float32Array(cols);
    for (let r = 0; r < rows; r++) markSmallestStable(scores, r * cols, cols, k, mask, r * cols, scratch);
  }
  for (let i = 0; i < mask.length; i++) if (mask[i]) data[i] = 0;
  const notes = tailNote(cols, spec);
  return { pruned: countZeros(data), total: data.length, ...(notes.length ? { notes } : {}) };
}
