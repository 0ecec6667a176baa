/**
 * Quantized weights in the sparse layouts: the codes take the place of the values. In sparse-bitmask
 * only codes different from their channel's zero point (the non-zero weights) are stored, packed
 * `bits` per code; in sparse-24-bitmask the 2 kept codes of each group of 4 are stored, each row packed
 * on its own ([rows, ceil(cols/2 · bits / 8)]).
 */
import { packBitmask } from './bitmask.js';
import { packCodes, packedCodeBytes, unpackCodes } from './codes.js';
import { countSet, gatherElements, scatterElements } from './elements.js';
import { readBitmask, rowOffsetsOf, type Complain } from './sparse-bitmask.js';
import { readBitmask24, twoFourMask } from './sparse24.js';
import { zeroPointsOf, type QuantizedWeight, type StoredGrid } from '../../quant/stored.js';

/** 1 where a code differs from its zero point. */
function nonzeroCodes(q: QuantizedWeight): Uint8Array {
  const z = zeroPointsOf(q.rows, q.cols, q.grid);
  const m = new Uint8Array(q.codes.length);
  for (let i = 0; i < m.length; i++) m[i] = q.codes[i] !== z[i] ? 1 : 0;
  return m;
}

export function encodeQuantizedBitmask(q: QuantizedWeight): { bitmask: Uint8Array; rowOffsets: BigInt64Array; codes: Uint8Array; count: number } {
  const mask = nonzeroCodes(q);
  const count = countSet(mask);
  const kept = gatherElements(q.codes, 1, mask, count);
  return { bitmask: packBitmask(mask, q.rows, q.cols), rowOffsets: rowOffsetsOf(mask, q.rows, q.cols), codes: packCodes(kept, q.grid.bits), count };
}

/** Check a codes tensor's size and that every code fits the grid. */
function unpackChecked(packed: Uint8Array, bits: number, count: number, complain: Complain): Uint8Array {
  const need = packedCodeBytes(count, bits);
  if (packed.length !== need) throw complain('codes', `has ${packed.length} bytes but ${count} codes of ${bits} bits need ${need}`);
  return unpackCodes(packed, bits, count);
}

export function decodeQuantizedBitmask(
  parts: { bitmask: Uint8Array; rowOffsets: BigInt64Array; codes: Uint8Array },
  grid: StoredGrid,
  rows: number,
  cols: number,
  complain: Complain,
): QuantizedWeight {
  const { mask, count } = readBitmask(parts.bitmask, parts.rowOffsets, rows, cols, complain);
  const kept = unpackChecked(parts.codes, grid.bits, count, complain);
  const codes = zeroPointsOf(rows, cols, grid);
  const placed = scatterElements(kept, 1, mask);
  for (let i = 0; i < codes.length; i++) if (mask[i]) codes[i] = placed[i];
  return { rows, cols, grid, codes };
}

/** Bytes of one packed row of kept codes. */
export function codes24RowBytes(cols: number, bits: number): number {
  return packedCodeBytes(cols / 2, bits);
}

/** 2:4 encoding of quantized codes, or null when some group has more than 2 codes off the zero point. */
export function encodeQuantized24(q: QuantizedWeight): { bitmask: Uint8Array; codes: Uint8Array } | null {
  const keep = twoFourMask(nonzeroCodes(q), q.rows, q.cols);
  if (!keep) return null;
  const kept = gatherElements(q.codes, 1, keep, (q.rows * q.cols) / 2);
  const half = q.cols / 2;
  const rb = codes24RowBytes(q.cols, q.grid.bits);
  const out = new Uint8Array(q.rows * rb);
  for (let r = 0; r < q.rows; r++) out.set(packCodes(kept.subarray(r * half, (r + 1) * half), q.grid.bits), r * rb);
  return { bitmask: packBitmask(keep, q.rows, q.cols), codes: out };
}

export function decodeQuantized24(parts: { bitmask: Uint8Array; codes: Uint8Array }, grid: StoredGrid, rows: number, cols: number, complain: Complain): QuantizedWeight {
  const mask = readBitmask24(parts.bitmask, rows, cols, complain);
  const half = cols / 2;
  const rb = codes24RowBytes(cols, grid.bits);
  if (parts.codes.length !== rows * rb) throw complain('codes', `has ${parts.codes.length} bytes but [${rows}, ${cols}] 2:4 codes of ${grid.bits} bits need [${rows}, ${rb}]`);
  const kept = new Uint8Array(rows * half);
  for (let r = 0; r < rows; r++) kept.set(unpackCodes(parts.codes.subarray(r * rb, (r + 1) * rb), grid.bits, half), r * half);
  const codes = zeroPointsOf(rows, cols, grid);
  const placed = scatterElements(kept, 1, mask);
  for (let i = 0; i < codes.length; i++) if (mask[i]) codes[i] = placed[i];
  return { rows, cols, grid, codes };
}
