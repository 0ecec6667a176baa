/**
 * Magnitude pruning (Wanda repository, prune_magnitude): score |W|, no calibration.
 *
 * Unstructured: one threshold per matrix, thresh = sort(|W|.flatten())[int(numel · p)], and every
 * entry with |W| <= thresh is pruned. Because of `<=`, ties at the threshold (e.g. many zeros already)
 * prune more than p, exactly as the reference does. N:M: the N smallest |W| in each group (nm.ts).
 */
import { type PruneResult, type SparsitySpec, type Weight, checkSpec, checkWeight, countZeros, tailNote } from './spec.js';
import { kthSmallest } from './select.js';
import { nmMask } from './nm.js';
import type { PruneMethod } from './method.js';

export const magnitude: PruneMethod = { statistic: 'none', prune: (w, _input, spec) => magnitudePrune(w, spec) };

export function magnitudePrune(w: Weight, spec: SparsitySpec): PruneResult {
  checkWeight(w);
  checkSpec(spec);
  const a = w.data;
  const total = a.length;
  if (total === 0) return { pruned: 0, total };
  if (spec.kind === 'nm') {
    const scores = new Float32Array(total);
    for (let k = 0; k < total; k++) scores[k] = Math.abs(a[k]);
    const mask = nmMask(scores, w.rows, w.cols, spec.n, spec.m);
    for (let k = 0; k < total; k++) if (mask[k]) a[k] = 0;
    const notes = tailNote(w.cols, spec);
    return { pruned: countZeros(a), total, ...(notes.length ? { notes } : {}) };
  }
  const scratch = new Float32Array(total);
  for (let k = 0; k < total; k++) {
    const v = Math.abs(a[k]);
    scratch[k] = v !== v ? Infinity : v; // torch sorts NaN last
  }
  // Python's int(numel * p) on doubles; min() only guards p so close to 1 that the product rounds up.
  const index = Math.min(Math.floor(total * spec.sparsity), total - 1);
  const thresh = kthSmallest(scratch, index);
  for (let k = 0; k < total; k++) if (Math.abs(a[k]) <= thresh) a[k] = 0; // NaN <= x is false: kept, as in torch
  return { pruned: countZeros(a), total };
}
