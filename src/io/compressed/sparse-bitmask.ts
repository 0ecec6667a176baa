/**
 * The sparse-bitmask layout of a [rows, cols] tensor: a packed row bitmask of the stored positions,
 * row_offsets (where each row's values start in the flat list of stored values) and the values
 * themselves. Reading checks that the three agree, so a damaged file fails with a precise message
 * instead of silently producing wrong weights.
 */
import type { ShearsError } from '../../errors.js';
import { bitmaskRowBytes, firstRowWithPaddingBits, packBitmask, rowPopcounts, unpackBitmask } from './bitmask.js';
import { countSet, gatherElements, nonzeroMask, scatterElements, type ItemSize } from './elements.js';
import type { Part } from './names.js';

/** Builds the error for a problem found in one part of a compressed weight (the caller adds file and name). */
export type Complain = (part: Part, problem: string) => ShearsError;

/** Exclusive prefix sum of a mask's per-row counts: [rows]. */
export function rowOffsetsOf(mask: Uint8Array, rows: number, cols: number): BigInt64Array {
  const out = new BigInt64Array(rows);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    out[r] = BigInt(total);
    for (let c = r * cols, end = c + cols; c < end; c++) total += mask[c];
  }
  return out;
}

export interface SparseBitmaskParts {
  bitmask: Uint8Array;
  rowOffsets: BigInt64Array;
  /** Stored elements, row-major: [count · itemSize] bytes. */
  compressed: Uint8Array;
  count: number;
}

/** Compress a dense tensor's bytes (elements of `itemSize` bytes, [rows, cols]). */
export function encodeSparseBitmask(dense: Uint8Array, itemSize: ItemSize, rows: number, cols: number): SparseBitmaskParts {
  if (dense.byteLength !== rows * cols * itemSize) throw new RangeError(`${dense.byteLength} bytes is not a ${rows}x${cols} tensor of ${itemSize}-byte elements`);
  const mask = nonzeroMask(dense, itemSize);
  const count = countSet(mask);
  return { bitmask: packBitmask(mask, rows, cols), rowOffsets: rowOffsetsOf(mask, rows, cols), compressed: gatherElements(dense, itemSize, mask, count), count };
}

/**
 * Check a bitmask against its shape and (when given) its row_offsets, and unpack it: the [rows, cols] 0/1
 * mask and the number of stored values it calls for.
 */
export function readBitmask(bitmask: Uint8Array, rowOffsets: BigInt64Array | null, rows: number, cols: number, complain: Complain): { mask: Uint8Array; count: number } {
  const rb = bitmaskRowBytes(cols);
  if (bitmask.length !== rows * rb) throw complain('bitmask', `has ${bitmask.length} bytes but shape [${rows}, ${cols}] needs [${rows}, ${rb}]`);
  const pad = firstRowWithPaddingBits(bitmask, rows, cols);
  if (pad >= 0) throw complain('bitmask', `row ${pad} has bits set beyond column ${cols - 1}`);
  const counts = rowPopcounts(bitmask, rows, cols);
  let total = 0;
  if (rowOffsets) {
    if (rowOffsets.length !== rows) throw complain('row_offsets', `has ${rowOffsets.length} entries but the weight has ${rows} rows`);
    for (let r = 1; r < rows; r++) {
      if (rowOffsets[r] < rowOffsets[r - 1]) {
        throw complain('row_offsets', `is not monotone: row ${r} starts at ${rowOffsets[r]}, before row ${r - 1} (${rowOffsets[r - 1]})`);
      }
    }
    for (let r = 0; r < rows; r++) {
      const off = rowOffsets[r];
      if (off !== BigInt(total)) {
        throw complain('row_offsets', `row ${r} starts at ${off} but the bitmask rows before it hold ${total} values`);
      }
      total += counts[r];
    }
  } else {
    for (let r = 0; r < rows; r++) total += counts[r];
  }
  return { mask: unpackBitmask(bitmask, rows, cols), count: total };
}

/** Rebuild the dense bytes of a sparse-bitmask tensor, checking every part against the others. */
export function decodeSparseBitmask(
  parts: { bitmask: Uint8Array; rowOffsets: BigInt64Array; compressed: Uint8Array },
  itemSize: ItemSize,
  rows: number,
  cols: number,
  complain: Complain,
): Uint8Array {
  const { mask, count } = readBitmask(parts.bitmask, parts.rowOffsets, rows, cols, complain);
  const values = parts.compressed.byteLength / itemSize;
  if (values !== count) throw complain('compressed', `holds ${values} values but the bitmask has ${count} set bits`);
  return scatterElements(parts.compressed, itemSize, mask);
}
