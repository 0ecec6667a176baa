/**
 * Integer codes packed into bytes: `bits` ∈ {1, 2, 4, 8} codes per byte slot, filled from the least
 * significant bits up — with 4 bits, code 2k is the low nibble of byte k and code 2k+1 the high nibble
 * (the same little-endian order as the bitmasks). A final partial byte is padded with zero bits.
 */

export const PACKABLE_BITS: readonly number[] = [1, 2, 4, 8];

function checkBits(bits: number): void {
  if (!PACKABLE_BITS.includes(bits)) throw new RangeError(`codes of ${bits} bits cannot be packed (supported: ${PACKABLE_BITS.join(', ')})`);
}

/** Bytes that `count` codes of `bits` bits take. */
export function packedCodeBytes(count: number, bits: number): number {
  checkBits(bits);
  return Math.ceil((count * bits) / 8);
}

/** Pack codes (each < 2^bits) into bytes. */
export function packCodes(codes: Uint8Array, bits: number): Uint8Array {
  checkBits(bits);
  if (bits === 8) return codes.slice();
  const per = 8 / bits;
  const limit = 1 << bits;
  const out = new Uint8Array(packedCodeBytes(codes.length, bits));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c >= limit) throw new RangeError(`code ${c} at index ${i} does not fit ${bits} bits`);
    out[(i / per) | 0] |= c << ((i % per) * bits);
  }
  return out;
}

/** The first `count` codes of packed bytes. */
export function unpackCodes(packed: Uint8Array, bits: number, count: number): Uint8Array {
  checkBits(bits);
  if (packed.length < packedCodeBytes(count, bits)) throw new RangeError(`${packed.length} bytes hold fewer than ${count} codes of ${bits} bits`);
  if (bits === 8) return packed.slice(0, count);
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (packed[(i / per) | 0] >> ((i % per) * bits)) & mask;
  return out;
}
