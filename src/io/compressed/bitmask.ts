/**
 * Row bitmasks as compressed-tensors stores them: a [rows, cols] boolean mask packed along each row into
 * ceil(cols / 8) bytes, little-endian within a byte — column c of a row is bit (c % 8) of byte
 * floor(c / 8), i.e. numpy.packbits(mask, axis=-1, bitorder="little"). Each row starts on a fresh byte;
 * the unused high bits of a row's last byte are 0.
 */

/** Bytes per packed row. */
export function bitmaskRowBytes(cols: number): number {
  return Math.ceil(cols / 8);
}

/** Set bits of every byte value (popcount table). */
const POPCOUNT = (() => {
  const t = new Uint8Array(256);
  for (let i = 1; i < 256; i++) t[i] = (i & 1) + t[i >> 1];
  return t;
})();

/** Pack a row-major 0/1 mask ([rows, cols], any non-zero byte = set) into [rows, ceil(cols/8)] bytes. */
export function packBitmask(mask: Uint8Array, rows: number, cols: number): Uint8Array {
  if (mask.length !== rows * cols) throw new RangeError(`mask has ${mask.length} entries, not ${rows}x${cols}`);
  const rb = bitmaskRowBytes(cols);
  const out = new Uint8Array(rows * rb);
  for (let r = 0; r < rows; r++) {
    const m = r * cols;
    const o = r * rb;
    for (let c = 0; c < cols; c++) if (mask[m + c] !== 0) out[o + (c >> 3)] |= 1 << (c & 7);
  }
  return out;
}

/** Unpack [rows, ceil(cols/8)] packed bytes into a row-major 0/1 mask [rows, cols]. */
export function unpackBitmask(packed: Uint8Array, rows: number, cols: number): Uint8Array {
  const rb = bitmaskRowBytes(cols);
  if (packed.length !== rows * rb) throw new RangeError(`packed mask has ${packed.length} bytes, not ${rows}x${rb}`);
  const out = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * rb;
    const m = r * cols;
    for (let c = 0; c < cols; c++) out[m + c] = (packed[o + (c >> 3)] >> (c & 7)) & 1;
  }
  return out;
}

/** Set bits in each packed row: [rows] counts. */
export function rowPopcounts(packed: Uint8Array, rows: number, cols: number): Int32Array {
  const rb = bitmaskRowBytes(cols);
  const counts = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let k = r * rb, end = k + rb; k < end; k++) n += POPCOUNT[packed[k]];
    counts[r] = n;
  }
  return counts;
}

/** The first row whose last byte has bits set beyond column `cols`, or -1 (numpy pads with zeros). */
export function firstRowWithPaddingBits(packed: Uint8Array, rows: number, cols: number): number {
  const tail = cols & 7;
  if (tail === 0) return -1;
  const rb = bitmaskRowBytes(cols);
  const unused = 0xff & ~((1 << tail) - 1);
  for (let r = 0; r < rows; r++) if ((packed[r * rb + rb - 1] & unused) !== 0) return r;
  return -1;
}
