/**
 * The sparse-24-bitmask layout: a [rows, cols] tensor in which every aligned group of 4 consecutive
 * elements of a row holds at most 2 non-zeros is stored as exactly 2 kept elements per group
 * ([rows, cols/2], row-major) plus the packed bitmask of the kept positions. Groups with fewer than 2
 * non-zeros keep zeros at their lowest free positions (any choice decodes the same).
 */
import { packBitmask } from './bitmask.js';
import { gatherElements, nonzeroMask, scatterElements, type ItemSize } from './elements.js';
import { readBitmask, type Complain } from './sparse-bitmask.js';

/**
 * The kept-position mask ([rows, cols], exactly 2 of every group of 4) for a tensor whose non-zero mask is
 * `nonzero`, or null when some group has more than 2 non-zeros or cols is not a multiple of 4.
 */
export function twoFourMask(nonzero: Uint8Array, rows: number, cols: number): Uint8Array | null {
  if (cols % 4 !== 0 || nonzero.length !== rows * cols) return null;
  const keep = new Uint8Array(nonzero.length);
  for (let g = 0; g < nonzero.length; g += 4) {
    let n = nonzero[g] + nonzero[g + 1] + nonzero[g + 2] + nonzero[g + 3];
    if (n > 2) return null;
    for (let k = g; k < g + 4; k++) {
      if (nonzero[k]) keep[k] = 1;
      else if (n < 2) {
        keep[k] = 1;
        n++;
      }
    }
  }
  return keep;
}

/** Whether the dense bytes are exactly 2:4 sparse along rows (bit patterns; -0.0 counts as non-zero). */
export function isTwoFour(dense: Uint8Array, itemSize: ItemSize, rows: number, cols: number): boolean {
  return twoFourMask(nonzeroMask(dense, itemSize), rows, cols) !== null;
}

/** Compress dense 2:4 bytes; null when the tensor is not 2:4. */
export function encodeSparse24(dense: Uint8Array, itemSize: ItemSize, rows: number, cols: number): { bitmask: Uint8Array; compressed: Uint8Array } | null {
  const keep = twoFourMask(nonzeroMask(dense, itemSize), rows, cols);
  if (!keep) return null;
  return { bitmask: packBitmask(keep, rows, cols), compressed: gatherElements(dense, itemSize, keep, (rows * cols) / 2) };
}

/** Check a 2:4 bitmask (2 set bits in every group of 4) and unpack it. */
export function readBitmask24(bitmask: Uint8Array, rows: number, cols: number, complain: Complain): Uint8Array {
  if (cols % 4 !== 0) throw complain('shape', `gives ${cols} columns, not a multiple of 4 as sparse-24-bitmask needs`);
  const { mask } = readBitmask(bitmask, null, rows, cols, complain);
  for (let g = 0; g < mask.length; g += 4) {
    const n = mask[g] + mask[g + 1] + mask[g + 2] + mask[g + 3];
    if (n !== 2) {
      const r = Math.floor(g / cols);
      throw complain('bitmask', `row ${r}, columns ${g - r * cols}..${g - r * cols + 3} have ${n} set bits, not 2`);
    }
  }
  return mask;
}

/** Rebuild the dense bytes of a sparse-24-bitmask tensor. */
export function decodeSparse24(parts: { bitmask: Uint8Array; compressed: Uint8Array }, itemSize: ItemSize, rows: number, cols: number, complain: Complain): Uint8Array {
  const mask = readBitmask24(parts.bitmask, rows, cols, complain);
  const values = parts.compressed.byteLength / itemSize;
  if (values !== (rows * cols) / 2) throw complain('compressed', `holds ${values} values but a 2:4 [${rows}, ${cols}] weight keeps ${(rows * cols) / 2}`);
  return scatterElements(parts.compressed, itemSize, mask);
}
