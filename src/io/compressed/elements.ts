/**
 * Element-wise work on raw tensor bytes, for any element size (1, 2, 4 or 8 bytes): which elements are
 * non-zero, and gathering / scattering elements by a mask. Working on bit patterns instead of float
 * values keeps the compressed formats exactly lossless for every dtype: an element counts as zero only
 * when all its bits are 0, so -0.0 and NaN are kept as stored values.
 */
import { ShearsError } from '../../errors.js';

/** Element sizes in bytes that the codecs handle. */
export type ItemSize = 1 | 2 | 4 | 8;

export function asItemSize(n: number): ItemSize {
  if (n === 1 || n === 2 || n === 4 || n === 8) return n;
  throw new ShearsError(`element size ${n} bytes is not supported by the compressed formats`);
}

/** Words of `bytes` (aligned copy if needed): one word per element, two Uint32 words for 8-byte elements. */
function words(bytes: Uint8Array, itemSize: ItemSize): Uint8Array | Uint16Array | Uint32Array {
  const w = itemSize === 8 ? 4 : itemSize;
  const b = bytes.byteOffset % w === 0 ? bytes : bytes.slice();
  if (b.byteLength % itemSize !== 0) throw new RangeError(`${b.byteLength} bytes is not a whole number of ${itemSize}-byte elements`);
  if (w === 1) return b;
  if (w === 2) return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  return new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

/** 1 where an element's bit pattern is not all zeros, else 0: [numel]. */
export function nonzeroMask(bytes: Uint8Array, itemSize: ItemSize): Uint8Array {
  const w = words(bytes, itemSize);
  if (itemSize === 8) {
    const n = w.length / 2;
    const m = new Uint8Array(n);
    for (let i = 0; i < n; i++) m[i] = (w[2 * i] | w[2 * i + 1]) !== 0 ? 1 : 0;
    return m;
  }
  const m = new Uint8Array(w.length);
  for (let i = 0; i < w.length; i++) m[i] = w[i] !== 0 ? 1 : 0;
  return m;
}

/** Number of set entries of a 0/1 mask. */
export function countSet(mask: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return n;
}

/** The elements at set mask positions, in order: [count · itemSize] bytes. */
export function gatherElements(bytes: Uint8Array, itemSize: ItemSize, mask: Uint8Array, count = countSet(mask)): Uint8Array {
  const src = words(bytes, itemSize);
  const per = itemSize === 8 ? 2 : 1;
  const out = new Uint8Array(count * itemSize);
  const dst = words(out, itemSize);
  let k = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] === 0) continue;
    if (k >= count) throw new RangeError(`mask has more than ${count} set entries`);
    if (per === 1) dst[k] = src[i];
    else {
      dst[2 * k] = src[2 * i];
      dst[2 * k + 1] = src[2 * i + 1];
    }
    k++;
  }
  if (k !== count) throw new RangeError(`mask has ${k} set entries, not ${count}`);
  return out;
}

/** A zero-filled tensor of `mask.length` elements with `values` placed, in order, at the set positions. */
export function scatterElements(values: Uint8Array, itemSize: ItemSize, mask: Uint8Array): Uint8Array {
  const src = words(values, itemSize);
  const per = itemSize === 8 ? 2 : 1;
  const out = new Uint8Array(mask.length * itemSize);
  const dst = words(out, itemSize);
  const count = src.length / per;
  let k = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] === 0) continue;
    if (k >= count) throw new RangeError(`mask has more set entries than the ${count} values`);
    if (per === 1) dst[i] = src[k];
    else {
      dst[2 * i] = src[2 * k];
      dst[2 * i + 1] = src[2 * k + 1];
    }
    k++;
  }
  if (k !== count) throw new RangeError(`mask has ${k} set entries but there are ${count} values`);
  return out;
}
