/**
 * One weight into the stored tensors of a format (names and layouts: io/compressed/names.ts), or null
 * when it stays dense: an unquantized weight that bitmask compression would not make smaller, or a weight
 * that is not exactly 2:4 for sparse-24-bitmask.
 */
import { dtypeSize, type DType } from '../io/dtype.js';
import { asItemSize } from '../io/compressed/elements.js';
import { partName, type Part, type SparseFormat } from '../io/compressed/names.js';
import { encodeQuantized24, encodeQuantizedBitmask } from '../io/compressed/quantized.js';
import { encodeSparseBitmask } from '../io/compressed/sparse-bitmask.js';
import { encodeSparse24 } from '../io/compressed/sparse24.js';
import { gridShape, type QuantizedWeight } from '../quant/stored.js';

/** A weight as the encoder gets it: dense bytes of its dtype, or quantized codes (dtype = dense dtype). */
export type WeightSource =
  | { kind: 'dense'; dtype: DType; rows: number; cols: number; bytes: Uint8Array }
  | { kind: 'quantized'; dtype: DType; q: QuantizedWeight };

export interface PartTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array | BigInt64Array | Float32Array;
}

function shapePart(name: string, format: SparseFormat, rows: number, cols: number): PartTensor {
  // compressed-tensors stores the 2:4 shape as a column ([2, 1]) and the bitmask one as a vector.
  return { name: partName(name, format, 'shape'), dtype: 'I64', shape: format === 'sparse-24-bitmask' ? [2, 1] : [2], data: BigInt64Array.from([BigInt(rows), BigInt(cols)]) };
}

export function encodeWeight(name: string, src: WeightSource, format: SparseFormat): PartTensor[] | null {
  const p = (part: Part, dtype: DType, shape: number[], data: PartTensor['data']): PartTensor => ({ name: partName(name, format, part), dtype, shape, data });
  if (src.kind === 'dense') {
    const { rows, cols, dtype, bytes } = src;
    const item = asItemSize(dtypeSize(dtype));
    const rb = Math.ceil(cols / 8);
    if (format === 'sparse-24-bitmask') {
      const e = encodeSparse24(bytes, item, rows, cols);
      if (!e) return null;
      return [shapePart(name, format, rows, cols), p('bitmask', 'U8', [rows, rb], e.bitmask), p('compressed', dtype, [rows, cols / 2], e.compressed)];
    }
    const e = encodeSparseBitmask(bytes, item, rows, cols);
    const stored = e.compressed.byteLength + e.bitmask.byteLength + 8 * rows + 16;
    if (stored >= bytes.byteLength) return null;
    return [shapePart(name, format, rows, cols), p('bitmask', 'U8', [rows, rb], e.bitmask), p('row_offsets', 'I64', [rows], e.rowOffsets), p('compressed', dtype, [e.count], e.compressed)];
  }
  const { q } = src;
  const { rows, cols } = q;
  const rb = Math.ceil(cols / 8);
  const gs = gridShape(q.grid);
  const grid = [p('scale', 'F32', gs, q.grid.scale), p('zero_point', 'U8', gs, q.grid.zero)];
  if (format === 'sparse-24-bitmask') {
    const e = encodeQuantized24(q);
    if (!e) return null;
    return [shapePart(name, format, rows, cols), p('bitmask', 'U8', [rows, rb], e.bitmask), p('codes', 'U8', [rows, e.codes.length / rows], e.codes), ...grid];
  }
  const e = encodeQuantizedBitmask(q);
  return [shapePart(name, format, rows, cols), p('bitmask', 'U8', [rows, rb], e.bitmask), p('row_offsets', 'I64', [rows], e.rowOffsets), p('codes', 'U8', [e.codes.length], e.codes), ...grid];
}
