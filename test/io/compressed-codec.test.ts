import { describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { packBitmask, rowPopcounts, unpackBitmask } from '../../src/io/compressed/bitmask.js';
import { packCodes, unpackCodes } from '../../src/io/compressed/codes.js';
import { decodeQuantized24, decodeQuantizedBitmask, encodeQuantized24, encodeQuantizedBitmask } from '../../src/io/compressed/quantized.js';
import { decodeSparseBitmask, encodeSparseBitmask, type Complain } from '../../src/io/compressed/sparse-bitmask.js';
import { decodeSparse24, encodeSparse24 } from '../../src/io/compressed/sparse24.js';
import type { ItemSize } from '../../src/io/compressed/elements.js';
import type { QuantizedWeight } from '../../src/quant/stored.js';
import { lcg } from '../prune/helpers.js';
import { packbitsLittleRef } from './compressed-helpers.js';

const complain: Complain = (part, problem) => new ShearsError(`${part}: ${problem}`);

function randomMask(rows: number, cols: number, seed: number, density = 0.4): number[][] {
  const r = lcg(seed);
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => (r() < density ? 1 : 0)));
}

/** Random element bytes where about `zeros` of the elements are all-zero bit patterns. */
function randomElements(n: number, item: number, seed: number, zeros = 0.5): Uint8Array {
  const r = lcg(seed);
  const b = new Uint8Array(n * item);
  for (let i = 0; i < n; i++) {
    if (r() < zeros) continue;
    for (let k = 0; k < item; k++) b[i * item + k] = Math.floor(r() * 256);
    if (b.subarray(i * item, (i + 1) * item).every((x) => x === 0)) b[i * item] = 1;
  }
  return b;
}

describe('bitmask packing', () => {
  it('matches numpy.packbits(axis=-1, bitorder="little") on a fixed example', () => {
    // Computed with numpy 2.4: np.packbits(m, axis=-1, bitorder='little').tolist()
    const m = [
      [1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0],
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ];
    const numpy = [
      [141, 3],
      [0, 4],
      [255, 7],
    ];
    expect(packbitsLittleRef(m)).toEqual(numpy);
    expect(Array.from(packBitmask(Uint8Array.from(m.flat()), 3, 11))).toEqual(numpy.flat());
  });

  it('agrees with the independent reference on random masks, unpacks back and counts rows', () => {
    for (const [rows, cols, seed] of [
      [5, 172, 1],
      [7, 8, 2],
      [3, 1, 3],
      [4, 64, 4],
      [2, 13, 5],
    ]) {
      const m = randomMask(rows, cols, seed);
      const packed = packBitmask(Uint8Array.from(m.flat()), rows, cols);
      expect(Array.from(packed)).toEqual(packbitsLittleRef(m).flat());
      expect(Array.from(unpackBitmask(packed, rows, cols))).toEqual(m.flat());
      expect(Array.from(rowPopcounts(packed, rows, cols))).toEqual(m.map((row) => row.reduce((a, b) => a + b, 0)));
    }
  });
});

describe('code packing', () => {
  it('puts even codes in the low nibble', () => {
    expect(Array.from(packCodes(Uint8Array.from([1, 2, 3]), 4))).toEqual([0x21, 0x03]);
    expect(Array.from(packCodes(Uint8Array.from([3, 0, 1, 2, 1]), 2))).toEqual([3 | (0 << 2) | (1 << 4) | (2 << 6), 1]);
  });

  it('round-trips every width', () => {
    for (const bits of [1, 2, 4, 8]) {
      const r = lcg(bits);
      const codes = Uint8Array.from({ length: 37 }, () => Math.floor(r() * 2 ** bits));
      const packed = packCodes(codes, bits);
      expect(packed.length).toBe(Math.ceil((37 * bits) / 8));
      expect(Array.from(unpackCodes(packed, bits, 37))).toEqual(Array.from(codes));
    }
    expect(() => packCodes(Uint8Array.from([16]), 4)).toThrow(/does not fit 4 bits/);
  });
});

describe('sparse-bitmask values', () => {
  it('stores exactly the non-zero bit patterns, row offsets as an exclusive prefix sum, and decodes bit-exactly', () => {
    for (const item of [1, 2, 4, 8] as ItemSize[]) {
      const [rows, cols] = [6, 19];
      const dense = randomElements(rows * cols, item, 10 + item);
      const e = encodeSparseBitmask(dense, item, rows, cols);
      // Independent expectations, element by element.
      const nz: number[] = [];
      const perRow: number[] = [];
      for (let r = 0; r < rows; r++) {
        let n = 0;
        for (let c = 0; c < cols; c++) {
          const i = r * cols + c;
          if (dense.subarray(i * item, (i + 1) * item).some((b) => b !== 0)) {
            nz.push(i);
            n++;
          }
        }
        perRow.push(n);
      }
      expect(e.count).toBe(nz.length);
      expect(Array.from(e.compressed)).toEqual(nz.flatMap((i) => Array.from(dense.subarray(i * item, (i + 1) * item))));
      const offsets = perRow.map((_, r) => perRow.slice(0, r).reduce((a, b) => a + b, 0));
      expect(Array.from(e.rowOffsets, Number)).toEqual(offsets);
      expect(Array.from(decodeSparseBitmask(e, item, rows, cols, complain))).toEqual(Array.from(dense));
    }
  });

  it('keeps -0.0 and NaN as stored values', () => {
    const v = Float32Array.from([0, -0, NaN, 1.5, 0, 0, -0, 2]);
    const bytes = new Uint8Array(v.buffer);
    const e = encodeSparseBitmask(bytes, 4, 2, 4);
    expect(e.count).toBe(5);
    expect(Array.from(decodeSparseBitmask(e, 4, 2, 4, complain))).toEqual(Array.from(bytes));
  });
});

describe('sparse-24-bitmask values', () => {
  it('encodes exactly-2:4 tensors, padding groups with stored zeros, and refuses 3 non-zeros in a group', () => {
    const v = Float32Array.from([0, 3, 0, 4, 0, 0, 0, 0, 5, 0, 0, 0, 0, 6, 7, 0]);
    const bytes = new Uint8Array(v.buffer);
    const e = encodeSparse24(bytes, 4, 2, 8)!;
    expect(e).not.toBeNull();
    // Kept positions: group (1,3); group of zeros keeps its first two (4,5); (8, lowest free 9); (13,14).
    expect(Array.from(unpackBitmask(e.bitmask, 2, 8))).toEqual([0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0]);
    expect(Array.from(new Float32Array(e.compressed.buffer))).toEqual([3, 4, 0, 0, 5, 0, 6, 7]);
    expect(Array.from(decodeSparse24(e, 4, 2, 8, complain))).toEqual(Array.from(bytes));
    v[0] = 1;
    expect(encodeSparse24(new Uint8Array(v.buffer), 4, 2, 8)).toBeNull();
    // -0.0 is a stored bit pattern: a group (-0, 3, 0, 4) has three.
    v[0] = -0;
    expect(encodeSparse24(new Uint8Array(v.buffer), 4, 2, 8)).toBeNull();
    expect(encodeSparse24(new Uint8Array(12 * 4), 4, 2, 6)).toBeNull();
  });
});

describe('quantized codes in the sparse layouts', () => {
  function quantized(axis: 0 | 1, bits: number, twoFour: boolean, seed: number): QuantizedWeight {
    const [rows, cols] = [5, 12];
    const r = lcg(seed);
    const n = axis === 0 ? rows : cols;
    const maxq = 2 ** bits - 1;
    const zero = Uint8Array.from({ length: n }, () => Math.floor(r() * (maxq + 1)));
    const scale = Float32Array.from({ length: n }, () => 0.01 + r());
    const codes = new Uint8Array(rows * cols);
    for (let i = 0; i < codes.length; i++) {
      const zp = zero[axis === 0 ? Math.floor(i / cols) : i % cols];
      const keep = twoFour ? i % 4 === 1 || (i % 4 === 2 && r() < 0.5) : r() < 0.5;
      codes[i] = keep ? Math.floor(r() * (maxq + 1)) : zp;
    }
    return { rows, cols, grid: { bits, axis, scale, zero }, codes };
  }

  it('sparse-bitmask stores only codes off the zero point and decodes them back', () => {
    for (const [axis, bits] of [
      [0, 4],
      [1, 4],
      [0, 8],
      [1, 2],
    ] as [0 | 1, number][]) {
      const q = quantized(axis, bits, false, 7 * bits + axis);
      const e = encodeQuantizedBitmask(q);
      let off = 0;
      for (let i = 0; i < q.codes.length; i++) if (q.codes[i] !== q.grid.zero[axis === 0 ? Math.floor(i / q.cols) : i % q.cols]) off++;
      expect(e.count).toBe(off);
      expect(e.codes.length).toBe(Math.ceil((off * bits) / 8));
      const d = decodeQuantizedBitmask(e, q.grid, q.rows, q.cols, complain);
      expect(Array.from(d.codes)).toEqual(Array.from(q.codes));
    }
  });

  it('sparse-24-bitmask stores two codes per group of 4, rows packed separately', () => {
    for (const [axis, bits] of [
      [0, 4],
      [1, 8],
    ] as [0 | 1, number][]) {
      const q = quantized(axis, bits, true, 3 + bits);
      const e = encodeQuantized24(q)!;
      expect(e).not.toBeNull();
      expect(e.codes.length).toBe(q.rows * ((q.cols / 2) * bits) / 8);
      expect(Array.from(decodeQuantized24(e, q.grid, q.rows, q.cols, complain).codes)).toEqual(Array.from(q.codes));
    }
  });
});
