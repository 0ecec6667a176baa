/**
 * Cholesky factorisation and the inverses SparseGPT needs, in float64, with the O(n³) work as ORT (MLAS)
 * float64 GEMMs and only diagonal blocks of ≤ LEAF in JavaScript.
 *
 * Precision design. The products run in float64, never float32. Measured on damped Gram matrices
 * H = XᵀX·2/N + δ·mean(diag)·I with low-rank-plus-noise X and outlier channels, δ chosen for the condition
 * number; error = max |U − U_ref| / max |U_ref| of choleskyInverseUpper against an unblocked float64 reference.
 * The float32 rows come from a numpy/OpenBLAS model of this blocked algorithm (n = 512, 1024) with the
 * products rounded to float32; the float64 row is this file (bench-engine precision sweep, n = 1024):
 *
 *     cond(H)                                  1e3       1e4       1e5       1e6
 *     float32 trailing products (numpy)        1–2e-6    1–2e-5    1e-4      1e-3
 *     float32 hi+lo split, 3 GEMMs (numpy)     same      same      same      same
 *     cond(H)                                  2.6e3     2.6e4     2.6e5     2.6e6
 *     float64 products (this file)             6e-14     4e-13     1.3e-12   3.6e-12
 *
 * The float32 error grows like cond·eps32: the Schur complements A22 − L21·L21ᵀ cancel, and the error is set
 * by the float32 *accumulation* inside the GEMM, so splitting the inputs into hi+lo float32 parts buys nothing
 * (only an Ozaki-style exact splitting would, at ~30 float32 GEMMs). SparseGPT's usual 1 % damping already
 * lands at cond 1e3–1e4, so float32 would miss 1e-5. MLAS float64 GEMM runs at ~40–60 % of its float32 speed
 * here (≈ 120–160 vs 250–340 GFLOP/s on 2 cores), which keeps n = 4096 well inside the time budget.
 *
 * Algorithm: a recursive blocked Cholesky that carries the inverse factor along. For A = [A11 ·; A21 A22]:
 *     (L11, M11 = L11⁻¹) ← factor(A11)
 *     L21 ← A21·M11ᵀ                       (triangular solve as a product with the explicit inverse)
 *     A22 ← A22 − L21·L21ᵀ                 (lower triangle only, row chunks skip the upper blocks)
 *     (L22, M22) ← factor(A22)
 *     M21 ← −M22·(L21·M11)                 (row chunks skip M22's zero upper part)
 * The explicit-inverse solve costs an error factor cond(L11) ≤ √cond(H), harmless in float64. Total work is
 * ≈ n³ flops against 2n³/3 for LAPACK's potrf + trtri, the price of full GEMMs on triangular operands.
 *
 * choleskyInverseUpper: with J the exchange matrix, if J·H·J = L̃·L̃ᵀ then H = (J L̃ J)(J L̃ J)ᵀ with J L̃ J
 * upper triangular, so H⁻¹ = UᵀU for U = (J L̃ J)⁻¹ = J·L̃⁻¹·J, upper with positive diagonal: by uniqueness
 * the factor torch computes as cholesky(cholesky_inverse(cholesky(H)), upper=True). J·X·J of a row-major
 * matrix is its flat reversal, so the flips are two `reverse()` calls.
 */
import { ShearsError } from '../errors.js';
import { OUT_CHUNK_BYTES, gemmInto, serial } from './gemm.js';
import { scratch64 } from './scratch.js';

/** Thrown when a pivot is ≤ 0 or not finite; SparseGPT retries with more damping. */
export class NotPositiveDefiniteError extends ShearsError {
  constructor(
    /** Row/column of the failing pivot, in the caller's indexing. */
    readonly pivot: number,
    /** The pivot value (the Schur complement's diagonal entry) that failed. */
    readonly value: number,
    readonly size: number,
  ) {
    super(`matrix is not positive definite: pivot ${pivot} of ${size} is ${value}`);
    this.name = 'NotPositiveDefiniteError';
  }
}

/** Diagonal blocks up to this size are factored in JS: big enough to keep ORT calls few, small enough that the O(b³) JS work stays ~1 ms. */
const LEAF = 128;

/** Elements of one ORT output chunk (see gemm.ts). */
const CHUNK_ELEMS = OUT_CHUNK_BYTES / 8;

export interface FactorOptions {
  /**
   * Result array (n² elements) to write instead of allocating one (first touch of a fresh 4096² array costs
   * ~0.3 s here). It may be the input matrix itself, which is then overwritten.
   */
  out?: Float64Array;
}

interface Work {
  /** n×n row-major working matrix: lower triangle = current Schur complement, replaced by M = L⁻¹. */
  w: Float64Array;
  n: number;
  /** Receives L (lower triangle) when the caller wants the factor itself. */
  lout?: Float64Array;
  /** Working index → the caller's index, for error messages. */
  pivot: (k: number) => number;
}

/**
 * Factors the diagonal block [off, off+size) of work.w in place. Afterwards its lower triangle holds
 * M = L⁻¹ when wantM (else unspecified) and work.lout, if any, holds L there. The strict upper triangle of
 * work.w is never touched.
 */
async function factor(work: Work, off: number, size: number, wantM: boolean): Promise<void> {
  if (size <= LEAF) {
    leaf(work, off, size, wantM);
    return;
  }
  const { w, n, lout } = work;
  const n1 = size >> 1;
  const n2 = size - n1;
  const o2 = off + n1;
  await factor(work, off, n1, true);

  const mark = scratch64.mark();
  try {
    const l21 = scratch64.alloc(n2 * n1);
    const afterL21 = scratch64.mark();
    const m11 = scratch64.alloc(n1 * n1);
    copyLower(w, n, off, n1, m11);
    await solveBlock(w, n, o2, off, n2, n1, m11, l21);
    // t = L21·M11 is needed only after the trailing block is factored. It waits in A21's place (A21 is
    // spent, and M21 goes there in the end) rather than in scratch held across the recursion: the scratch
    // peak is then L21 + M11, half the matrix, where a held t made it three quarters.
    if (wantM) await productIntoBlock(w, n, o2, off, l21, [n2, n1], m11, n1);
    scratch64.release(afterL21);
    if (lout) writeBlock(lout, n, o2, off, n2, n1, l21);
    await schurUpdate(w, n, o2, n2, l21, n1);
  } finally {
    scratch64.release(mark);
  }

  await factor(work, o2, n2, wantM);
  if (wantM) await lowerProduct(w, n, o2, n2, n1, off);
}

/**
 * Elements of scratch64 that factor() needs at most for an n×n matrix: L21 and M11 at the top level
 * (n²/4 each at most, with n1 ≤ n2), plus the row-chunk buffers of one product beside them (each at most
 * a chunk, or 32 rows of n). Reserved up front so that no part of a factorisation is served by throwaway
 * allocations, which would stay resident until the next garbage collection.
 */
export function factorScratch(n: number): number {
  if (n <= LEAF) return n * n;
  const n1 = n >> 1;
  return n1 * (n - n1) + n1 * n1 + 2 * Math.max(CHUNK_ELEMS, 32 * n);
}

/** l[s×k] ← A21·M11ᵀ with A21 the block of w at rows [r, r+s), columns [c, c+k), copied over in chunks. */
async function solveBlock(w: Float64Array, n: number, r: number, c: number, s: number, k: number, m11: Float64Array, l: Float64Array): Promise<void> {
  const mark = scratch64.mark();
  try {
    const rowsMax = Math.max(1, Math.min(s, Math.floor(CHUNK_ELEMS / k)));
    const a = scratch64.alloc(rowsMax * k);
    for (let r0 = 0; r0 < s; r0 += rowsMax) {
      const rows = Math.min(rowsMax, s - r0);
      readBlock(w, n, r + r0, c, rows, k, a);
      await gemmInto(l.subarray(r0 * k, (r0 + rows) * k), a.subarray(0, rows * k), [rows, k], m11, [k, k], { transB: true });
    }
  } finally {
    scratch64.release(mark);
  }
}

/** w's block rows [r, r+s) × columns [c, c+k) ← a·b for a [s×j] and b [j×k], in row chunks through scratch. */
async function productIntoBlock(w: Float64Array, n: number, r: number, c: number, a: Float64Array, [s, j]: readonly [number, number], b: Float64Array, k: number): Promise<void> {
  const mark = scratch64.mark();
  try {
    const rowsMax = Math.max(1, Math.min(s, Math.floor(CHUNK_ELEMS / k)));
    const out = scratch64.alloc(rowsMax * k);
    for (let r0 = 0; r0 < s; r0 += rowsMax) {
      const rows = Math.min(rowsMax, s - r0);
      const o = out.subarray(0, rows * k);
      await gemmInto(o, a.subarray(r0 * j, (r0 + rows) * j), [rows, j], b, [j, k]);
      writeBlock(w, n, r + r0, c, rows, k, o);
    }
  } finally {
    scratch64.release(mark);
  }
}

/** m[s×k] ← w's block at rows [r, r+s), columns [c, c+k). */
function readBlock(w: Float64Array, n: number, r: number, c: number, s: number, k: number, m: Float64Array): void {
  for (let i = 0; i < s; i++) m.set(w.subarray((r + i) * n + c, (r + i) * n + c + k), i * k);
}

/** w's block at rows [r, r+s), columns [c, c+k) ← m[s×k]. */
function writeBlock(w: Float64Array, n: number, r: number, c: number, s: number, k: number, m: Float64Array): void {
  for (let i = 0; i < s; i++) w.set(m.subarray(i * k, (i + 1) * k), (r + i) * n + c);
}

/** m[s×s] ← the lower triangle of w's block at (off, off), zeros above the diagonal. */
function copyLower(w: Float64Array, n: number, off: number, s: number, m: Float64Array): void {
  for (let i = 0; i < s; i++) {
    const row = (off + i) * n + off;
    m.set(w.subarray(row, row + i + 1), i * s);
    m.fill(0, i * s + i + 1, (i + 1) * s);
  }
}

/**
 * Rows per chunk when chunk rows [r0, r0+r) produce an r × (r0+r) output: the largest r whose output fits a
 * chunk, so chunks get thinner as the triangle widens (at least 32 rows, to keep the products efficient).
 */
function triangleRows(r0: number, total: number): number {
  const r = Math.floor((-r0 + Math.sqrt(r0 * r0 + 4 * CHUNK_ELEMS)) / 2);
  return Math.min(Math.max(32, r), total - r0);
}

/** Lower triangle of the block at (o, o) of size s in w −= l·lᵀ, for l [s×k]. */
async function schurUpdate(w: Float64Array, n: number, o: number, s: number, l: Float64Array, k: number): Promise<void> {
  for (let r0 = 0; r0 < s; ) {
    const r = triangleRows(r0, s);
    const r1 = r0 + r;
    const mark = scratch64.mark();
    try {
      const p = scratch64.alloc(r * r1);
      await gemmInto(p, l.subarray(r0 * k, r1 * k), [r, k], l.subarray(0, r1 * k), [r1, k], { transB: true });
      for (let i = 0; i < r; i++) {
        const row = (o + r0 + i) * n + o;
        const pi = i * r1;
        for (let j = 0; j <= r0 + i; j++) w[row + j] -= p[pi + j];
      }
    } finally {
      scratch64.release(mark);
    }
    r0 = r1;
  }
}

/**
 * w's block rows [o, o+s) × columns [c, c+k) ← −M·t, where M [s×s] is the lower triangle of w's diagonal
 * block at (o, o) (already inverted) and t [s×k] is what that block of w holds now (productIntoBlock put it
 * there). Row i of M·t only needs t's first i+1 rows.
 */
async function lowerProduct(w: Float64Array, n: number, o: number, s: number, k: number, c: number): Promise<void> {
  const mark = scratch64.mark();
  try {
    const t = scratch64.alloc(s * k);
    readBlock(w, n, o, c, s, k, t);
    const rowsMax = Math.max(1, Math.min(s, Math.floor(CHUNK_ELEMS / k)));
    const a = scratch64.alloc(rowsMax * s);
    const out = scratch64.alloc(rowsMax * k);
    for (let r0 = 0; r0 < s; r0 += rowsMax) {
      const r = Math.min(rowsMax, s - r0);
      const r1 = r0 + r;
      const ar = a.subarray(0, r * r1);
      for (let i = 0; i < r; i++) {
        const row = (o + r0 + i) * n + o;
        ar.set(w.subarray(row, row + r0 + i + 1), i * r1);
        ar.fill(0, i * r1 + r0 + i + 1, (i + 1) * r1);
      }
      const or = out.subarray(0, r * k);
      await gemmInto(or, ar, [r, r1], t.subarray(0, r1 * k), [r1, k], { alpha: -1 });
      writeBlock(w, n, o + r0, c, r, k, or);
    }
  } finally {
    scratch64.release(mark);
  }
}

/** Cholesky of a small diagonal block in JS (row-oriented, contiguous dot products), then its inverse. */
function leaf(work: Work, off: number, s: number, wantM: boolean): void {
  const { w, n, lout } = work;
  for (let i = 0; i < s; i++) {
    const ri = (off + i) * n + off;
    for (let j = 0; j < i; j++) {
      const rj = (off + j) * n + off;
      let sum = w[ri + j];
      for (let k = 0; k < j; k++) sum -= w[ri + k] * w[rj + k];
      w[ri + j] = sum / w[rj + j];
    }
    let d = w[ri + i];
    for (let k = 0; k < i; k++) d -= w[ri + k] * w[ri + k];
    if (!(d > 0) || d === Infinity) throw new NotPositiveDefiniteError(work.pivot(off + i), d, n);
    w[ri + i] = Math.sqrt(d);
    if (lout) lout.set(w.subarray(ri, ri + i + 1), ri);
  }
  if (!wantM) return;

  // Row i of M = L⁻¹ is (e_i − Σ_{k<i} L[i][k]·M[k]) / L[i][i]; row k of M is zero beyond column k.
  const mark = scratch64.mark();
  const m = scratch64.alloc(s * s);
  for (let i = 0; i < s; i++) {
    const ri = (off + i) * n + off;
    const mi = i * s;
    m.fill(0, mi, mi + i);
    for (let k = 0; k < i; k++) {
      const lik = w[ri + k];
      const mk = k * s;
      for (let j = 0; j <= k; j++) m[mi + j] += lik * m[mk + j];
    }
    const inv = 1 / w[ri + i];
    for (let j = 0; j < i; j++) m[mi + j] *= -inv;
    m[mi + i] = inv;
  }
  for (let i = 0; i < s; i++) w.set(m.subarray(i * s, i * s + i + 1), (off + i) * n + off);
  scratch64.release(mark);
}

function checkSquare(what: string, a: ArrayLike<number>, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what}: bad size ${n}`);
  if (a.length !== n * n) throw new RangeError(`${what}: ${a.length} elements is not ${n}×${n}`);
}

function resultArray(what: string, n: number, out: Float64Array | undefined): Float64Array {
  if (!out) return new Float64Array(n * n);
  if (out.length !== n * n) throw new RangeError(`${what}: out has ${out.length} elements, expected ${n}×${n}`);
  return out;
}

/**
 * Lower Cholesky factor L of a symmetric positive definite A [n×n] (A = L·Lᵀ; only A's lower triangle is
 * read). Throws NotPositiveDefiniteError naming the first pivot ≤ 0 or not finite.
 */
export function cholesky(a: Float64Array | Float32Array, n: number, opts: FactorOptions = {}): Promise<Float64Array> {
  checkSquare('cholesky', a, n);
  return serial(async () => {
    const out = resultArray('cholesky', n, opts.out);
    const mark = scratch64.mark();
    try {
      const w = scratch64.alloc(n * n);
      w.set(a);
      if (opts.out) out.fill(0);
      await factor({ w, n, lout: out, pivot: (k) => k }, 0, n, false);
    } finally {
      scratch64.release(mark);
    }
    return out;
  });
}

/**
 * The upper-triangular U with positive diagonal and H⁻¹ = UᵀU, for symmetric positive definite H [n×n]:
 * SparseGPT's `cholesky(cholesky_inverse(cholesky(H)), upper=True)`. Only H's upper triangle is read
 * (it is the lower triangle of the flipped matrix that gets factored). A failing pivot is reported as
 * H's row/column index. With `out` = `h` (float64) the factor replaces H; if the factorisation fails,
 * H's strict lower triangle is still as given (it is never written) and the rest is undefined.
 */
export function choleskyInverseUpper(h: Float32Array | Float64Array, n: number, opts: FactorOptions = {}): Promise<Float64Array> {
  checkSquare('choleskyInverseUpper', h, n);
  return serial(async () => {
    const w = resultArray('choleskyInverseUpper', n, opts.out);
    scratch64.reserve(factorScratch(n));
    if (w !== h) w.set(h);
    w.reverse();
    try {
      await factor({ w, n, pivot: (k) => n - 1 - k }, 0, n, true);
    } catch (e) {
      // In place, H is flipped back so that the caller can rebuild it from its untouched half and retry.
      if (w === h) w.reverse();
      throw e;
    }
    w.reverse();
    for (let i = 1; i < n; i++) w.fill(0, i * n, i * n + i);
    return w;
  });
}

/** H⁻¹ for symmetric positive definite H [n×n] (only the lower triangle is read), as L⁻ᵀ·L⁻¹. */
export function invertSpd(h: Float32Array | Float64Array, n: number, opts: FactorOptions = {}): Promise<Float64Array> {
  checkSquare('invertSpd', h, n);
  return serial(async () => {
    const out = resultArray('invertSpd', n, opts.out);
    const mark = scratch64.mark();
    try {
      const m = scratch64.alloc(n * n);
      m.set(h);
      await factor({ w: m, n, pivot: (k) => k }, 0, n, true);
      for (let i = 0; i < n; i++) m.fill(0, i * n + i + 1, (i + 1) * n);
      // Rows [r0, r1) of MᵀM only involve rows ≥ r0 of M (M is lower): Σ_{k≥r0} M[k][r0:r1]ᵀ · M[k][:].
      const rows = Math.max(1, Math.min(n, Math.floor(CHUNK_ELEMS / Math.max(n, 1))));
      const slab = scratch64.alloc(n * rows);
      for (let r0 = 0; r0 < n; r0 += rows) {
        const r = Math.min(rows, n - r0);
        const kk = n - r0;
        const sl = slab.subarray(0, kk * r);
        for (let k = 0; k < kk; k++) sl.set(m.subarray((r0 + k) * n + r0, (r0 + k) * n + r0 + r), k * r);
        await gemmInto(out.subarray(r0 * n, (r0 + r) * n), sl, [kk, r], m.subarray(r0 * n), [kk, n], { transA: true });
      }
    } finally {
      scratch64.release(mark);
    }
    return out;
  });
}
