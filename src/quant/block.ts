/**
 * `prune --wbits`: quantize a pruned block's linear weights onto per-output-row grids.
 *
 * Each grid comes from the layer's original (unpruned) weight, as the SparseGPT reference's
 * `find_params(W)` does before pruning. Rounding is to the nearest level, so for SparseGPT — which
 * already quantized inside its column loop on the same grid — it changes nothing (a value on the grid
 * rounds to itself), and for the other methods it is round-to-nearest after pruning. Zeros stay zero.
 */
import type { LinearLayer, Weights } from '../arch/types.js';
import { findRowGrid } from './grid.js';
import { quantizeStoredInPlace, storedGridOf, type StoredGrid } from './stored.js';

/**
 * Quantize `weights` (stored layout, in place) for every layer not skipped; returns each layer's grid
 * by tensor name. `original(tensor)` reads the unpruned stored weight.
 */
export function quantizeBlock(
  layers: readonly LinearLayer[],
  weights: Weights,
  original: (tensor: string) => Float32Array,
  bits: number,
  skipped: (layer: LinearLayer) => boolean,
): Map<string, StoredGrid> {
  const grids = new Map<string, StoredGrid>();
  for (const l of layers) {
    if (skipped(l)) continue;
    const whole = weights.get(l.tensor);
    if (!whole) throw new Error(`block weights lack "${l.tensor}"`);
    // A fused expert tensor holds several layers: each is quantized on its own grid (not kept: the
    // compressed formats store fused 3-D tensors unchanged, see export/targets.ts).
    const part = (a: Float32Array) => (l.part ? a.subarray(l.part.offset, l.part.offset + l.rows * l.cols) : a);
    const stored = part(whole);
    const orig = part(original(l.tensor));
    const view = l.transposed ? transpose(orig, l.cols, l.rows) : orig;
    const g = storedGridOf(findRowGrid(view, l.rows, l.cols, bits), l.transposed);
    const [rows, cols] = l.transposed ? [l.cols, l.rows] : [l.rows, l.cols];
    quantizeStoredInPlace(stored, rows, cols, g);
    if (!l.part) grids.set(l.tensor, g);
  }
  return grids;
}

/** [rows, cols] → [cols, rows]. */
function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}
