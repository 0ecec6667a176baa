/**
 * Preconditioned conjugate gradients on the layer reconstruction objective with a fixed mask, batched over
 * the rows of a weight (ALPS, Meng et al. 2024; reference mazumder-lab/ALPS alps.py, cg_batch and its call).
 *
 * For each output row r with kept set S (the support), solve
 *     (H + λI)_SS x_S = ((H + λI) w0_r)_S
 * i.e. minimise the damped reconstruction error E_λ(x) = (w0 − x)ᵀ(H + λI)(w0 − x) over weights that are
 * zero off S, starting from the method's pruned row x0. H = (2/N) Σ XᵀX (stats.ts), w0 the dense row.
 *
 * As in the reference: CG starts at the pruned weights (so the error can only fall from the method's),
 * the ridge λ is damp · mean(diag H) (reference 0.01), at most `iterations` steps (reference maxiter = 10)
 * and a relative tolerance (reference rtol = 1e-4). The reference runs plain CG on H scaled to unit
 * diagonal (D^-½ H D^-½ with D = diag(H + λI)); that is exactly CG with the Jacobi preconditioner D⁻¹ on
 * H, which is what we run. Deliberate differences: a row stops when its own masked residual
 * ‖r_S‖ ≤ tol·‖b_S‖ (the reference tests the unmasked residual A·x − b, which never vanishes off the
 * support, so it always runs maxiter steps); inputs that were never active (H_jj = 0) are left out of
 * the support, since their weight does not change the output.
 *
 * What falls monotonically: CG minimises the error ‖x − x*‖ in the (H + λI)_SS norm over a growing
 * Krylov space, which is E_λ(x) up to a constant and equals the residual's norm in (H + λI)_SS⁻¹; the
 * Euclidean residual norm usually, not always, falls too. Both are in the trace.
 *
 * Precision: the one heavy product per step, P·H for a chunk of rows, runs through the engine in H's
 * dtype (float32 H like the reference's; pass a Float64Array for float64 products). Iterates, residuals,
 * search directions and every reduction are float64. Rows are processed in chunks of about
 * CHUNK_ELEMENTS values, so the scratch is a few float64 copies of a chunk, not of the weight.
 *
 * Between products, the per-row work (cgStart, cgStep, cgErrors, cgRound) runs over row ranges on every core
 * (engine/parallel.ts); rows are independent and the error sums are taken row by row in order, so the
 * results are the same bits on any number of cores.
 */
import { gemmInto, serial } from '../engine/gemm.js';
import { across, sharedF64, sharedU8 } from '../engine/parallel.js';
import { WorkArrays } from './work-arrays.js';

export interface PcgOptions {
  /** Most CG steps per row (reference 10). */
  iterations?: number;
  /** A row stops once ‖r_S‖ ≤ tolerance · ‖b_S‖ (reference 1e-4). */
  tolerance?: number;
  /** Absolute ridge λ added to H's diagonal. */
  ridge?: number;
  /** 1 = this weight may change; defaults to x0 ≠ 0 (the mask a method left). Never-active inputs are excluded. */
  support?: Uint8Array;
  /** Record the totals after each step (costs nothing heavy). */
  trace?: boolean;
  /** Where the chunk's work arrays come from (a caller's set kept between layers; default: fresh ones). */
  arrays?: WorkArrays;
}

export interface PcgResult {
  /** Steps run (the most any row took). */
  iterations: number;
  /** Rows that met the tolerance. */
  converged: number;
  /** Largest relative residual ‖r_S‖/‖b_S‖ over the rows at the end. */
  residual: number;
  /** Σ_rows (w0 − x)ᵀ H (w0 − x), undamped, before and after. */
  errorBefore: number;
  errorAfter: number;
  /** With `trace`: entry 0 is the start, entry k after step k (rows that stopped keep their last values). */
  trace?: { dampedError: number[]; residual: number[] };
}

export const PCG_ITERATIONS = 10;
export const PCG_TOLERANCE = 1e-4;
/** Rows per chunk are chosen so that one chunk holds about this many values. */
const CHUNK_ELEMENTS = 1 << 20;

/**
 * CG's start for rows [r0, r1) of a chunk, after b = H·w0 (in b) and q = H·x: b += λw0 and the full
 * residual g = b − (H + λI)x (its masked part drives CG); per row w0ᵀ(H + λI)w0 (E_λ's constant, c0),
 * ‖b_S‖ and rᵀz, and the first direction p (and prod, the next product's operand; 0 off the support).
 * A kernel for engine/parallel.ts: self-contained.
 */
function cgStart(
  w0: Float32Array, x: Float64Array, b: Float64Array, g: Float64Array, q: Float32Array | Float64Array, p: Float64Array, prod: Float32Array | Float64Array,
  mask: Uint8Array, dg: Float64Array, c0: Float64Array, bNorm: Float64Array, rz: Float64Array, active: Uint8Array,
  n: number, ridge: number, r0: number, r1: number,
): void {
  for (let r = r0; r < r1; r++) {
    const o = r * n;
    for (let i = o; i < o + n; i++) {
      b[i] = b[i] + ridge * w0[i];
      g[i] = b[i] - q[i] - ridge * x[i];
    }
    let c = 0, bb = 0, s = 0;
    for (let j = 0, i = o; j < n; j++, i++) {
      c += w0[i] * b[i];
      p[i] = 0;
      if (!mask[i]) continue;
      bb += b[i] * b[i];
      p[i] = g[i] / dg[j];
      s += g[i] * p[i];
    }
    c0[r] = c;
    bNorm[r] = Math.sqrt(bb);
    rz[r] = s;
    active[r] = 1;
    for (let i = o; i < o + n; i++) prod[i] = p[i];
  }
}

/**
 * Per row of [r0, r1): the damped error E_λ(x) = c0 − xᵀ(b + g) (since xᵀ(H + λI)x = xᵀ(b − g)), the
 * undamped one (E_λ less λ‖w0 − x‖²) and ‖r_S‖² from the masked g. A kernel for engine/parallel.ts.
 */
function cgErrors(
  x: Float64Array, b: Float64Array, g: Float64Array, w0: Float32Array, mask: Uint8Array, c0: Float64Array,
  damped: Float64Array, undamped: Float64Array, res2: Float64Array, n: number, ridge: number, r0: number, r1: number,
): void {
  for (let r = r0; r < r1; r++) {
    const o = r * n;
    let d2 = 0;
    for (let i = o; i < o + n; i++) d2 += (w0[i] - x[i]) ** 2;
    let e = c0[r];
    for (let i = o; i < o + n; i++) e -= x[i] * (b[i] + g[i]);
    damped[r] = e;
    undamped[r] = e - ridge * d2;
    let s = 0;
    for (let i = o; i < o + n; i++) if (mask[i]) s += g[i] * g[i];
    res2[r] = s;
  }
}

/** x32 = x (rounded) on the support, for rows [r0, r1). A kernel for engine/parallel.ts. */
function cgRound(x: Float64Array, mask: Uint8Array, x32: Float32Array, n: number, r0: number, r1: number): void {
  for (let i = r0 * n; i < r1 * n; i++) if (mask[i]) x32[i] = x[i];
}

/**
 * One CG step for rows [r0, r1) of a chunk, after q = H·p: the step along p, the new residual, its
 * preconditioned rᵀz and ‖r_S‖², the next direction (into p and prod, the next product's operand), and
 * a row that met the tolerance stops (p and prod zeroed). A kernel for engine/parallel.ts: self-contained.
 */
function cgStep(
  p: Float64Array, q: Float32Array | Float64Array, g: Float64Array, x: Float64Array, prod: Float32Array | Float64Array, mask: Uint8Array,
  dg: Float64Array, rz: Float64Array, active: Uint8Array, bNorm: Float64Array, n: number, ridge: number, tolerance: number, r0: number, r1: number,
): void {
  for (let r = r0; r < r1; r++) {
    if (!active[r]) continue;
    const o = r * n;
    // p is zero off the support, so the sums and updates run over the whole row without a branch
    // on the mask (a coin flip per entry): off the support they add 0 and leave x as it is.
    let pq = 0;
    for (let i = o; i < o + n; i++) pq += p[i] * (q[i] + ridge * p[i]);
    if (!(pq > 0)) {
      // Breakdown (p in H's null space, or underflow): nothing left to gain along p.
      active[r] = 0;
      continue;
    }
    const alpha = rz[r] / pq;
    // One pass: the step (off the support g changes too, E_λ reads the full g), then the
    // preconditioned rᵀz and ‖r_S‖² of the new residual on the support.
    let s = 0, res2 = 0;
    for (let j = 0, i = o; j < n; j++, i++) {
      x[i] += alpha * p[i];
      const gi = (g[i] -= alpha * (q[i] + ridge * p[i]));
      const g2 = gi * gi * mask[i];
      s += g2 / dg[j];
      res2 += g2;
    }
    const beta = s / rz[r];
    rz[r] = s;
    for (let j = 0, i = o; j < n; j++, i++) prod[i] = p[i] = (g[i] / dg[j] + beta * p[i]) * mask[i];
    if (!(Math.sqrt(res2) > tolerance * bNorm[r])) {
      active[r] = 0;
      p.fill(0, o, o + n);
      prod.fill(0, o, o + n);
    }
  }
}

/**
 * Re-solves `x` (rows × n, row-major, in place; float32 like the weights) on its support, towards the dense
 * rows `w0` (rows × n), for h = H (n × n, symmetric). Returns the step count, residual and errors.
 */
export async function pcgRefine(h: Float32Array | Float64Array, n: number, w0: Float32Array, x: Float32Array, rows: number, opts: PcgOptions = {}): Promise<PcgResult> {
  if (h.length !== n * n) throw new RangeError(`pcg: H has ${h.length} values, not ${n}x${n}`);
  if (w0.length !== rows * n || x.length !== rows * n) throw new RangeError(`pcg: weights must be ${rows}x${n}`);
  if (opts.support && opts.support.length !== rows * n) throw new RangeError(`pcg: support must be ${rows}x${n}`);
  const iterations = opts.iterations ?? PCG_ITERATIONS;
  const tolerance = opts.tolerance ?? PCG_TOLERANCE;
  const ridge = opts.ridge ?? 0;
  const live = new Uint8Array(n);
  for (let j = 0; j < n; j++) live[j] = h[j * n + j] > 0 ? 1 : 0;
  // The Jacobi preconditioner. Never-active inputs are never in the support; their 1 only keeps the
  // branch-free updates' off-support terms (multiplied by 0) finite.
  const dg = sharedF64(n);
  for (let j = 0; j < n; j++) dg[j] = live[j] ? h[j * n + j] + ridge : 1;

  const result: PcgResult = { iterations: 0, converged: 0, residual: 0, errorBefore: 0, errorAfter: 0 };
  const chunk = Math.max(1, Math.min(rows, Math.floor(CHUNK_ELEMENTS / Math.max(1, n))));
  const traces: { dampedError: Float64Array; residual2: Float64Array; bNorm2: number }[] = [];
  // One set of chunk arrays serves every chunk (fresh memory costs more than some of the passes).
  const arrays = opts.arrays ?? new WorkArrays();
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const cr = Math.min(chunk, rows - r0);
    const t = await solveChunk(h, n, dg, live, w0.subarray(r0 * n, (r0 + cr) * n), x.subarray(r0 * n, (r0 + cr) * n), cr,
      opts.support?.subarray(r0 * n, (r0 + cr) * n), iterations, tolerance, ridge, result, !!opts.trace, arrays);
    if (t) traces.push(t);
  }
  if (opts.trace) {
    const dampedError: number[] = [], residual: number[] = [];
    const bNorm2 = traces.reduce((s, t) => s + t.bNorm2, 0);
    for (let k = 0; k <= iterations; k++) {
      dampedError.push(traces.reduce((s, t) => s + t.dampedError[k], 0));
      residual.push(Math.sqrt(traces.reduce((s, t) => s + t.residual2[k], 0) / (bNorm2 || 1)));
    }
    result.trace = { dampedError, residual };
  }
  return result;
}

async function solveChunk(
  h: Float32Array | Float64Array, n: number, dg: Float64Array, live: Uint8Array,
  w0: Float32Array, x32: Float32Array, cr: number, support: Uint8Array | undefined,
  iterations: number, tolerance: number, ridge: number, result: PcgResult, trace: boolean, arrays: WorkArrays,
) {
  const size = cr * n;
  // The step after each product runs on every core (engine/parallel.ts), on shared arrays; the product
  // reads `prod` and writes `q`, plain arrays (onnxruntime-node refuses shared ones), copied to and from
  // their shared twins.
  const mask = arrays.sharedU8('pcg.mask', size);
  for (let r = 0, i = 0; r < cr; r++) for (let j = 0; j < n; j++, i++) mask[i] = (support ? support[i] : x32[i] !== 0) && live[j] ? 1 : 0;
  const x = arrays.sharedF64('pcg.x', size);
  x.set(x32);
  const w0S = arrays.sharedF32('pcg.w0', size);
  w0S.set(w0);
  // gemm operands, in H's dtype
  const prod = h instanceof Float32Array ? arrays.f32('pcg.prod', size) : arrays.f64('pcg.prod64', size);
  const q = h instanceof Float32Array ? arrays.f32('pcg.q', size) : arrays.f64('pcg.q64', size);
  const prodS = h instanceof Float32Array ? arrays.sharedF32('pcg.prod', size) : arrays.sharedF64('pcg.prod64', size);
  const qS = h instanceof Float32Array ? arrays.sharedF32('pcg.q', size) : arrays.sharedF64('pcg.q64', size);
  const multiply = async (src: ArrayLike<number> | null) => {
    if (src) prod.set(src); // rounds as an element-by-element assignment would
    await serial(() => gemmInto(q, prod, [cr, n], h, [n, n]));
  };

  // The products H·w0 (kept in b, exactly: b is float64) and H·x, then cgStart per row.
  const b = arrays.sharedF64('pcg.b', size);
  await multiply(w0);
  b.set(q);
  const g = arrays.sharedF64('pcg.g', size);
  await multiply(x);
  qS.set(q);
  const c0 = sharedF64(cr), bNorm = sharedF64(cr), rz = sharedF64(cr);
  const active = sharedU8(cr);
  const p = arrays.sharedF64('pcg.p', size);
  await across(cgStart, cr, [w0S, x, b, g, qS, p, prodS, mask, dg, c0, bNorm, rz, active, n, ridge], n);
  const damped = sharedF64(cr), undamped = sharedF64(cr), res2 = sharedF64(cr);
  const errors = () => across(cgErrors, cr, [x, b, g, w0S, mask, c0, damped, undamped, res2, n, ridge], n);
  await errors();
  result.errorBefore += sum(undamped);
  // A row already within tolerance does not start.
  for (let r = 0; r < cr; r++) {
    if (Math.sqrt(res2[r]) > tolerance * bNorm[r]) continue;
    active[r] = 0;
    p.fill(0, r * n, (r + 1) * n);
    prodS.fill(0, r * n, (r + 1) * n);
  }

  const tr = trace ? { dampedError: new Float64Array(iterations + 1), residual2: new Float64Array(iterations + 1), bNorm2: 0 } : undefined;
  if (tr) {
    for (let r = 0; r < cr; r++) tr.bNorm2 += bNorm[r] * bNorm[r];
    tr.dampedError[0] = sum(damped);
    tr.residual2[0] = sum(res2);
  }

  let k = 0;
  while (k < iterations && active.some((a) => a)) {
    k++;
    prod.set(prodS);
    await multiply(null); // q = H·p per row (H symmetric); prod holds p in H's dtype
    qS.set(q);
    await across(cgStep, cr, [p, qS, g, x, prodS, mask, dg, rz, active, bNorm, n, ridge, tolerance], n);
    if (tr) {
      await errors();
      tr.dampedError[k] = sum(damped);
      tr.residual2[k] = sum(res2);
    }
  }
  if (tr) for (let j = k + 1; j <= iterations; j++) {
    tr.dampedError[j] = tr.dampedError[k];
    tr.residual2[j] = tr.residual2[k];
  }

  result.iterations = Math.max(result.iterations, k);
  await errors();
  result.errorAfter += sum(undamped);
  for (let r = 0; r < cr; r++) {
    const rel = bNorm[r] > 0 ? Math.sqrt(res2[r]) / bNorm[r] : 0;
    if (rel <= tolerance) result.converged++;
    result.residual = Math.max(result.residual, rel);
  }
  const xS = arrays.sharedF32('pcg.x32', size);
  xS.set(x32);
  await across(cgRound, cr, [x, mask, xS, n], n);
  x32.set(xS);
  return tr;
}

/** Σ a in index order (the per-row terms of an error, summed as one loop over the rows would). */
function sum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}
