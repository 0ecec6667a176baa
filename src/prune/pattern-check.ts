/**
 * N:M semi-structured sparsity check: in a row-major [rows, cols] weight, every group of M consecutive
 * elements of a row (columns 0..M-1, M..2M-1, ...) must hold at least N exact zeros. For HF nn.Linear
 * weights [out, in] that makes the groups run along the input dimension, as sparse tensor cores need.
 */

/** True when every aligned group of `m` consecutive entries of each row has at least `n` zeros. A row
 *  length that is not a multiple of `m` cannot be N:M sparse, so it gives false. */
export function nmSatisfied(weight: Float32Array, rows: number, cols: number, n: number, m: number): boolean {
  if (!(Number.isInteger(n) && Number.isInteger(m) && m > 0 && n >= 0 && n <= m)) {
    throw new RangeError(`invalid N:M pattern ${n}:${m}`);
  }
  if (weight.length !== rows * cols) throw new RangeError(`weight has ${weight.length} values, not ${rows}x${cols}`);
  if (cols % m !== 0) return false;
  // Rows are contiguous and cols is a multiple of m, so the groups are simply consecutive runs of m.
  for (let g = 0; g < weight.length; g += m) {
    let zeros = 0;
    for (let k = g; k < g + m; k++) if (weight[k] === 0) zeros++;
    if (zeros < n) return false;
  }
  return true;
}

/**
 * The rule shears prunes by when a row length is not a multiple of m: the last, shorter group of t
 * columns must hold min(n, t) zeros (see src/prune/nm.ts). Full groups need n zeros, as above.
 */
export function nmHoldsWithTail(w: Float32Array, rows: number, cols: number, n: number, m: number): boolean {
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      const end = Math.min(g + m, cols);
      let z = 0;
      for (let c = g; c < end; c++) if (w[r * cols + c] === 0) z++;
      if (z < Math.min(n, end - g)) return false;
    }
  }
  return true;
}
