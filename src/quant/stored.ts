/**
 * Quantization grids in the layout a weight is stored in. A RowGrid (grid.ts) has one grid per output
 * row of the nn.Linear view [out, in]; most weights are stored that way (one grid per stored row, axis 0),
 * but GPT-2's Conv1D weights are stored [in, out], so their grids run along the stored columns (axis 1).
 */
import { encodeFloat, decodeFloat32, type DType } from '../io/dtype.js';
import { codeOf, type RowGrid } from './grid.js';

export interface StoredGrid {
  bits: number;
  /** 0: one grid per stored row (scale/zero_point shape [R, 1]); 1: one per stored column ([1, C]). */
  axis: 0 | 1;
  scale: Float32Array;
  zero: Uint8Array;
}

/** A quantized 2-D weight in its stored layout: dense codes [rows · cols] on `grid`. */
export interface QuantizedWeight {
  rows: number;
  cols: number;
  grid: StoredGrid;
  codes: Uint8Array;
}

/** The stored-layout grid of a linear layer whose nn.Linear view is stored transposed or not. */
export function storedGridOf(grid: RowGrid, transposed: boolean): StoredGrid {
  return { bits: grid.bits, axis: transposed ? 1 : 0, scale: grid.scale, zero: grid.zero };
}

/** Shape of the stored scale / zero_point tensors. */
export function gridShape(g: StoredGrid): [number, number] {
  return g.axis === 0 ? [g.scale.length, 1] : [1, g.scale.length];
}

/** Codes of stored-layout values, rounding each to the nearest level of its channel's grid. */
export function codesOf(values: Float32Array, rows: number, cols: number, g: StoredGrid): Uint8Array {
  const grid: RowGrid = { bits: g.bits, maxq: 2 ** g.bits - 1, rows: g.scale.length, scale: g.scale, zero: g.zero };
  const codes = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) codes[r * cols + c] = codeOf(grid, g.axis === 0 ? r : c, values[r * cols + c]);
  }
  return codes;
}

/** Zero point of every element: [rows · cols] (the fill value of positions the bitmask leaves out). */
export function zeroPointsOf(rows: number, cols: number, g: StoredGrid): Uint8Array {
  const z = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) z[r * cols + c] = g.zero[g.axis === 0 ? r : c];
  return z;
}

/**
 * The dense weight of a quantized one, as bytes of `dtype` and as float32: value = scale · (code - zero)
 * rounded to float32, then to `dtype` (F16/BF16 round once more; the float32 view is of the rounded bytes).
 */
export function dequantize(q: QuantizedWeight, dtype: DType): { bytes: Uint8Array; values: Float32Array } {
  const { rows, cols, grid: g, codes } = q;
  const v = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const ch = g.axis === 0 ? r : c;
      v[r * cols + c] = g.scale[ch] * (codes[r * cols + c] - g.zero[ch]);
    }
  }
  switch (dtype) {
    case 'F32':
      return { bytes: new Uint8Array(v.buffer), values: v };
    case 'F16':
    case 'BF16': {
      const bytes = encodeFloat(v, dtype);
      return { bytes, values: decodeFloat32(bytes, dtype) };
    }
    case 'F64': {
      const d = Float64Array.from(v);
      return { bytes: new Uint8Array(d.buffer), values: v };
    }
    default:
      throw new RangeError(`quantized weights cannot be dequantized to ${dtype} (a float dtype is needed)`);
  }
}

/** Round every stored-layout value to the nearest level of its channel's grid, in place (round-to-nearest). */
export function quantizeStoredInPlace(values: Float32Array, rows: number, cols: number, g: StoredGrid): void {
  const codes = codesOf(values, rows, cols, g);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const ch = g.axis === 0 ? r : c;
      values[r * cols + c] = g.scale[ch] * (codes[r * cols + c] - g.zero[ch]);
    }
  }
}
