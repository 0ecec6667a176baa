/**
 * SparseGPT (Frantar & Alistarh 2023; reference sparsegpt.py, SparseGPT.fasterprune): prune column by
 * column, pushing each column's error onto the columns not yet visited through the upper Cholesky
 * factor U of H⁻¹, with H = (2/N) Σ XᵀX the layer-input Gram matrix (stats.ts).
 *
 * Steps, as in the reference:
 *  1. dead inputs (H_jj == 0): H_jj = 1 and W[:, j] = 0;
 *  2. H += damp · mean(diag H) · I; U = chol(H⁻¹) upper (inverseHessian: once per layer input, shared
 *     by the layers reading it). Deliberate difference: the reference has no retry. When the Cholesky
 *     fails we retry with the damping 10× larger, up to 3 times (0.01 after a failed damp of 0), and
 *     report it;
 *  3. columns in blocks of `blocksize`; the mask of an unstructured block is chosen jointly over all
 *     its rows on w²/d² (d = diag of U's block): threshold = sorted scores [int(numel_block · p)],
 *     pruned where score <= threshold (ties prune more, as in the reference). For N:M, at each block
 *     column i with i % M == 0, each row prunes the N smallest w²/d² of columns i..i+M-1 of the
 *     current (already updated) weights (nm.ts: ties by index; a tail group loses min(N, width));
 *  4. column i: q = w with pruned rows set to 0 (and, with wbits, rounded onto the row's grid,
 *     found on the original W as the reference's find_params does), err = (w − q)/d, later block columns
 *     W1[:, j] −= err · U[i, j]; loss += (w − q)²/d² / 2;
 *  5. after the block, the lazy batch update W[:, i2:] −= Err1 · U[i1:i2, i2:] (the heavy product,
 *     through the engine's gemm).
 *
 * Precision: the reference runs everything in float32. We keep U in float64 (linalg returns it so),
 * and the in-block working copy, errors and losses in float64: they cost rows·blocksize doubles and
 * remove rounding from the sequential rank-1 updates. The weights between blocks stay float32, and
 * the lazy batch update runs in float32 through the engine, like the reference.
 *
 * Layout: the weight is worked on transposed, [cols, rows], so that W[:, i2:] is one contiguous slice
 * that the gemm updates in place, and each in-block column is contiguous for the rank-1 loops.
 */
import { ShearsError, usageError } from '../errors.js';
import { choleskyInverseUpper, gemmAccumulate, NotPositiveDefiniteError, releaseScratch } from '../engine/linalg.js';
import { type PruneResult, type SparsitySpec, type Weight, checkSpec, checkWeight, countZeros, tailNote } from './spec.js';
import { kthSmallest } from './select.js';
import { markLowestInGroup } from './nm.js';
import { findRowGrid, quantizeValue, type RowGrid } from '../quant/grid.js';
import type { PruneMethod } from './method.js';

/**
 * The first layer that reads an input turns its Gram matrix into the inverse factor (in place, unless H must
 * stay readable: the float64 H takes the float32 one's room, then U takes H's); the layers sharing the input reuse it.
 */
export const sparsegpt: PruneMethod = {
  statistic: 'gram',
  async prune(w, input, spec, opts) {
    const inverse = await input.shared('sparsegpt.inverse', () => inverseHessian(input.gramForFactoring(), w.cols, { damp: opts.damp, inPlace: true }));
    return sparsegptPrune(w, inverse, spec, { blocksize: opts.blocksize, damp: opts.damp, wbits: opts.wbits });
  },
};

export interface SparseGPTOptions {
  /** Columns per block (reference default 128); a multiple of M for N:M patterns. */
  blocksize?: number;
  /** Relative damping: this fraction of mean(diag H) is added to the diagonal (reference 0.01). */
  damp?: number;
  /**
   * Quantize jointly (reference --wbits): each kept weight is rounded onto its output row's min-max
   * grid inside the column loop, and the pruning + rounding error is what flows to later columns.
   */
  wbits?: number;
}

export const DEFAULT_BLOCKSIZE = 128;
export const DEFAULT_DAMP = 0.01;
/** Cholesky retries with 10× the damping each, after the first attempt fails. */
export const MAX_DAMP_RETRIES = 3;

/**
 * Steps 1–2 for one input's H: U = chol(H⁻¹) upper of the damped H. It depends on H alone, so the layers
 * that read the same input (q/k/v, gate/up) share one: the reference recomputes it for each, identically.
 */
export interface InverseHessian {
  readonly n: number;
  /** U [n, n] float64, upper triangular: H⁻¹ = UᵀU. */
  readonly u: Float64Array;
  /** Columns with H_jj = 0 (never active in calibration): their weights are zeroed. */
  readonly dead: Uint8Array;
  /** The relative damping that succeeded, and how many 10× raises it took. */
  readonly damp: number;
  readonly retries: number;
}

export interface InverseHessianOptions {
  damp?: number;
  /**
   * Factor H itself (a Float64Array nobody else reads) instead of a float64 copy, which is n² × 8 bytes
   * (242 MiB for a 5504-wide input). H is destroyed: U takes its place.
   */
  inPlace?: boolean;
}

export async function inverseHessian(h: Float32Array | Float64Array, n: number, opts: InverseHessianOptions = {}): Promise<InverseHessian> {
  const percdamp = checkDamp(opts.damp);
  if (h.length !== n * n) throw new RangeError(`SparseGPT Hessian has ${h.length} values, not ${n}x${n}`);
  if (opts.inPlace && !(h instanceof Float64Array)) throw new TypeError('SparseGPT: a Hessian factored in place must be a Float64Array');
  const dead = new Uint8Array(n);
  const diag = new Float64Array(n);
  let diagSum = 0;
  for (let j = 0; j < n; j++) {
    const v = h[j * n + j];
    dead[j] = v === 0 ? 1 : 0;
    diag[j] = v === 0 ? 1 : v;
    diagSum += diag[j];
  }
  const meanDiag = diagSum / n;
  const hd = opts.inPlace ? (h as Float64Array) : new Float64Array(n * n);
  let damp = percdamp;
  for (let retries = 0; ; retries++) {
    // A failed in-place attempt leaves H's strict lower triangle untouched (cholesky.ts); H is symmetric.
    if (!opts.inPlace) hd.set(h);
    else if (retries > 0) mirrorLowerTriangle(hd, n);
    const add = damp * meanDiag;
    for (let j = 0; j < n; j++) hd[j * n + j] = diag[j] + add;
    try {
      // The factor overwrites hd (`out`): one n² float64 array instead of two.
      const u = await choleskyInverseUpper(hd, n, { out: hd });
      // The factorisation's scratch is half as large as H; give it back before the OBS loop, so that it
      // does not add to the peak of whatever runs next (re-touching it costs far less than a layer's pruning).
      releaseScratch();
      return { n, u, dead, damp, retries };
    } catch (e) {
      if (!(e instanceof NotPositiveDefiniteError)) throw e;
      if (retries === MAX_DAMP_RETRIES) {
        throw new ShearsError(`SparseGPT: the ${n}x${n} Hessian is not positive definite even with damp ${damp} (${retries} retries); more calibration data or a larger --damp may help`);
      }
      // toPrecision: report 1, not 1.0000000000000002, after 0.01 → 0.1 → 1.
      damp = damp > 0 ? +(damp * 10).toPrecision(12) : DEFAULT_DAMP;
    }
  }
}

function checkDamp(damp = DEFAULT_DAMP): number {
  if (!(Number.isFinite(damp) && damp >= 0)) throw usageError(`--damp must be a non-negative number (got ${damp})`);
  return damp;
}

/** a[i][j] = a[j][i] for i < j: the upper triangle from the lower one. */
function mirrorLowerTriangle(a: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[i * n + j] = a[j * n + i];
}

/**
 * Prunes w in place. `h` is the layer input's H (copied, then factored here) or its InverseHessian; with
 * the latter, opts.damp is the one it was made with.
 */
export async function sparsegptPrune(w: Weight, h: Float32Array | Float64Array | InverseHessian, spec: SparsitySpec, opts: SparseGPTOptions = {}): Promise<PruneResult> {
  checkWeight(w);
  checkSpec(spec);
  const { rows, cols: n } = w;
  const blocksize = opts.blocksize ?? DEFAULT_BLOCKSIZE;
  if (!(Number.isSafeInteger(blocksize) && blocksize > 0)) throw usageError(`--blocksize must be a positive integer (got ${blocksize})`);
  const percdamp = checkDamp(opts.damp);
  if (spec.kind === 'nm' && blocksize % spec.m !== 0) {
    // Groups must not straddle blocks: the reference only starts a group at i % M == 0 inside a block.
    throw usageError(`--blocksize ${blocksize} must be a multiple of M = ${spec.m} for the ${spec.n}:${spec.m} pattern`);
  }
  const given = 'u' in h ? h.n * h.n : h.length;
  if (given !== n * n) throw new RangeError(`SparseGPT Hessian has ${given} values, not ${n}x${n}`);
  const total = rows * n;
  if (total === 0) return { pruned: 0, total, loss: 0, damp: percdamp, retries: 0 };

  // The grid comes from the weights as given, before dead columns are zeroed (reference order).
  const grid = opts.wbits !== undefined ? findRowGrid(w.data, rows, n, opts.wbits) : undefined;
  const { u, dead, damp, retries } = 'u' in h ? h : await inverseHessian(h, n, { damp: percdamp });
  const notes: string[] = [];
  const deadCount = dead.reduce((a, d) => a + d, 0);
  if (deadCount) notes.push(`${deadCount} input column(s) never active in calibration: their weights are zeroed`);
  if (retries) notes.push(`Cholesky failed; succeeded after ${retries} retr${retries === 1 ? 'y' : 'ies'} with damp ${damp}`);

  // Transposed working copy, dead columns zeroed.
  const wt = new Float32Array(total);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    for (let c = 0; c < n; c++) wt[c * rows + r] = dead[c] ? 0 : w.data[o + c];
  }

  let loss = 0;
  const work = blockWork(Math.min(blocksize, n), rows, subWidth(spec));
  for (let i1 = 0; i1 < n; i1 += blocksize) {
    const i2 = Math.min(i1 + blocksize, n);
    const block = pruneBlock(wt, rows, n, u, i1, i2, spec, work, grid);
    loss += block.loss;
    if (i2 < n) await lazyBatchUpdate(wt, rows, n, u, i1, i2, block.err, work);
  }

  for (let r = 0; r < rows; r++) {
    const o = r * n;
    for (let c = 0; c < n; c++) w.data[o + c] = wt[c * rows + r];
  }
  notes.push(...tailNote(n, spec));
  return { pruned: countZeros(w.data), total, loss, damp, retries, ...(notes.length ? { notes } : {}) };
}

/** In-block sub-block width (see pruneBlock): 8 errors per sweep keep the coefficients in registers. */
const SUB = 8;

/**
 * The per-block working arrays, [blocksize, rows] at most, allocated once per layer and reused by every
 * block: fresh arrays per block were fresh pages each time (~3.5 ms/MiB to fault in on the machines
 * measured, a third of the in-block time at 2048 × 2048).
 */
interface BlockWork {
  w1: Float64Array;
  scores: Float64Array;
  scratch: Float64Array;
  mask: Uint8Array;
  err: Float32Array;
  /** The current sub-block's errors, [sub, rows]. */
  es: Float64Array;
  d: Float64Array;
  /** U[i1:i2, i2:] in float32 for the lazy batch update, sized by the first block. */
  ublock?: Float32Array;
}

function blockWork(blocksize: number, rows: number, sub: number): BlockWork {
  const size = blocksize * rows;
  return {
    w1: new Float64Array(size),
    scores: new Float64Array(size),
    scratch: new Float64Array(size),
    mask: new Uint8Array(size),
    err: new Float32Array(size),
    es: new Float64Array(sub * rows),
    d: new Float64Array(blocksize),
  };
}

/** Sub-block width for a spec: a multiple of M for N:M, so that groups are chosen from fully updated columns. */
function subWidth(spec: SparsitySpec): number {
  if (spec.kind !== 'nm') return SUB;
  return spec.m <= SUB ? SUB - (SUB % spec.m) : spec.m;
}

/**
 * Prunes columns i1..i2 of the transposed weight `wt` in place (final values). Returns the block's
 * share of the reported loss and its errors Err1 in float32, [count, rows] (transposed like `wt`; a view
 * of the workspace, valid until the next block).
 *
 * Columns go in sub-blocks of `sub`: a column's error reaches the later columns of its sub-block at once
 * (they depend on it), and the block columns after the sub-block get its `sub` errors in one sweep. Each w1
 * entry still receives the same float64 subtractions in the same order as in the column-by-column loop, so
 * the result is the same (up to the sign of zeros); w1 is just read and written once per sub-block instead
 * of once per column, which made the in-block work 2–3× faster.
 */
function pruneBlock(wt: Float32Array, rows: number, n: number, u: Float64Array, i1: number, i2: number, spec: SparsitySpec, work: BlockWork, grid?: RowGrid): { loss: number; err: Float32Array } {
  const count = i2 - i1;
  const size = count * rows;
  const w1 = work.w1.subarray(0, size);
  for (let k = 0; k < size; k++) w1[k] = wt[i1 * rows + k];
  const d = work.d;
  for (let k = 0; k < count; k++) d[k] = u[(i1 + k) * n + i1 + k];
  const mask = work.mask.subarray(0, size);
  mask.fill(0);

  if (spec.kind === 'unstructured') {
    const scores = work.scores.subarray(0, size);
    const scratch = work.scratch.subarray(0, size);
    for (let k = 0; k < count; k++) {
      const d2 = d[k] * d[k];
      for (let r = 0; r < rows; r++) {
        const v = w1[k * rows + r];
        const sc = (v * v) / d2;
        scores[k * rows + r] = sc;
        scratch[k * rows + r] = sc !== sc ? Infinity : sc;
      }
    }
    const thresh = kthSmallest(scratch, Math.min(Math.floor(size * spec.sparsity), size - 1));
    for (let k = 0; k < size; k++) if (scores[k] <= thresh) mask[k] = 1;
  }

  const err = work.err.subarray(0, size);
  const es = work.es;
  const sub = subWidth(spec);
  const group = new Float64Array(spec.kind === 'nm' ? spec.m : 0);
  const chosen = new Uint8Array(group.length);
  let loss = 0;
  for (let s = 0; s < count; s += sub) {
    const se = Math.min(s + sub, count);
    for (let i = s; i < se; i++) {
      if (spec.kind === 'nm' && i % spec.m === 0) {
        const width = Math.min(spec.m, count - i);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < width; j++) {
            const v = w1[(i + j) * rows + r];
            group[j] = (v * v) / (d[i + j] * d[i + j]);
          }
          chosen.fill(0);
          markLowestInGroup(group, 0, width, spec.n, chosen);
          for (let j = 0; j < width; j++) if (chosen[j]) mask[(i + j) * rows + r] = 1;
        }
      }
      const di = d[i];
      const col = i * rows;
      const out = (i1 + i) * rows;
      const eo = (i - s) * rows;
      for (let r = 0; r < rows; r++) {
        const v = w1[col + r];
        const q = mask[col + r] ? 0 : grid ? quantizeValue(grid, r, v) : v;
        const diff = v - q;
        loss += (diff * diff) / (di * di);
        const e = diff / di;
        es[eo + r] = e;
        err[col + r] = e;
        wt[out + r] = q;
      }
      // The rank-1 update of the rest of the sub-block: W1[:, j] −= err · U[i, j], i < j < se.
      const urow = (i1 + i) * n + i1;
      for (let j = i + 1; j < se; j++) {
        const uij = u[urow + j];
        if (uij === 0) continue;
        const cj = j * rows;
        for (let r = 0; r < rows; r++) w1[cj + r] -= es[eo + r] * uij;
      }
    }
    sweep(w1, rows, es, se - s, u, (i1 + s) * n + i1, n, se, count);
  }
  return { loss: loss / 2, err };
}

/**
 * w1[:, j] −= es[k]·U[k, j] for the block columns j in [from, to) and the `width` errors k of a sub-block,
 * subtracted in k order (the order of the column-by-column loop). `ub` indexes U at (first error's row,
 * block start).
 */
function sweep(w1: Float64Array, rows: number, es: Float64Array, width: number, u: Float64Array, ub: number, n: number, from: number, to: number): void {
  if (width === 8) {
    const e0 = es.subarray(0, rows), e1 = es.subarray(rows, 2 * rows), e2 = es.subarray(2 * rows, 3 * rows), e3 = es.subarray(3 * rows, 4 * rows);
    const e4 = es.subarray(4 * rows, 5 * rows), e5 = es.subarray(5 * rows, 6 * rows), e6 = es.subarray(6 * rows, 7 * rows), e7 = es.subarray(7 * rows, 8 * rows);
    for (let j = from; j < to; j++) {
      const u0 = u[ub + j], u1 = u[ub + n + j], u2 = u[ub + 2 * n + j], u3 = u[ub + 3 * n + j];
      const u4 = u[ub + 4 * n + j], u5 = u[ub + 5 * n + j], u6 = u[ub + 6 * n + j], u7 = u[ub + 7 * n + j];
      const cj = j * rows;
      for (let r = 0; r < rows; r++) {
        w1[cj + r] = w1[cj + r] - e0[r] * u0 - e1[r] * u1 - e2[r] * u2 - e3[r] * u3 - e4[r] * u4 - e5[r] * u5 - e6[r] * u6 - e7[r] * u7;
      }
    }
    return;
  }
  for (let j = from; j < to; j++) {
    const cj = j * rows;
    for (let k = 0; k < width; k++) {
      const ukj = u[ub + k * n + j];
      if (ukj === 0) continue;
      const ek = k * rows;
      for (let r = 0; r < rows; r++) w1[cj + r] -= es[ek + r] * ukj;
    }
  }
}

/** W[:, i2:] −= Err1 · U[i1:i2, i2:], i.e. wtᵀ rows i2.. −= U[i1:i2, i2:]ᵀ · Err1ᵀ, in place. */
async function lazyBatchUpdate(wt: Float32Array, rows: number, n: number, u: Float64Array, i1: number, i2: number, err: Float32Array, work: BlockWork): Promise<void> {
  const count = i2 - i1;
  const rest = n - i2;
  // The first block's U rows are the widest: later blocks reuse the front of its buffer.
  work.ublock ??= new Float32Array(count * rest);
  const ublock = work.ublock.subarray(0, count * rest);
  for (let k = 0; k < count; k++) {
    const o = (i1 + k) * n + i2;
    for (let c = 0; c < rest; c++) ublock[k * rest + c] = u[o + c];
  }
  await gemmAccumulate(wt.subarray(i2 * rows), [rest, rows], ublock, [count, rest], err, [count, rows], { transA: true, alpha: -1, beta: 1 });
}
