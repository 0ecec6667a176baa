/**
 * ALPS (Meng, Behdin, Wang & Mazumder 2024; reference mazumder-lab/ALPS alps.py, ALPS_prune.ALPS_admm):
 * the layer's reconstruction error ‖W X − Ŵ X‖² is minimised under the sparsity constraint by ADMM, then
 * the kept weights are re-solved on the final mask by conjugate gradients. Only H = (2/N) Σ XᵀX (stats.ts)
 * is read; its scale does not matter (the damping is relative and H is normalised).
 *
 * Steps, as in the reference (defaults: ALPS_DEFAULTS):
 *  1. Hd = H + damp · mean(diag H) · I (damp 0.01, shears' --damp); s_j = sqrt(Hd_jj) + 1e-8;
 *     Hn = S⁻¹ Hd S⁻¹ (unit diagonal). Variables are the scaled weights B = W S, so Hn is also CG's
 *     Jacobi preconditioning: the reference's identity M in scaled variables.
 *  2. Y = B₀ Hn (B₀ the dense scaled weights). ADMM on ½ Σ_r (b_r − b₀_r)ᵀ Hn (b_r − b₀_r) with the split
 *     B = D, D sparse, penalty ρ (from 0.1):
 *        B ← (Y − V + ρ D)(Hn + ρ I)⁻¹;   D ← P((V + ρ B)/ρ);   V ← V + ρ (B − D)
 *     P keeps the largest |entries|: unstructured over the whole matrix (the reference's topk over the
 *     flattened layer, not per row: round((1 − p) · rows · cols) kept), N:M the N smallest |entries| of
 *     every group of M consecutive columns of each output row pruned. D starts at P(B₀), V at 0.
 *  3. Every 3 iterations the support change c (entries whose pruned/kept state differs from 3 iterations
 *     before) sets ρ, with k = the kept count (unstructured) or the pruned count (N:M), as the reference:
 *     c/k > 0.1: ρ ×1.3; c/k > 0.005: ρ ×1.2; c ≥ 1: ρ ×1.1 once ρ has been raised, else ρ /5 and a restart
 *     from B₀, P(B₀), V = 0; c = 0: stop once ρ has been raised, else ρ /5. ρ ≤ 1e6; (Hn + ρ I)⁻¹ is
 *     recomputed; from iteration 30 on, c/k < 0.0003 stops. At most 300 iterations.
 *  4. The final mask is P(B); the kept entries of each row solve Hn_SS b_S = y_S by conjugate gradients
 *     from P(B): at most 10 iterations, relative tolerance 1e-4; Ŵ = B S⁻¹. This runs in pcg.ts (shared
 *     with --refine) on H + damp·mean(diag H)·I with the Jacobi preconditioner, in the unscaled weights:
 *     the same iterates as the reference's plain CG on Hn (up to its 1e-8 in s).
 *
 * Deliberate differences from the reference:
 *  - (Hn + ρ I)⁻¹ = UᵀU at each ρ, in float64: U the Cholesky inverse factor (engine,
 *    choleskyInverseUpper; H⁻¹ = UᵀU, U upper), the product formed only on and above the diagonal and
 *    mirrored (shiftedInverse), instead of one float64 eigendecomposition Q diag(1/(λ + ρ)) Qᵀ: the engine
 *    has no eigensolver, and the eigendecomposition would not make a ρ change cheaper. The reference forms
 *    Q·diag·Qᵀ in float64 at each ρ, 2n³ flops, against ≈ n³ + n³/3 here; applying Q and Qᵀ to the rows
 *    at every iteration instead (two rows × n × n products, no n³ per ρ) pays only for rows < ~2n/3, and
 *    an eigensolver written here would cost more than a layer's ~10–15 inverses (its tridiagonalisation
 *    alone is 4n³/3 flops of memory-bound matrix-vector work in JS). The inverse is the same matrix,
 *    rounded to float32 for the ADMM products as in the reference. (A float32 UᵀU, tried, moved the
 *    stories260K perplexities by −1.5 % to +4.5 %; float64 reproduces them.)
 *  - Each input's inverses are kept by ρ while its layers are pruned (InverseCache, up to 32 MiB): the
 *    layers reading one input (q/k/v, gate/up) mostly walk the same ρ schedule, and the later ones reuse
 *    the same bits instead of forming them again. The reference forms every one.
 *  - The reference forms the next inverse before its iteration-30 stopping test; when the test stops the
 *    loop that inverse is never used, and we do not form it.
 *  - A row's CG stops when its residual on its kept entries is ≤ 1e-4 of its right-hand side there. The
 *    reference tests the residual over all entries, which does not vanish off the mask, so it always runs
 *    its 10 iterations. Never-active inputs (H_jj = 0) are left out of CG's support (pcg.ts).
 *  - The reference also evaluates the objective every 3 iterations only to print it; we do not.
 *  - Ties in P are taken in index order (torch.topk leaves them unspecified); the support is the mask we
 *    chose, not `entry == 0` (a kept weight that is exactly 0 stays in the support). N:M tails: a last
 *    group of t < M columns loses min(N, t) (nm.ts); the reference requires cols % M == 0.
 *  - The reported loss is ½ Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r), comparable to SparseGPT's (the notes give it
 *    before PCG too); the reference returns the error relative to Σ_r w_rᵀ Hd w_r.
 *
 * Precision: as in the reference, the ADMM and CG products run in float32 (engine gemm) and the inverse is
 * formed in float64; CG's inner products, step sizes and iterates are float64 (pcg.ts).
 *
 * Cost and memory: one (rows × n) × (n × n) product per ADMM iteration, one float64 factorisation and
 * one float64 n³/3 product per ρ change (every 3 iterations; fewer for the later layers of a shared
 * input), one product per CG iteration. Besides the products, an ADMM iteration is two branch-free passes
 * over the rows × n entries (scoring with the threshold's window gathered, then D, V and the next
 * right-hand side together), run on every core (engine/parallel.ts: the same arithmetic per entry, so the
 * same bits on any number of cores; an ordered tie at the threshold runs as one range); the
 * factorisation dominates where n is large (MLP down projection). Besides H, a layer holds Hn (float32,
 * shared by the layers reading the input), the float64 factor with its scratch and the product's
 * (≈ 15 n² bytes), the inverse in float32 (4 n²), up to 32 MiB of kept inverses, and about twelve
 * rows × n arrays (B and R twice: onnxruntime-node refuses the shared arrays the passes work on, so
 * the product's operands are copied to and from them). The work arrays and inverses are kept for the next layer
 * reading the same input and dropped with the input (work-arrays.ts; fresh pages cost ~3 ms/MiB here,
 * ~0.4 s per MLP layer of the ~100M model).
 */
import { ShearsError, usageError } from '../errors.js';
import { choleskyInverseUpper, matmul, NotPositiveDefiniteError, releaseScratch } from '../engine/linalg.js';
import { factorScratch } from '../engine/cholesky.js';
import { gemmInto, serial } from '../engine/gemm.js';
import { scratch64 } from '../engine/scratch.js';
import { type PruneResult, type SparsitySpec, type Weight, checkSpec, checkWeight, countZeros, tailNote } from './spec.js';
import { kthSmallest } from './select.js';
import { markLowestInGroup } from './nm.js';
import type { PruneMethod } from './method.js';
import { pcgRefine } from './pcg.js';
import { WorkArrays } from './work-arrays.js';
import { across, maxRanges } from '../engine/parallel.js';

/** The reference's defaults (ALPS_admm's arguments, llama.py/opt.py call it with rho = 0.1, and cg_batch's). */
export const ALPS_DEFAULTS = {
  damp: 0.01,
  rho: 0.1,
  maxIter: 300,
  updateIter: 3,
  switchIter: 30,
  rhoMax: 1e6,
  cgIter: 10,
  cgTol: 1e-4,
} as const;

export interface AlpsOptions {
  /** Relative damping of H (fraction of mean(diag H)); shears' --damp, reference 0.01. */
  damp?: number;
  /** Initial ADMM penalty (0.1). */
  rho?: number;
  /** ADMM iteration limit (300). */
  maxIter?: number;
  /** CG iteration limit on the final mask (10); 0 skips the refinement. */
  cgIter?: number;
  /**
   * Work arrays and inverses kept for the next layer that reads the same input (the method keeps one of
   * each per layer input, so they go with it); by default fresh ones.
   */
  arrays?: WorkArrays;
  inverses?: InverseCache;
}

export const alps: PruneMethod = {
  statistic: 'gram',
  async prune(w, input, spec, opts) {
    const damp = opts.damp ?? ALPS_DEFAULTS.damp;
    const gram = await input.shared(`alps.normalized:${damp}`, async () => normalizeGram(input.gram(), input.cols, damp));
    // Kept for the other layers reading this input (q/k/v, gate/up) and dropped with it, so that a
    // block's later inputs and the next block's forward pass never hold them.
    const arrays = await input.shared('alps.arrays', async () => new WorkArrays());
    const inverses = await input.shared(`alps.inverses:${damp}`, async () => new InverseCache());
    return alpsPrune(w, gram, spec, { damp, arrays, inverses });
  },
};

/** Step 1 for one input's H: the damped, unit-diagonal Hn and the scales s. Shared by the layers reading the input. */
export interface NormalizedGram {
  readonly n: number;
  /** H as given (read, not modified: PCG's matrix). */
  readonly h: Float32Array | Float64Array;
  /** Hn [n, n] float32. */
  readonly hn: Float32Array;
  /** s_j = sqrt(Hd_jj) + 1e-8. */
  readonly scale: Float64Array;
  /** The absolute damping added to H's diagonal (damp · mean(diag H)). */
  readonly added: number;
  readonly damp: number;
}

export function normalizeGram(h: Float32Array | Float64Array, n: number, damp: number = ALPS_DEFAULTS.damp): NormalizedGram {
  if (!(Number.isFinite(damp) && damp >= 0)) throw usageError(`--damp must be a non-negative number (got ${damp})`);
  if (h.length !== n * n) throw new RangeError(`ALPS Hessian has ${h.length} values, not ${n}x${n}`);
  let diagSum = 0;
  for (let j = 0; j < n; j++) diagSum += h[j * n + j];
  const added = n > 0 ? (damp * diagSum) / n : 0;
  const scale = new Float64Array(n);
  for (let j = 0; j < n; j++) scale[j] = Math.sqrt(h[j * n + j] + added) + 1e-8;
  const hn = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const o = i * n;
    const si = scale[i];
    for (let j = 0; j < n; j++) hn[o + j] = (h[o + j] + (i === j ? added : 0)) / (si * scale[j]);
  }
  return { n, h, hn, scale, added, damp };
}

/**
 * Prunes w in place. `h` is the layer input's H (normalised here) or its NormalizedGram (then opts.damp
 * is ignored: the one it was made with holds).
 */
export async function alpsPrune(w: Weight, h: Float32Array | Float64Array | NormalizedGram, spec: SparsitySpec, opts: AlpsOptions = {}): Promise<PruneResult> {
  checkWeight(w);
  checkSpec(spec);
  const { rows, cols: n } = w;
  const total = rows * n;
  const gram = 'hn' in h ? h : normalizeGram(h, n, opts.damp ?? ALPS_DEFAULTS.damp);
  if (gram.n !== n) throw new RangeError(`ALPS Hessian is ${gram.n}x${gram.n}, the weight has ${n} columns`);
  if (total === 0) return { pruned: 0, total, loss: 0, damp: gram.damp };
  const maxIter = opts.maxIter ?? ALPS_DEFAULTS.maxIter;
  const cgIter = opts.cgIter ?? ALPS_DEFAULTS.cgIter;
  const arrays = (opts.arrays ?? new WorkArrays()).lease();
  try {
    return await alpsLayer(w, gram, spec, arrays, opts.inverses ?? new InverseCache(), opts.rho ?? ALPS_DEFAULTS.rho, maxIter, cgIter);
  } finally {
    arrays.release();
  }
}

/** alpsPrune's work on one layer, with its arrays from `arrays`. */
async function alpsLayer(w: Weight, gram: NormalizedGram, spec: SparsitySpec, arrays: WorkArrays, inverses: InverseCache, rho: number, maxIter: number, cgIter: number): Promise<PruneResult> {
  const { rows, cols: n } = w;
  const total = rows * n;
  const { hn, scale } = gram;
  // B₀ = W S and Y = B₀ Hn, [rows, n] (the reference's Bᵀ and YtX: row r is output r).
  const b0 = arrays.f32('b0', total);
  for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) b0[r * n + j] = w.data[r * n + j] * scale[j];
  // Y is formed in B's plain array (runAdmm keeps it in a shared one before B is first written).
  const y = await matmul(b0, [rows, n], hn, [n, n], { out: arrays.f32('b', total) });

  const proj = new Projector(spec, rows, n, arrays);
  const admm = await runAdmm(b0, y, hn, n, rows, proj, rho, maxIter, arrays, inverses);
  const b = admm.b;
  const mask = proj.project(b, b); // the final support: P(B), in place

  // Step 4 (pcg.ts): on H with ridge `added` and Jacobi preconditioning, which is the reference's plain CG
  // on Hn in the scaled variables. It also measures the layer's error Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r).
  const support = arrays.u8('support', total);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) {
      const k = r * n + j;
      support[k] = mask[k] ? 0 : 1;
      b[k] = mask[k] ? 0 : b[k] / scale[j];
    }
  }
  const cg = await pcgRefine(gram.h, n, w.data, b, rows, { iterations: cgIter, tolerance: ALPS_DEFAULTS.cgTol, ridge: gram.added, support, arrays });
  w.data.set(b);
  const notes = [
    `ALPS: ${admm.iterations} ADMM iterations (final rho ${+admm.rho.toPrecision(4)}${admm.restarts ? `, ${admm.restarts} restart(s)` : ''}), ` +
      `${cg.iterations} PCG iterations (${cg.converged} of ${rows} rows converged, residual ${+cg.residual.toPrecision(3)}), error ${+cg.errorBefore.toPrecision(4)} before PCG`,
    ...tailNote(n, spec),
  ];
  return { pruned: countZeros(w.data), total, loss: cg.errorAfter / 2, damp: gram.damp, notes };
}

/**
 * P: the mask (1 = prune) of a [rows, n] matrix from its squared entries, and the projection itself.
 * Unstructured: the `prune` smallest squares over the whole matrix, ties in index order. The threshold is
 * selected among the entries near the previous iteration's (it moves little between ADMM iterations):
 * the pass that forms the scores also counts the entries below a window around it and gathers those
 * inside, and only those are selected from; when the window misses, it widens, then the whole matrix is
 * selected from. Same answer as a full selection, without its passes.
 */
class Projector {
  readonly mask: Uint8Array;
  /** The reference's k_spar: kept entries (unstructured) or pruned entries (N:M); the support-change scale. */
  readonly k: number;
  /** Squared entries of the last matrix scored. */
  readonly scores: Float32Array;
  private readonly prune: number;
  private readonly scratch: Float32Array;
  /** pick()'s copy of the window, which kthSmallest leaves in no particular order (grown as needed). */
  private saved = new Float32Array(0);
  private hint = NaN;
  /** How many scores equal the last threshold selected. */
  private equal = 0;
  /** Half-width of scoreAdmm's window relative to the hint: a few times the threshold's last move. */
  private width = WINDOW;
  /** The window gathered while scoring (unstructured): entries below it, entries inside it. */
  private below = -1;
  private inside = 0;

  constructor(private readonly spec: SparsitySpec, private readonly rows: number, private readonly n: number, arrays: WorkArrays) {
    const total = rows * n;
    // Shared: the ADMM passes run on every core (engine/parallel.ts).
    this.mask = arrays.sharedU8('mask', total);
    this.scores = arrays.sharedF32('scores', total);
    if (spec.kind === 'unstructured') {
      const kept = roundHalfEven((1 - spec.sparsity) * total);
      this.prune = total - kept;
      this.k = kept;
      this.scratch = arrays.sharedF32('scratch', total + maxRanges()); // range i gathers from k0 + i
    } else {
      this.prune = 0;
      this.k = (total * spec.n) / spec.m;
      this.scratch = new Float32Array(0);
    }
  }

  /** dst = P(src) (dst may be src); returns this.mask, which now marks the pruned entries. */
  project(src: Float32Array, dst: Float32Array): Uint8Array {
    const { mask, scores } = this;
    const total = src.length;
    for (let k = 0; k < total; k++) scores[k] = src[k] * src[k];
    this.below = -1;
    const cut = this.cut();
    if (cut) this.markBelow(cut.t, cut.ties);
    for (let k = 0; k < total; k++) dst[k] = mask[k] ? 0 : src[k];
    return mask;
  }

  /**
   * ADMM's D-step input z = (V + ρB)/ρ (into z) and its scores, with the threshold's window gathered in
   * the same pass. Then `cut()` gives the threshold, or marks the N:M mask.
   */
  async scoreAdmm(b: Float32Array, v: Float32Array, rho: number, z: Float32Array): Promise<void> {
    const { scores, scratch } = this;
    const total = b.length;
    const hint = this.hint;
    if (this.spec.kind === 'unstructured' && this.prune > 0 && hint > 0 && Number.isFinite(hint)) {
      const lo = hint * (1 - this.width), hi = hint * (1 + this.width);
      const counts = await across<[number, number, number]>(scoreWindowPass, total, [b, v, z, scores, scratch, rho, lo, hi]);
      // Each range gathered its window entries from scratch[k0 + part]: close the gaps, in range order.
      let below = 0, inside = 0;
      for (const [b1, in1, from] of counts) {
        if (from !== inside) scratch.copyWithin(inside, from, from + in1);
        below += b1;
        inside += in1;
      }
      this.below = below;
      this.inside = inside;
    } else {
      await across(scorePass, total, [b, v, z, scores, rho]);
      this.below = -1;
    }
  }

  /**
   * From the current scores: for unstructured, the threshold t and how many entries equal to t are
   * pruned (in index order; entries below t are all pruned), or null when t is +Infinity or nothing is
   * pruned, after which the mask is already complete. For N:M the mask is marked and null returned.
   */
  cut(): Cut | null {
    const { mask, scores, spec, rows, n } = this;
    const total = scores.length;
    if (spec.kind !== 'unstructured') {
      mask.fill(0);
      for (let r = 0; r < rows; r++) for (let g = 0; g < n; g += spec.m) markLowestInGroup(scores, r * n + g, Math.min(spec.m, n - g), spec.n, mask);
      return null;
    }
    const prune = this.prune;
    if (prune === 0) {
      mask.fill(0);
      return null;
    }
    const { t, below } = this.threshold(prune - 1);
    if (t === Infinity) {
      // NaN stood in as +Infinity (torch sorts NaN last): entries equal to +Infinity first, then NaN, in index order.
      this.markBelow(t, prune - below);
      let left = prune - below;
      for (let k = 0; k < total && left > 0; k++) if (scores[k] === Infinity) left--;
      for (let k = 0; k < total && left > 0; k++) if (scores[k] !== scores[k]) (mask[k] = 1), left--;
      return null;
    }
    return { t, ties: prune - below, equal: this.equal };
  }

  /** mask = scores < t, and the first `ties` entries equal to t in index order. */
  private markBelow(t: number, ties: number): void {
    const { mask, scores } = this;
    const total = scores.length;
    for (let k = 0; k < total; k++) {
      const v = scores[k];
      mask[k] = v < t || (v === t && ties-- > 0) ? 1 : 0;
    }
  }

  /** The value at index `at` of the sorted scores (NaN as +Infinity), and how many scores are below it. */
  private threshold(at: number): { t: number; below: number } {
    const last = this.hint;
    const found = this.select(at);
    // The next window: three times this move, within [WINDOW, 1/2] (a wider window costs a slightly
    // larger selection; a miss costs whole passes).
    const move = last > 0 && Number.isFinite(last) ? Math.abs(found.t - last) / last : Infinity;
    this.width = Math.min(0.5, Math.max(WINDOW, 3 * move));
    return found;
  }

  private select(at: number): { t: number; below: number } {
    const { scores, scratch } = this;
    const total = scores.length;
    // The window gathered by scoreAdmm, then wider ones around the last threshold.
    if (this.below >= 0 && this.below <= at && at < this.below + this.inside) return this.pick(this.below, this.inside, at);
    const first = this.below >= 0 ? Math.min(0.5, this.width * 4) : WINDOW;
    this.below = -1;
    for (let delta = first; this.hint > 0 && Number.isFinite(this.hint) && delta < 1; delta *= 4) {
      const lo = this.hint * (1 - delta), hi = this.hint * (1 + delta);
      let below = 0, inside = 0;
      for (let k = 0; k < total; k++) {
        const v = scores[k];
        below += +(v < lo);
        scratch[inside] = v;
        inside += +(v >= lo) & +(v <= hi);
      }
      if (below <= at && at < below + inside) return this.pick(below, inside, at);
    }
    for (let k = 0; k < total; k++) {
      const v = scores[k];
      scratch[k] = v !== v ? Infinity : v;
    }
    const t = (this.hint = kthSmallest(scratch.subarray(0, total), at));
    let below = 0, equal = 0;
    for (let k = 0; k < total; k++) {
      below += +(scores[k] < t);
      equal += +(scores[k] === t);
    }
    this.equal = equal;
    return { t, below };
  }

  /** Selects index `at` overall from the `inside` window entries in scratch, `below` entries lying under the window. */
  private pick(below: number, inside: number, at: number): { t: number; below: number } {
    const w = this.scratch.subarray(0, inside);
    // kthSmallest leaves w in no particular order: w's count below t and equal to t (every score
    // equal to t lies in the window) are taken from the saved copy.
    if (this.saved.length < inside) this.saved = new Float32Array(inside + (inside >> 1));
    const saved = this.saved.subarray(0, inside);
    saved.set(w);
    const t = (this.hint = kthSmallest(w, at - below));
    let under = below, equal = 0;
    for (let i = 0; i < inside; i++) {
      const v = saved[i];
      under += +(v < t);
      equal += +(v === t);
    }
    this.equal = equal;
    return { t, below: under };
  }
}

/** Half-width of the first threshold window, relative to the last threshold. */
const WINDOW = 1 / 16;


/** numpy's round (half to even), which the reference applies to the kept count. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The most bytes of inverses InverseCache holds (≈ 13 of a 768-wide input's, 2 of a 2048-wide one's). */
const INVERSE_CACHE_BYTES = 32 << 20;

/**
 * (Hn + ρI)⁻¹ of one input, by ρ. The layers reading one input (q/k/v, gate/up) mostly walk the same ρ
 * schedule (it depends on their support changes only through the thresholds 0.1 and 0.005), so the later
 * ones reuse the first one's inverses: the same bits as forming them again. Emptied if another Hn comes;
 * at most INVERSE_CACHE_BYTES.
 */
export class InverseCache {
  private owner: WeakRef<Float32Array> | undefined;
  private readonly byRho = new Map<number, Float32Array>();
  private bytes = 0;

  of(hn: Float32Array): this {
    if (this.owner?.deref() !== hn) {
      this.byRho.clear();
      this.bytes = 0;
      this.owner = new WeakRef(hn);
    }
    return this;
  }

  get(rho: number): Float32Array | undefined {
    return this.byRho.get(rho);
  }

  keep(rho: number, inv: Float32Array): void {
    if (this.bytes + inv.byteLength > INVERSE_CACHE_BYTES) return;
    this.byRho.set(rho, Float32Array.from(inv));
    this.bytes += inv.byteLength;
  }
}


/** Rows of (Hn + ρI)⁻¹ formed per product in shiftedInverse: few products, each output well inside one engine chunk. */
const INVERSE_ROWS = 256;

/**
 * (Hn + ρ I)⁻¹ into `out` (float32) as UᵀU, all in float64: U (upper, H⁻¹ = UᵀU) is the engine's
 * Cholesky inverse factor (choleskyInverseUpper, in place in `work`), and UᵀU is formed by row blocks,
 * each only from column r0 on (the rest is its mirror) and only from U's rows k < r1 (U is upper):
 * rows [r0, r1) × columns [r0, n) = U[0:r1, r0:r1]ᵀ · U[0:r1, r0:n], ≈ n³/3 flops against the n³ of
 * forming every row. `ws` is the gathered operands' and the block's float64 scratch (inverseScratch).
 */
async function shiftedInverse(hn: Float32Array, n: number, rho: number, work: Float64Array, ws: Float64Array, out: Float32Array): Promise<void> {
  work.set(hn);
  for (let j = 0; j < n; j++) work[j * n + j] += rho;
  try {
    await choleskyInverseUpper(work, n, { out: work });
  } catch (e) {
    if (!(e instanceof NotPositiveDefiniteError)) throw e;
    throw new ShearsError(`ALPS: the ${n}x${n} Hessian plus rho ${rho} is not positive definite; more calibration data or a larger --damp may help`);
  }
  for (let r0 = 0; r0 < n; r0 += INVERSE_ROWS) {
    const r1 = Math.min(n, r0 + INVERSE_ROWS), r = r1 - r0, w = n - r0;
    const left = ws.subarray(0, r1 * r), right = ws.subarray(r1 * r, r1 * r + r1 * w), block = ws.subarray(r1 * (r + w), r1 * (r + w) + r * w);
    for (let k = 0; k < r1; k++) {
      left.set(work.subarray(k * n + r0, k * n + r1), k * r);
      right.set(work.subarray(k * n + r0, k * n + n), k * w);
    }
    await serial(() => gemmInto(block, left, [r1, r], right, [r1, w], { transA: true }));
    for (let i = 0; i < r; i++) out.set(block.subarray(i * w, (i + 1) * w), (r0 + i) * n + r0);
    // The lower triangle mirrors the upper (the diagonal block's own lower part included): block column
    // c is row r0 + c, columns [r0, r0 + min(c, r)). Written row by row, read down the block's columns
    // (r cache lines, reused for the next column): several times faster than mirroring the whole matrix.
    for (let c = 1; c < w; c++) {
      const o = (r0 + c) * n + r0, m = Math.min(c, r);
      for (let i = 0, k = c; i < m; i++, k += w) out[o + i] = block[k];
    }
  }
}

/** Float64 elements of shiftedInverse's scratch: its largest block's two gathered operands and product. */
function inverseScratch(n: number): number {
  let most = 0;
  for (let r0 = 0; r0 < n; r0 += INVERSE_ROWS) {
    const r1 = Math.min(n, r0 + INVERSE_ROWS), r = r1 - r0, w = n - r0;
    most = Math.max(most, r1 * (r + w) + r * w);
  }
  return most;
}

/** cut()'s threshold: scores below t are pruned, and the first `ties` (in index order) of the `equal` scores equal to t. */
interface Cut {
  t: number;
  ties: number;
  equal: number;
}

// The ADMM passes, run over ranges by engine/parallel.ts on every core. Kernels: self-contained functions
// of their arguments and (k0, k1, part), rebuilt in the workers from their source.

/** z = (V + ρB)/ρ and its scores over [k0, k1), gathering the scores inside [lo, hi] from scratch[k0 + part]. */
function scoreWindowPass(b: Float32Array, v: Float32Array, z: Float32Array, scores: Float32Array, scratch: Float32Array, rho: number, lo: number, hi: number, k0: number, k1: number, part: number): [number, number, number] {
  const from = k0 + part;
  let below = 0, inside = 0;
  // Branch-free (the comparisons are coin flips near the threshold): every score is written at
  // scratch[from + inside] and kept there only if it lies in the window.
  for (let k = k0; k < k1; k++) {
    const x = Math.fround((v[k] + rho * b[k]) / rho);
    z[k] = x;
    const f = Math.fround(x * x); // the float32 score of the float32 z, as project() forms it
    scores[k] = f;
    below += +(f < lo);
    scratch[from + inside] = f;
    inside += +(f >= lo) & +(f <= hi);
  }
  return [below, inside, from];
}

/** z = (V + ρB)/ρ and its scores over [k0, k1). */
function scorePass(b: Float32Array, v: Float32Array, z: Float32Array, scores: Float32Array, rho: number, k0: number, k1: number): void {
  for (let k = k0; k < k1; k++) {
    const x = Math.fround((v[k] + rho * b[k]) / rho);
    z[k] = x;
    scores[k] = x * x;
  }
}

/**
 * One ADMM iteration after the B-step and the scoring, over [k0, k1): D = P(z) (the mask from the
 * threshold t on the scores with `ties` scores equal to t pruned in index order, or `mask` as cut()
 * marked it when t is NaN), V += ρ(B − D), then either the next right-hand side r = Y − V + ρD
 * (mid-cycle) or, when ρ is about to be updated (`update`), D itself and the support change against
 * prevMask, which becomes the new mask (returned: the change count). Branch-free, as the mask is a coin
 * flip per entry: D = z·(1 − mask) is z or ±0 (a pruned z is finite: its score is ≤ the finite t; under
 * N:M a non-finite z means ADMM has already diverged).
 */
function dvPass(
  b: Float32Array, v: Float32Array, z: Float32Array, scores: Float32Array, y: Float32Array, r: Float32Array, d: Float32Array,
  mask: Uint8Array, prevMask: Uint8Array, rho: number, t: number, ties: number, update: boolean, k0: number, k1: number,
): number {
  let change = 0;
  if (t === t) {
    if (update) {
      for (let k = k0; k < k1; k++) {
        const s = scores[k];
        const eq = +(s === t) & +(ties > 0);
        ties -= eq;
        const m = +(s < t) | eq;
        change += m ^ prevMask[k];
        prevMask[k] = m;
        const dk = z[k] * (1 - m);
        d[k] = dk;
        v[k] = v[k] + rho * (b[k] - dk);
      }
    } else {
      for (let k = k0; k < k1; k++) {
        const s = scores[k];
        const eq = +(s === t) & +(ties > 0);
        ties -= eq;
        const dk = z[k] * (1 - (+(s < t) | eq));
        const vk = (v[k] = Math.fround(v[k] + rho * (b[k] - dk)));
        r[k] = y[k] - vk + rho * dk;
      }
    }
    return change;
  }
  for (let k = k0; k < k1; k++) {
    const m = mask[k];
    const dk = z[k] * (1 - m);
    const vk = (v[k] = Math.fround(v[k] + rho * (b[k] - dk)));
    if (update) {
      change += m ^ prevMask[k];
      prevMask[k] = m;
      d[k] = dk;
    } else {
      r[k] = y[k] - vk + rho * dk;
    }
  }
  return change;
}

/** The B-step's right-hand side r = Y − V + ρD over [k0, k1). */
function rhsPass(y: Float32Array, v: Float32Array, d: Float32Array, r: Float32Array, rho: number, k0: number, k1: number): void {
  for (let k = k0; k < k1; k++) r[k] = y[k] - v[k] + rho * d[k];
}

/**
 * dvPass over the whole matrix, on every core when the pruned ties need no order: when all scores equal
 * to t are pruned (nearly always: one score is t), each range prunes its own; otherwise one range.
 */
async function dvStep(
  b: Float32Array, v: Float32Array, z: Float32Array, scores: Float32Array, y: Float32Array, r: Float32Array, d: Float32Array,
  mask: Uint8Array, prevMask: Uint8Array, rho: number, cut: Cut | null, update: boolean,
): Promise<number> {
  const total = b.length;
  const t = cut ? cut.t : NaN;
  if (cut && cut.ties < cut.equal) return dvPass(b, v, z, scores, y, r, d, mask, prevMask, rho, t, cut.ties, update, 0, total);
  // ties = total: every score equal to t is pruned, whichever range holds it.
  const changes = await across<number>(dvPass, total, [b, v, z, scores, y, r, d, mask, prevMask, rho, t, total, update]);
  return changes.reduce((a, c) => a + c, 0);
}

interface AdmmResult {
  /** The last B iterate (not yet projected). */
  b: Float32Array;
  iterations: number;
  rho: number;
  restarts: number;
}

/** Steps 2–3. */
async function runAdmm(b0: Float32Array, y: Float32Array, hn: Float32Array, n: number, rows: number, proj: Projector, rho0: number, maxIter: number, arrays: WorkArrays, inverses: InverseCache): Promise<AdmmResult> {
  const total = rows * n;
  const { updateIter, switchIter, rhoMax } = ALPS_DEFAULTS;
  const work = arrays.f64('work', n * n);
  const inv = arrays.f32('inv', n * n);
  let rho = rho0;
  const ws = arrays.f64('inverse.scratch', inverseScratch(n));
  // The factorisation's scratch, held from the first inverse on (otherwise the first is served by
  // throwaway allocations, fresh pages twice per layer).
  scratch64.reserve(factorScratch(n));
  const cache = inverses.of(hn);
  const invert = async () => {
    const kept = cache.get(rho);
    if (kept) inv.set(kept);
    else {
      await shiftedInverse(hn, n, rho, work, ws, inv);
      cache.keep(rho, inv);
    }
  };
  await invert();

  // The passes run on every core and read and write shared arrays; the product reads r and writes b,
  // plain arrays (onnxruntime-node refuses shared ones), copied from and to their shared twins.
  const yS = arrays.sharedF32('y', total);
  yS.set(y); // first: y may be b's array
  const b = arrays.f32('b', total);
  b.set(b0);
  const r = arrays.f32('r', total); // the B-step's right-hand side Y − V + ρD
  const bS = arrays.sharedF32('b', total);
  const rS = arrays.sharedF32('r', total);
  const v = arrays.sharedF32('v', total);
  v.fill(0);
  const z = arrays.sharedF32('z', total); // the D-step's input (V + ρB)/ρ
  const d = arrays.sharedF32('d', total);
  proj.project(b0, d);
  const dInit = arrays.f32('dInit', total);
  dInit.set(d);
  const prevMask = arrays.sharedU8('prevMask', total);
  prevMask.set(proj.mask);
  const mask = proj.mask;
  const rhs = async () => {
    await across(rhsPass, total, [yS, v, d, rS, rho]);
    r.set(rS);
  };
  await rhs();
  let raised = false;
  let restarts = 0;
  let it = 0;
  try {
    while (it < maxIter) {
      await matmul(r, [rows, n], inv, [n, n], { out: b });
      bS.set(b);
      await proj.scoreAdmm(bS, v, rho, z);
      const cut = proj.cut();
      it++;
      const update = it % updateIter === 0;
      const change = await dvStep(bS, v, z, proj.scores, yS, rS, d, mask, prevMask, rho, cut, update);
      if (!update) {
        r.set(rS);
        continue;
      }

      const ratio = change / proj.k;
      if (ratio > 0.1) {
        raised = true;
        rho *= 1.3;
      } else if (ratio > 0.005) {
        raised = true;
        rho *= 1.2;
      } else if (change > 0) {
        if (raised) rho *= 1.1;
        else {
          rho /= 5;
          b.set(b0);
          d.set(dInit);
          v.fill(0);
          restarts++;
        }
      } else if (raised) {
        break;
      } else {
        rho /= 5;
      }
      rho = Math.min(rho, rhoMax);
      if (it >= maxIter) break;
      // The reference forms the next inverse before this test; it is not used once the loop stops.
      if (it - 1 >= switchIter && ratio < 0.0003) break;
      await invert();
      await rhs();
    }
  } finally {
    releaseScratch();
  }
  return { b, iterations: it, rho, restarts };
}
