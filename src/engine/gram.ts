/**
 * Σ XᵀX for wide inputs, computing only the lower triangle: the n×n sum is kept as row chunks of its lower
 * triangle, chunk k = rows [r0, r1) × columns [0, r1), packed one after another, each contiguous. A batch
 * x [rows, n] is transposed once (JS, tiled) so that both factors of a chunk's product are contiguous rows of
 * xᵀ; each chunk is then one Gemm whose output buffer is its own C input (beta = 1), so no JS loop touches
 * the products. The full symmetric matrix is unfolded from the packed chunks once, at the end.
 *
 * Chunks are sized so that each output stays within OUT_CHUNK_BYTES (gemm.ts: onnxruntime-node copies every
 * output into a fresh ArrayBuffer, and small ones are recycled by malloc), which also keeps the diagonal
 * blocks, computed whole, small: about half of the full product's flops at n ≥ 2048.
 */
import { OUT_CHUNK_BYTES, gemmInto } from './gemm.js';
import { scratch32 } from './scratch.js';

export interface GramChunk {
  r0: number;
  r1: number;
  /** Start of the chunk's (r1 − r0) × r1 values in the packed array. */
  offset: number;
}

/** The row chunks of the packed lower triangle of an n×n sum; their total size is at most n². */
export function gramChunks(n: number, chunkElems = OUT_CHUNK_BYTES / 4): GramChunk[] {
  if (!(Number.isSafeInteger(n) && n > 0)) throw new RangeError(`invalid Gram size ${n}`);
  const chunks: GramChunk[] = [];
  let offset = 0;
  for (let r0 = 0; r0 < n; ) {
    // The largest r with r × (r0 + r) ≤ chunkElems, at least 32 rows (thin products run slowly).
    const r = Math.min(n - r0, Math.max(32, Math.floor((-r0 + Math.sqrt(r0 * r0 + 4 * chunkElems)) / 2)));
    chunks.push({ r0, r1: r0 + r, offset });
    offset += r * (r0 + r);
    r0 += r;
  }
  return chunks;
}

export function packedLength(chunks: readonly GramChunk[]): number {
  const last = chunks[chunks.length - 1];
  return last ? last.offset + (last.r1 - last.r0) * last.r1 : 0;
}

/** packed += the lower-triangle chunks of xᵀx, x [rows, n]. Call under `serial` (gemm.ts): uses scratch32. */
export async function accumulatePacked(packed: Float32Array, n: number, chunks: readonly GramChunk[], x: Float32Array, rows: number): Promise<void> {
  if (packed.length < packedLength(chunks)) throw new RangeError(`packed Gram has ${packed.length} values, its chunks need ${packedLength(chunks)}`);
  if (x.length !== rows * n) throw new RangeError(`x has ${x.length} elements, expected ${rows}×${n}`);
  if (rows === 0) return;
  const mark = scratch32.mark();
  try {
    const xt = scratch32.alloc(n * rows);
    const tile = 64;
    for (let i0 = 0; i0 < rows; i0 += tile) {
      const i1 = Math.min(rows, i0 + tile);
      for (let j0 = 0; j0 < n; j0 += tile) {
        const j1 = Math.min(n, j0 + tile);
        for (let j = j0; j < j1; j++) {
          const o = j * rows;
          for (let i = i0; i < i1; i++) xt[o + i] = x[i * n + j];
        }
      }
    }
    for (const { r0, r1, offset } of chunks) {
      const c = packed.subarray(offset, offset + (r1 - r0) * r1);
      await gemmInto(c, xt.subarray(r0 * rows, r1 * rows), [r1 - r0, rows], xt.subarray(0, r1 * rows), [r1, rows], { transB: true, c, beta: 1 });
    }
  } finally {
    scratch32.release(mark);
  }
}

/**
 * Unfolds a packed lower triangle that sits at the start of h ([n, n], row-major) into the full symmetric
 * matrix, in place. Row i's lower part moves to i·n, never before its packed position (chunks before row i
 * hold at most n values per row), so going from the last row back nothing is overwritten before it has
 * moved. The upper triangle is then mirrored from the lower one, so h is exactly symmetric.
 */
export function unfoldInPlace(h: Float32Array, n: number, chunks: readonly GramChunk[]): void {
  if (h.length !== n * n) throw new RangeError(`h has ${h.length} values, expected ${n}×${n}`);
  for (let k = chunks.length - 1; k >= 0; k--) {
    const { r0, r1, offset } = chunks[k];
    for (let i = r1 - 1; i >= r0; i--) {
      const src = offset + (i - r0) * r1;
      h.copyWithin(i * n, src, src + i + 1);
    }
  }
  mirrorLower(h, n);
}

/** h += the symmetric matrix whose packed lower triangle is `packed` (h need not be symmetric). */
export function addUnfolded(h: Float32Array, n: number, packed: Float32Array, chunks: readonly GramChunk[]): void {
  for (const { r0, r1, offset } of chunks) {
    for (let i = r0; i < r1; i++) {
      const p = offset + (i - r0) * r1;
      const row = i * n;
      for (let j = 0; j < i; j++) {
        const v = packed[p + j];
        h[row + j] += v;
        h[j * n + i] += v;
      }
      h[row + i] += packed[p + i];
    }
  }
}

/** Upper triangle of h from its lower one (tiled, so that the column reads stay in cache). */
function mirrorLower(h: Float32Array, n: number): void {
  const b = 64;
  for (let i0 = 0; i0 < n; i0 += b) {
    const i1 = Math.min(n, i0 + b);
    for (let j0 = i0; j0 < n; j0 += b) {
      const j1 = Math.min(n, j0 + b);
      for (let i = i0; i < i1; i++) {
        const row = i * n;
        for (let j = Math.max(j0, i + 1); j < j1; j++) h[row + j] = h[j * n + i];
      }
    }
  }
}
