/**
 * Safetensors element types and exact conversions between their bytes and float32.
 *
 * Node 20 has no Float16Array, so F16 and BF16 are handled as raw 16-bit patterns. All bulk converters
 * work on typed-array views of the whole buffer (no per-element DataView calls): decoding F16 is one table
 * lookup per element, BF16 one shift, and encoding is a few integer operations per element.
 *
 * Byte order: safetensors is little-endian; so is every platform Node runs on in practice, and the typed
 * array views below rely on it (checked once at load).
 */
import { endianness } from 'node:os';
import { ShearsError } from '../errors.js';

if (endianness() !== 'LE') {
  throw new ShearsError('shears needs a little-endian machine to read safetensors files');
}

/** The element types shears reads and writes. U16/U32/U64 are accepted when reading. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U16' | 'U32' | 'U64';

/** Float types a Float32Array can be encoded into when writing. */
export type FloatDType = 'F32' | 'F16' | 'BF16';

const ITEM_SIZE: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  U16: 2,
  U32: 4,
  U64: 8,
};

/** Every dtype name shears accepts, in a stable order (for messages). */
export const DTYPES: readonly DType[] = Object.keys(ITEM_SIZE) as DType[];

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, s);
}

/** Bytes per element. */
export function dtypeSize(dtype: DType): number {
  return ITEM_SIZE[dtype];
}

export function isFloatDType(dtype: DType): boolean {
  return dtype === 'F64' || dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
}

/** Product of a shape's dimensions (1 for a scalar []). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The typed array that holds one dtype's elements natively (F16/BF16: their raw 16-bit patterns). */
export type TypedTensor =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

// ---------------------------------------------------------------------------------------------------
// Scalar bit conversions (exact; used by the bulk converters and by tests)

/** F16 bit pattern → float32 bit pattern (exact for every input, NaN payload kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // Inf / NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 → 127
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal half: mant × 2^-24. Normalise: shift until the implicit bit (bit 10) is set.
  let e = 113; // float32 biased exponent of 2^-14
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/**
 * float32 bit pattern → F16 bit pattern, rounding to nearest, ties to even. Overflow gives ±Inf; results
 * below half the smallest subnormal give ±0. NaN stays NaN: sign and the top 10 payload bits are kept and
 * the quiet bit is set (so a payload living only in the low 13 bits cannot turn into Inf).
 */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    return sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  if (abs >= 0x38800000) {
    // Normal half range (≥ 2^-14): rebias the exponent, then round the 13 dropped bits to nearest even;
    // a carry out of the mantissa correctly bumps the exponent (up to 0x7c00 = Inf on overflow).
    if (abs >= 0x47800000) return sign | 0x7c00; // ≥ 2^16: beyond any rounding to 65504
    return sign | ((abs - 0x38000000 + 0x0fff + ((abs >>> 13) & 1)) >>> 13);
  }
  // Subnormal half (or zero): value = 1.m × 2^(exp-127); drop (126 - exp) bits of the 24-bit significand.
  const exp = abs >>> 23;
  if (exp < 102) return sign; // < 2^-25: below half the smallest subnormal (2^-24)
  const sig = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exp; // 14..24
  const half = 1 << (shift - 1);
  const rem = sig & ((1 << shift) - 1);
  let r = sig >>> shift;
  if (rem > half || (rem === half && (r & 1) === 1)) r++;
  return sign | r; // r may reach 0x400, the smallest normal: still the right encoding
}

/** BF16 bit pattern → float32 bit pattern (exact: BF16 is the top half of a float32). */
export function bf16BitsToF32Bits(h: number): number {
  return (h << 16) >>> 0;
}

/** float32 bit pattern → BF16 bit pattern, nearest even; NaN kept as NaN with the quiet bit set. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------------
// Bulk converters

let f16Table: Uint32Array | undefined;
/** 65536 float32 bit patterns, one per F16 pattern (256 KiB, built on first use). */
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/** A view of `bytes` as `T`, copying first only when the byte offset is misaligned for `T`. */
function view<T>(bytes: Uint8Array, itemSize: number, make: (buf: ArrayBufferLike, off: number, len: number) => T): T {
  if (bytes.byteLength % itemSize !== 0) {
    throw new ShearsError(`${bytes.byteLength} bytes is not a whole number of ${itemSize}-byte elements`);
  }
  const b = bytes.byteOffset % itemSize === 0 ? bytes : bytes.slice();
  return make(b.buffer, b.byteOffset, b.byteLength / itemSize);
}

/** The bytes of a tensor as its dtype's native typed array (no copy when aligned; F16/BF16: raw bits). */
export function typedView(bytes: Uint8Array, dtype: DType): TypedTensor {
  switch (dtype) {
    case 'F64':
      return view(bytes, 8, (b, o, n) => new Float64Array(b, o, n));
    case 'F32':
      return view(bytes, 4, (b, o, n) => new Float32Array(b, o, n));
    case 'F16':
    case 'BF16':
    case 'U16':
      return view(bytes, 2, (b, o, n) => new Uint16Array(b, o, n));
    case 'I64':
      return view(bytes, 8, (b, o, n) => new BigInt64Array(b, o, n));
    case 'U64':
      return view(bytes, 8, (b, o, n) => new BigUint64Array(b, o, n));
    case 'I32':
      return view(bytes, 4, (b, o, n) => new Int32Array(b, o, n));
    case 'U32':
      return view(bytes, 4, (b, o, n) => new Uint32Array(b, o, n));
    case 'I16':
      return view(bytes, 2, (b, o, n) => new Int16Array(b, o, n));
    case 'I8':
      return view(bytes, 1, (b, o, n) => new Int8Array(b, o, n));
    case 'U8':
    case 'BOOL':
      return view(bytes, 1, (b, o, n) => new Uint8Array(b, o, n));
  }
}

/**
 * Decode a tensor's little-endian bytes to float32. F16/BF16/F32 are exact (bit patterns kept, NaN payloads
 * included); F64 and integers round to the nearest float32 (64-bit integers via their 32-bit halves, so no
 * BigInt per element).
 */
export function decodeFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(bytes.byteLength / 4);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case 'F16': {
      const src = typedView(bytes, 'F16') as Uint16Array;
      const table = f16ToF32Table();
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
      return new Float32Array(out.buffer);
    }
    case 'BF16': {
      const src = typedView(bytes, 'BF16') as Uint16Array;
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'I64':
    case 'U64': {
      const words = view(bytes, 8, (b, o, n) => new Uint32Array(b, o, 2 * n));
      const out = new Float32Array(words.length / 2);
      const signed = dtype === 'I64';
      for (let i = 0; i < out.length; i++) {
        const lo = words[2 * i];
        const hi = words[2 * i + 1];
        out[i] = (signed ? hi | 0 : hi) * 4294967296 + lo;
      }
      return out;
    }
    default:
      // Every other native typed array converts element-wise with correct rounding in the constructor.
      return new Float32Array(typedView(bytes, dtype) as Exclude<TypedTensor, BigInt64Array | BigUint64Array>);
  }
}

/** Encode float32 values as F32, F16 or BF16 little-endian bytes (nearest-even rounding, see above). */
export function encodeFloat(values: Float32Array, dtype: FloatDType): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  switch (dtype) {
    case 'F32':
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case 'F16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < bits.length; i++) {
        const x = bits[i];
        const abs = x & 0x7fffffff;
        // Fast path: normal halves (by far the common case for weights) inline the rounding.
        if (abs >= 0x38800000 && abs < 0x47800000) {
          out[i] = ((x >>> 16) & 0x8000) | ((abs - 0x38000000 + 0x0fff + ((abs >>> 13) & 1)) >>> 13);
        } else {
          out[i] = f32BitsToF16Bits(x);
        }
      }
      return new Uint8Array(out.buffer);
    }
    case 'BF16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < bits.length; i++) {
        const x = bits[i];
        out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
      }
      return new Uint8Array(out.buffer);
    }
  }
}
