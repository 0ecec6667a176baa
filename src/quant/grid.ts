/**
 * Per-output-row asymmetric min-max integer grid, as the SparseGPT/GPTQ reference Quantizer configured
 * with perchannel=True, sym=False, mse=False and `find_params(W, weight=True)`:
 *
 *   xmin = min(min(row), 0), xmax = max(max(row), 0)   (the range always contains 0)
 *   a row of zeros gets xmin = -1, xmax = +1
 *   scale = (xmax - xmin) / maxq,  zero = round(-xmin / scale),  maxq = 2^bits - 1
 *   code(x) = clamp(round(x / scale) + zero, 0, maxq),  value(code) = scale · (code - zero)
 *
 * `round` is round-half-to-even (torch.round). Because the range contains 0, `zero` is an integer in
 * [0, maxq] and 0 maps to the code `zero` and back to exactly 0: pruned weights stay pruned.
 *
 * Precision: the reference computes in float32. Here `scale` is rounded to float32 once (it is what the
 * files store), divisions and rounding run in float64, and a dequantized value is the float32 nearest to
 * scale · (code - zero) — the same number float32 arithmetic gives, since that product of a float32 and
 * an integer below 2^9 is exact in float64. So a value is a pure function of (scale, zero, code) and a
 * file that stores them reproduces the weights bit for bit.
 */

/** The quantization grid of a [rows, cols] weight (nn.Linear layout: one grid per output row). */
export interface RowGrid {
  bits: number;
  /** 2^bits - 1: the largest code. */
  maxq: number;
  rows: number;
  /** Step per row, float32, > 0. */
  scale: Float32Array;
  /** Zero point per row: the code of 0, an integer in [0, maxq]. */
  zero: Uint8Array;
}

/** Bit widths the grid supports (codes fit a byte). */
export const GRID_BITS: readonly number[] = [2, 3, 4, 5, 6, 7, 8];

/** Round half to even, as torch.round / numpy.round. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // half-up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The grid of one row from its (already 0-extended) range. */
function rowParams(xmin: number, xmax: number, maxq: number): { scale: number; zero: number } {
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  let scale = Math.fround((xmax - xmin) / maxq);
  // Deliberate difference: a row whose range is a few subnormals would get scale 0 (the reference
  // divides by it); it is treated like a row of zeros instead.
  if (!(scale > 0) || !Number.isFinite(scale)) {
    if (!Number.isFinite(xmax - xmin)) throw new RangeError(`cannot quantize a row with non-finite values (range ${xmin}..${xmax})`);
    scale = Math.fround(2 / maxq);
  }
  const zero = Math.min(maxq, Math.max(0, roundHalfEven(-xmin / scale)));
  return { scale, zero };
}

/**
 * The grid of `w` ([rows, cols] row-major, nn.Linear layout), from its current values — call it on the
 * weight before pruning, as the reference does (`find_params` runs on the unpruned W).
 */
export function findRowGrid(w: ArrayLike<number>, rows: number, cols: number, bits: number): RowGrid {
  if (!GRID_BITS.includes(bits)) throw new RangeError(`quantization bits must be one of ${GRID_BITS.join(', ')} (got ${bits})`);
  if (w.length !== rows * cols) throw new RangeError(`weight has ${w.length} values, not ${rows}x${cols}`);
  const maxq = 2 ** bits - 1;
  const scale = new Float32Array(rows);
  const zero = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) {
    let lo = 0;
    let hi = 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) {
      const v = w[o + c];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const p = rowParams(lo, hi, maxq);
    scale[r] = p.scale;
    zero[r] = p.zero;
  }
  return { bits, maxq, rows, scale, zero };
}

/** A grid from stored parameters (checked): scale > 0 and finite, zero in [0, maxq]. */
export function gridFrom(bits: number, scale: Float32Array, zero: Uint8Array): RowGrid {
  if (!GRID_BITS.includes(bits)) throw new RangeError(`quantization bits must be one of ${GRID_BITS.join(', ')} (got ${bits})`);
  if (scale.length !== zero.length) throw new RangeError(`${scale.length} scales but ${zero.length} zero points`);
  const maxq = 2 ** bits - 1;
  for (let r = 0; r < scale.length; r++) {
    if (!(scale[r] > 0 && Number.isFinite(scale[r]))) throw new RangeError(`scale of row ${r} is ${scale[r]}, not a positive finite number`);
    if (zero[r] > maxq) throw new RangeError(`zero point of row ${r} is ${zero[r]}, above ${maxq} for ${bits}-bit codes`);
  }
  return { bits, maxq, rows: scale.length, scale, zero };
}

/** The code of x on row `row`'s grid (nearest level, clamped to [0, maxq]). */
export function codeOf(grid: RowGrid, row: number, x: number): number {
  const q = roundHalfEven(x / grid.scale[row]) + grid.zero[row];
  return q < 0 ? 0 : q > grid.maxq ? grid.maxq : q;
}

/** The value of `code` on row `row` (a float32 number; exactly 0 for code = zero point). */
export function valueOf(grid: RowGrid, row: number, code: number): number {
  return Math.fround(grid.scale[row] * (code - grid.zero[row]));
}

/**
 * x rounded to row `row`'s grid: the reference's quantize(x, scale, zero, maxq). This is what SparseGPT
 * calls per column inside its OBS loop (after masking); the result is a float32 number.
 */
export function quantizeValue(grid: RowGrid, row: number, x: number): number {
  return valueOf(grid, row, codeOf(grid, row, x));
}

/** Round-to-nearest every weight of w ([rows, cols], nn.Linear layout) onto its row's grid, in place. */
export function quantizeRowsInPlace(grid: RowGrid, w: Float32Array, cols: number): void {
  if (w.length !== grid.rows * cols) throw new RangeError(`weight has ${w.length} values, not ${grid.rows}x${cols}`);
  for (let r = 0; r < grid.rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) w[o + c] = quantizeValue(grid, r, w[o + c]);
  }
}
