import { describe, expect, it } from 'vitest';
import {
  bf16BitsToF32Bits,
  decodeFloat32,
  dtypeSize,
  encodeFloat,
  f16BitsToF32Bits,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
} from '../../src/io/dtype.js';

// ---- independent references (float64 arithmetic from the IEEE definitions, no bit tricks) ----

/** The value of an F16 bit pattern, from the IEEE 754 binary16 definition. */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The value of a BF16 pattern: binary32 with 8 exponent bits and 7 mantissa bits. */
function bf16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 7) & 0xff;
  const mant = h & 0x7f;
  if (exp === 0xff) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -133;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0];
}
function valueOfBits(b: number): number {
  u32[0] = b >>> 0;
  return f32[0];
}

/**
 * Round |x| (a finite float64 holding a float32 value) to the 16-bit format whose non-negative patterns are
 * monotonic in value, by searching for the neighbours and comparing distances: nearest, ties to the even
 * pattern. `maxFinite` is the largest finite pattern; one past it is Infinity, whose value for the purposes of
 * rounding is the next power of two (IEEE: round as if the exponent range were unbounded).
 */
function roundToNearestEven(x: number, value: (h: number) => number, maxFinite: number, overflowValue: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const val = (h: number): number => (h > maxFinite ? overflowValue : value(h));
  let lo = 0;
  let hi = maxFinite + 1;
  if (a >= overflowValue) return sign | (maxFinite + 1);
  // invariant: val(lo) <= a < val(hi)
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (val(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - val(lo);
  const dHi = val(hi) - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}
const refF16 = (x: number): number => roundToNearestEven(x, f16Value, 0x7bff, 65536);
const refBf16 = (x: number): number => roundToNearestEven(x, bf16Value, 0x7f7f, 2 ** 128);

/** Deterministic pseudo-random uint32s (xorshift32). */
function randomU32(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s;
  }
  return out;
}

const allPatterns = (): Uint8Array => {
  const h = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) h[i] = i;
  return new Uint8Array(h.buffer);
};

describe('dtype sizes', () => {
  it('matches the safetensors element sizes', () => {
    expect(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U16', 'U32', 'U64'].map((d) => dtypeSize(d as never))).toEqual([
      8, 4, 2, 2, 8, 4, 2, 1, 1, 1, 2, 4, 8,
    ]);
  });
});

describe('F16 <-> F32', () => {
  it('decodes all 65536 patterns to their IEEE values, keeping NaN payloads', () => {
    const out = decodeFloat32(allPatterns(), 'F16');
    const bits = new Uint32Array(out.buffer);
    for (let h = 0; h < 65536; h++) {
      const want = f16Value(h);
      if (Number.isNaN(want)) {
        // NaN: sign, all-ones exponent and the 10 payload bits moved to the top of the float32 mantissa.
        if (bits[h] !== (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0) throw new Error(`NaN ${h.toString(16)}: ${bits[h].toString(16)}`);
      } else if (out[h] !== want || (want === 0 && Object.is(want, -0) !== Object.is(out[h], -0))) {
        throw new Error(`pattern ${h.toString(16)}: got ${out[h]}, want ${want}`);
      }
      if (bits[h] !== f16BitsToF32Bits(h)) throw new Error(`scalar decode of ${h.toString(16)} differs`);
    }
  });

  it('decode then encode returns every pattern (signaling NaNs come back quiet)', () => {
    const back = new Uint16Array(encodeFloat(decodeFloat32(allPatterns(), 'F16'), 'F16').buffer);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      // Canonicalisation: a NaN keeps its sign and payload and gets the quiet bit (0x200) set.
      const want = isNaN ? h | 0x200 : h;
      if (back[h] !== want) throw new Error(`pattern ${h.toString(16)} came back as ${back[h].toString(16)}`);
    }
  });

  it('rounds float32 to nearest even, checked against a search over all halves', () => {
    const xs: number[] = [];
    // Random float32 patterns concentrated on the F16 range, plus uniformly random ones.
    for (const b of randomU32(20000, 7)) xs.push(valueOfBits(b));
    for (const b of randomU32(40000, 11)) xs.push(valueOfBits((b & 0x87ffffff) | 0x30000000)); // exponents ~2^-31..2^16
    // Every exact tie between neighbouring halves (representable in float32: 12 significant bits), and
    // one float32 ulp either side of it, over the subnormal, normal and overflow ranges.
    for (let h = 0; h < 0x7c00; h += 7) {
      const mid = (f16Value(h) + (h === 0x7bff ? 65536 : f16Value(h + 1))) / 2;
      const m = bitsOf(mid);
      xs.push(mid, valueOfBits(m + 1), valueOfBits(m - 1), -mid);
    }
    xs.push(0, -0, 65504, 65519.99, 65520, -65520, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -26, 1e-45, 3.4e38, Infinity, -Infinity);
    const input = Float32Array.from(xs);
    const bulk = new Uint16Array(encodeFloat(input, 'F16').buffer);
    for (let i = 0; i < input.length; i++) {
      const x = input[i];
      if (Number.isNaN(x)) {
        expect(Number.isNaN(f16Value(bulk[i]))).toBe(true);
        continue;
      }
      const want = Number.isFinite(x) ? refF16(x) : x > 0 ? 0x7c00 : 0xfc00;
      if (bulk[i] !== want || f32BitsToF16Bits(bitsOf(x)) !== want) {
        throw new Error(`${x}: got ${bulk[i].toString(16)}, want ${want.toString(16)}`);
      }
    }
  });

  it('keeps NaN as NaN, even with a payload only in the low mantissa bits', () => {
    const nans = new Uint32Array([0x7fc00000, 0xffc00000, 0x7f800001, 0x7f801fff, 0xff800001, 0x7fffffff]);
    const out = new Uint16Array(encodeFloat(new Float32Array(nans.buffer), 'F16').buffer);
    for (const h of out) expect(Number.isNaN(f16Value(h))).toBe(true);
    expect(out[1] & 0x8000).toBe(0x8000);
  });
});

describe('BF16 <-> F32', () => {
  it('decodes all 65536 patterns to their values', () => {
    const out = decodeFloat32(allPatterns(), 'BF16');
    const bits = new Uint32Array(out.buffer);
    for (let h = 0; h < 65536; h++) {
      const want = bf16Value(h);
      if (Number.isNaN(want) ? !Number.isNaN(out[h]) : out[h] !== want || Object.is(want, -0) !== Object.is(out[h], -0)) {
        throw new Error(`pattern ${h.toString(16)}: got ${out[h]}, want ${want}`);
      }
      if (bf16BitsToF32Bits(h) !== bits[h]) throw new Error(`scalar decode of ${h.toString(16)} differs`);
    }
  });

  it('decode then encode returns every pattern (signaling NaNs come back quiet)', () => {
    const back = new Uint16Array(encodeFloat(decodeFloat32(allPatterns(), 'BF16'), 'BF16').buffer);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      const want = isNaN ? h | 0x40 : h;
      if (back[h] !== want) throw new Error(`pattern ${h.toString(16)} came back as ${back[h].toString(16)}`);
    }
  });

  it('rounds float32 to nearest even, checked against a search over all bf16 values', () => {
    const xs: number[] = [];
    for (const b of randomU32(30000, 3)) xs.push(valueOfBits(b));
    // Exact ties (low 16 bits = 0x8000) and their neighbours, for odd and even bf16 mantissas.
    for (const b of randomU32(5000, 5)) {
      const tie = (b & 0xffff0000) | 0x8000;
      if ((tie & 0x7f800000) === 0x7f800000) continue;
      xs.push(valueOfBits(tie), valueOfBits(tie + 1), valueOfBits(tie - 1));
    }
    xs.push(0, -0, 3.4028234663852886e38, 1e-45, -1e-45, Infinity, -Infinity);
    const input = Float32Array.from(xs);
    const bulk = new Uint16Array(encodeFloat(input, 'BF16').buffer);
    for (let i = 0; i < input.length; i++) {
      const x = input[i];
      if (Number.isNaN(x)) {
        expect(Number.isNaN(bf16Value(bulk[i]))).toBe(true);
        continue;
      }
      const want = Number.isFinite(x) ? refBf16(x) : x > 0 ? 0x7f80 : 0xff80;
      if (bulk[i] !== want || f32BitsToBf16Bits(bitsOf(x)) !== want) throw new Error(`${x}: got ${bulk[i].toString(16)}, want ${want.toString(16)}`);
    }
  });
});

describe('bulk decode of other dtypes', () => {
  it('converts integers and F64 to the nearest float32', () => {
    const i64 = new BigInt64Array([0n, -1n, 123456789012345n, -(2n ** 62n), 2n ** 63n - 1n]);
    expect(Array.from(decodeFloat32(new Uint8Array(i64.buffer), 'I64'))).toEqual(Array.from(i64, (v) => Math.fround(Number(v))));
    const u64 = new BigUint64Array([0n, 2n ** 64n - 1n, 2n ** 32n + 5n]);
    expect(Array.from(decodeFloat32(new Uint8Array(u64.buffer), 'U64'))).toEqual(Array.from(u64, (v) => Math.fround(Number(v))));
    const f64 = new Float64Array([0.1, -1e300, 1 / 3]);
    expect(Array.from(decodeFloat32(new Uint8Array(f64.buffer), 'F64'))).toEqual(Array.from(f64, Math.fround));
    const i8 = new Int8Array([-128, 0, 127]);
    expect(Array.from(decodeFloat32(new Uint8Array(i8.buffer), 'I8'))).toEqual([-128, 0, 127]);
    const i16 = new Int16Array([-32768, 5, 32767]);
    expect(Array.from(decodeFloat32(new Uint8Array(i16.buffer), 'I16'))).toEqual([-32768, 5, 32767]);
    const i32 = new Int32Array([-(2 ** 31), 16777217, 7]);
    expect(Array.from(decodeFloat32(new Uint8Array(i32.buffer), 'I32'))).toEqual([-(2 ** 31), 16777216, 7]);
    expect(Array.from(decodeFloat32(new Uint8Array([0, 1, 1]), 'BOOL'))).toEqual([0, 1, 1]);
  });

  it('handles a misaligned byte view', () => {
    const buf = new Uint8Array(9);
    new DataView(buf.buffer).setFloat32(1, 1.5, true);
    new DataView(buf.buffer).setFloat32(5, -2, true);
    expect(Array.from(decodeFloat32(buf.subarray(1), 'F32'))).toEqual([1.5, -2]);
    const h = new Uint8Array(5);
    new DataView(h.buffer).setUint16(1, 0x3c00, true); // 1.0 in F16
    new DataView(h.buffer).setUint16(3, 0xc000, true); // -2.0
    expect(Array.from(decodeFloat32(h.subarray(1), 'F16'))).toEqual([1, -2]);
  });
});
