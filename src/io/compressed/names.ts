/**
 * The weight formats and the names of the stored tensors ("parts") that replace one compressed weight.
 *
 * For a 2-D weight `W` named `<name>` (e.g. "model.layers.0.mlp.down_proj.weight"), shape [R, C]:
 *
 * sparse-bitmask (compressed-tensors' BitmaskCompressor), parts named `<name>.<part>`:
 *   `<name>.shape`        I64 [2]             R, C
 *   `<name>.bitmask`      U8  [R, ceil(C/8)]  stored positions, numpy.packbits(axis=-1, bitorder="little")
 *   `<name>.row_offsets`  I64 [R]             exclusive prefix sum of the per-row set-bit counts
 *   `<name>.compressed`   W's dtype [nnz]     the stored values, row-major
 *
 * sparse-24-bitmask (compressed-tensors' Sparse24BitMaskCompressor), parts named `<prefix>.<part>` where
 * `<prefix>` is `<name>` without its ".weight" suffix:
 *   `<prefix>.shape`      I64 [2, 1]          R, C (C a multiple of 4)
 *   `<prefix>.bitmask`    U8  [R, ceil(C/8)]  exactly 2 positions of every aligned group of 4
 *   `<prefix>.compressed` W's dtype [R, C/2]  the values at those positions, row-major
 *
 * Quantized variants (shears' own; config.json says `"quant_method": "shears"`): the values are integer
 * codes on a per-output-channel grid, value = scale · (code - zero_point), and `.compressed` is replaced by
 *   `.codes`       U8  codes packed `bits` per code, low bits first (4-bit: two per byte, even index in
 *                      the low nibble): sparse-bitmask [ceil(nnz·bits/8)] in row-major order;
 *                      sparse-24-bitmask [R, C/2·bits/8], each row packed on its own
 *   `.scale`       F32 [R, 1] (one grid per stored row) or [1, C] (per stored column: the output channels
 *                      of a GPT-2 Conv1D weight stored [in, out])
 *   `.zero_point`  U8  same shape as `.scale`
 * In sparse-bitmask the bitmask marks the codes that differ from the zero point (the non-zero weights);
 * the others are not stored. `bits` and the dtype of the dense weights come from config.json.
 *
 * Stored positions are elements whose bit pattern is not all zeros (so -0.0 is kept as a value and the
 * round trip is bit-exact); sparse-24 pads groups with fewer than 2 such elements with stored zeros.
 */

export type SparseFormat = 'sparse-bitmask' | 'sparse-24-bitmask';
export type WeightFormat = 'dense' | SparseFormat;
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['dense', 'sparse-bitmask', 'sparse-24-bitmask'];
export const SPARSE_FORMATS: readonly SparseFormat[] = ['sparse-bitmask', 'sparse-24-bitmask'];

export type Part = 'shape' | 'bitmask' | 'row_offsets' | 'compressed' | 'codes' | 'scale' | 'zero_point';
/** Every suffix a part can have (for finding parts whose weight is missing its bitmask). */
export const PARTS: readonly Part[] = ['shape', 'bitmask', 'row_offsets', 'compressed', 'codes', 'scale', 'zero_point'];

export function isSparseFormat(s: unknown): s is SparseFormat {
  return s === 'sparse-bitmask' || s === 'sparse-24-bitmask';
}

/** The parts a weight has in `format`, quantized or not. */
export function partsOf(format: SparseFormat, quantized: boolean): Part[] {
  const base: Part[] = format === 'sparse-bitmask' ? ['shape', 'bitmask', 'row_offsets'] : ['shape', 'bitmask'];
  return quantized ? [...base, 'codes', 'scale', 'zero_point'] : [...base, 'compressed'];
}

/** The prefix of a weight's parts: the weight name, minus ".weight" for sparse-24-bitmask. */
export function partPrefix(weight: string, format: SparseFormat): string {
  if (format === 'sparse-24-bitmask' && weight.endsWith('.weight')) return weight.slice(0, -'.weight'.length);
  return weight;
}

export function partName(weight: string, format: SparseFormat, part: Part): string {
  return `${partPrefix(weight, format)}.${part}`;
}

/** The weight a part prefix belongs to (inverse of partPrefix). */
export function weightOfPrefix(prefix: string, format: SparseFormat): string {
  return format === 'sparse-24-bitmask' ? `${prefix}.weight` : prefix;
}
