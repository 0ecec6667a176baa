/**
 * The arithmetic of structured removal on one output projection (down_proj / fc2 for MLP channels,
 * o_proj for attention heads): choose whole groups of input columns to remove, then re-solve the kept
 * columns (and the bias, where the layer has one) so that the layer's output on the calibration inputs
 * changes as little as possible.
 *
 * Inputs are seen augmented with a constant 1 (x̃ = [x, 1]): its row/column of the Gram matrix holds the
 * activation means, which FLAP's bias compensation uses. A layer with a bias re-solves it as one more
 * kept column of that constant input (the least-squares generalisation of FLAP's b += W_R·mean(x_R));
 * a layer without one (Llama) leaves it out.
 *
 * Re-solve (OBS group compensation, damped): W'_S = W_S + W_R·G_RS·(G_SS + λI)⁻¹, the minimiser of
 * ‖(W − W')X̃‖² + λ‖W'_S − W_S‖² with W'_R = 0. λ = damp · mean(diag G_SS), as SparseGPT damps H.
 *
 * Criteria (per group of columns):
 *  - magnitude: Σ‖W_j‖² over the group's weights in every layer it touches (no data; the baseline);
 *  - wanda: Σ_j ‖W_j‖²·s_j, s_j = E[x_j²] (Wanda-sp), or Var(x_j) where a bias absorbs the mean (FLAP's
 *    fluctuation metric);
 *  - sparsegpt: OBS saliency tr(W'_g·[(G_SS+λ)⁻¹]_gg⁻¹·W'_gᵀ), removed over several rounds with the
 *    inverse and the compensated weights recomputed between rounds (ZipLM-style greedy removal).
 */
import { GramAccumulator } from '../prune/stats.js';
import { invertSpd, matmul } from '../engine/linalg.js';

export type StructuredCriterion = 'magnitude' | 'wanda' | 'sparsegpt';

/** E[x̃x̃ᵀ] per token of an input of width n, augmented with a constant 1: [(n+1)²], float64. */
export class AugmentedGram {
  private readonly acc: GramAccumulator;
  private scratch = new Float32Array(0);
  constructor(readonly n: number) {
    this.acc = new GramAccumulator(n + 1);
  }

  async add(x: Float32Array, tokens: number, sequences: number): Promise<void> {
    const n = this.n;
    const w = n + 1;
    if (this.scratch.length < tokens * w) this.scratch = new Float32Array(tokens * w);
    const a = this.scratch.subarray(0, tokens * w);
    for (let t = 0; t < tokens; t++) {
      a.set(x.subarray(t * n, (t + 1) * n), t * w);
      a[t * w + n] = 1;
    }
    await this.acc.add(a, tokens, sequences);
  }

  get tokens(): number {
    return this.acc.tokens;
  }

  /** G = (1/tokens) Σ x̃x̃ᵀ in float64 (the accumulator's (2/N)·Σ, widened in place and rescaled). Once. */
  async result(): Promise<Float64Array> {
    await this.acc.finish(); // the last stacked rows go into the sum
    const scale = this.acc.tokens > 0 ? this.acc.sequences / (2 * this.acc.tokens) : 0;
    const g = this.acc.takeFloat64();
    for (let k = 0; k < g.length; k++) g[k] *= scale;
    return g;
  }
}

/** An output projection seen as nn.Linear: W [rows, n] row-major, optional bias [rows]. */
export interface Projection {
  w: Float32Array;
  rows: number;
  n: number;
  bias?: Float32Array;
}

/**
 * Which groups may be removed together: `groups[g]` lists the input columns of group g; each partition
 * (e.g. the query heads of one KV group) loses exactly `removePer` of its groups.
 */
export interface GroupLayout {
  groups: number[][];
  partitions: number[][];
  removePer: number;
}

export interface RemovalOptions {
  criterion: StructuredCriterion;
  /** Re-solve the kept columns (false: plain removal, the magnitude baseline). */
  compensate: boolean;
  damp: number;
  /** Σ‖·‖² of each group's weights in the other layers it touches (gate/up rows, q/k/v rows): magnitude. */
  otherNorms?: Float64Array;
  /** Removal rounds of the OBS criterion (default 8). */
  rounds?: number;
}

export interface RemovalResult {
  /** Removed group indices, ascending. */
  removed: number[];
  /** Kept input columns, ascending. */
  keptCols: number[];
  /** New W [rows, keptCols.length] and bias. */
  w: Float32Array;
  bias?: Float32Array;
  /** ‖(W − W')x̃‖² per token on the calibration inputs (when G was given). */
  loss?: number;
}

/** Chooses the groups to remove and returns the reduced (re-solved) projection. G is the AugmentedGram result. */
export async function removeGroups(p: Projection, layout: GroupLayout, g: Float64Array | undefined, o: RemovalOptions): Promise<RemovalResult> {
  const { rows, n } = p;
  const hasBias = p.bias !== undefined;
  if (o.criterion !== 'magnitude' && !g) throw new Error(`${o.criterion} needs the Gram matrix of the inputs`);
  const removedSet = new Set<number>();
  const rounds = o.criterion === 'sparsegpt' ? Math.max(1, Math.min(o.rounds ?? 8, layout.removePer)) : 1;
  for (let r = 0; r < rounds; r++) {
    // Each partition loses its share of what is left to remove this round.
    const target = Math.ceil((layout.removePer * (r + 1)) / rounds);
    const alive = layout.groups.map((_, k) => !removedSet.has(k));
    let scores: Float64Array;
    if (o.criterion === 'sparsegpt') {
      const kept = keptColumns(layout, removedSet, n);
      const solved = await solveKept(p, kept, g!, o.damp, hasBias);
      scores = obsScores(layout, solved.full, rows, n, kept, solved.ainv, alive);
    } else {
      scores = simpleScores(layout, p, g, o, hasBias);
    }
    for (const part of layout.partitions) {
      const have = part.filter((k) => removedSet.has(k)).length;
      const cands = part.filter((k) => !removedSet.has(k)).sort((a, b) => scores[a] - scores[b] || a - b);
      for (const k of cands.slice(0, target - have)) removedSet.add(k);
    }
  }
  const removed = [...removedSet].sort((a, b) => a - b);
  const keptCols = keptColumns(layout, removedSet, n);
  let w: Float32Array;
  let bias = p.bias;
  if (o.compensate) {
    const solved = await solveKept(p, keptCols, g!, o.damp, hasBias);
    w = gatherCols(solved.full, rows, n, keptCols);
    bias = solved.bias;
  } else {
    w = gatherCols(p.w, rows, n, keptCols);
  }
  const loss = g ? await reconstructionLoss(p, { w, bias }, keptCols, g) : undefined;
  return { removed, keptCols, w, bias, loss };
}

/** Input columns outside the removed groups, ascending. */
function keptColumns(layout: GroupLayout, removed: Set<number>, n: number): number[] {
  const gone = new Uint8Array(n);
  for (const k of removed) for (const c of layout.groups[k]) gone[c] = 1;
  const kept: number[] = [];
  for (let c = 0; c < n; c++) if (!gone[c]) kept.push(c);
  return kept;
}

function gatherCols(w: Float32Array, rows: number, n: number, cols: number[]): Float32Array {
  const k = cols.length;
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) out[r * k + j] = w[r * n + cols[j]];
  return out;
}

/** Per-group magnitude or Wanda-sp/FLAP score (smaller = removed first). */
function simpleScores(layout: GroupLayout, p: Projection, g: Float64Array | undefined, o: RemovalOptions, hasBias: boolean): Float64Array {
  const { rows, n, w } = p;
  const colNorm = new Float64Array(n);
  for (let r = 0; r < rows; r++) for (let c = 0; c < n; c++) colNorm[c] += w[r * n + c] * w[r * n + c];
  const scores = new Float64Array(layout.groups.length);
  const N = n + 1;
  for (const [k, cols] of layout.groups.entries()) {
    let s = 0;
    for (const c of cols) {
      if (o.criterion === 'magnitude') s += colNorm[c];
      else {
        const second = g![c * N + c];
        const mean = g![c * N + n];
        s += colNorm[c] * (hasBias ? Math.max(0, second - mean * mean) : second);
      }
    }
    if (o.criterion === 'magnitude' && o.otherNorms) s += o.otherNorms[k];
    scores[k] = s;
  }
  return scores;
}

/** OBS saliency of each alive group over the current kept set (ainv = (G_SS+λ)⁻¹ over kept ∪ {bias}). */
function obsScores(layout: GroupLayout, full: Float32Array, rows: number, n: number, kept: number[], ainv: Float64Array, alive: boolean[]): Float64Array {
  const k = ainv.length === 0 ? 0 : Math.round(Math.sqrt(ainv.length));
  const pos = new Int32Array(n).fill(-1);
  kept.forEach((c, i) => (pos[c] = i));
  const scores = new Float64Array(layout.groups.length).fill(Infinity);
  for (const [gi, cols] of layout.groups.entries()) {
    if (!alive[gi]) continue;
    const idx = cols.map((c) => pos[c]);
    const d = idx.length;
    // [A⁻¹]_gg (d×d) inverted by Gauss-Jordan in float64 (d is 1 for a channel, head_dim for a head).
    const m = new Float64Array(d * d);
    for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) m[a * d + b] = ainv[idx[a] * k + idx[b]];
    const inv = smallInverse(m, d);
    let s = 0;
    const wg = new Float64Array(d);
    for (let r = 0; r < rows; r++) {
      for (let a = 0; a < d; a++) wg[a] = full[r * n + cols[a]];
      for (let a = 0; a < d; a++) {
        let t = 0;
        for (let b = 0; b < d; b++) t += inv[a * d + b] * wg[b];
        s += wg[a] * t;
      }
    }
    scores[gi] = s;
  }
  return scores;
}

/** Inverse of a small symmetric positive definite matrix (Gauss-Jordan with partial pivoting), float64. */
export function smallInverse(a: Float64Array, d: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(d * d);
  for (let i = 0; i < d; i++) inv[i * d + i] = 1;
  for (let c = 0; c < d; c++) {
    let piv = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(m[r * d + c]) > Math.abs(m[piv * d + c])) piv = r;
    if (piv !== c) {
      for (let j = 0; j < d; j++) {
        [m[c * d + j], m[piv * d + j]] = [m[piv * d + j], m[c * d + j]];
        [inv[c * d + j], inv[piv * d + j]] = [inv[piv * d + j], inv[c * d + j]];
      }
    }
    const v = m[c * d + c] || 1e-300;
    for (let j = 0; j < d; j++) {
      m[c * d + j] /= v;
      inv[c * d + j] /= v;
    }
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = m[r * d + c];
      if (f === 0) continue;
      for (let j = 0; j < d; j++) {
        m[r * d + j] -= f * m[c * d + j];
        inv[r * d + j] -= f * inv[c * d + j];
      }
    }
  }
  return inv;
}

/**
 * The damped least-squares re-solve over `kept` (plus the bias column when the layer has one), starting
 * from the original weights. Returns W' over all n columns (removed columns as they were: callers drop
 * them), the new bias, and (G_SS + λI)⁻¹ for the OBS scores.
 */
async function solveKept(p: Projection, kept: number[], g: Float64Array, damp: number, hasBias: boolean): Promise<{ full: Float32Array; bias?: Float32Array; ainv: Float64Array }> {
  const { rows, n, w } = p;
  const N = n + 1;
  const S = hasBias ? [...kept, n] : kept;
  const keptSet = new Uint8Array(N);
  for (const c of S) keptSet[c] = 1;
  const R: number[] = [];
  for (let c = 0; c < n; c++) if (!keptSet[c]) R.push(c);
  const k = S.length;
  const a = new Float64Array(k * k);
  let diag = 0;
  for (let i = 0; i < k; i++) diag += g[S[i] * N + S[i]];
  const lambda = damp * (diag / Math.max(1, k)) || 1e-8;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) a[i * k + j] = g[S[i] * N + S[j]];
    a[i * k + i] += lambda;
  }
  const ainv = await invertSpd(a, k);
  const full = Float32Array.from(w);
  let bias = p.bias ? Float32Array.from(p.bias) : undefined;
  if (R.length > 0 && k > 0) {
    // B = W_R · G_RS  [rows, k], then ΔW_S = B · A⁻¹  [rows, k]: two engine products in float32.
    const wr = new Float32Array(rows * R.length);
    for (let r = 0; r < rows; r++) for (let j = 0; j < R.length; j++) wr[r * R.length + j] = w[r * n + R[j]];
    const grs = new Float32Array(R.length * k);
    for (let i = 0; i < R.length; i++) for (let j = 0; j < k; j++) grs[i * k + j] = g[R[i] * N + S[j]];
    const b = await matmul(wr, [rows, R.length], grs, [R.length, k]);
    const delta = await matmul(b, [rows, k], Float32Array.from(ainv), [k, k]);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < kept.length; j++) full[r * n + S[j]] += delta[r * k + j];
      if (bias) bias[r] += delta[r * k + k - 1];
    }
  }
  return { full, bias, ainv };
}

/**
 * ‖(W − W')x̃‖² per token, summed over output rows: tr(E·G·Eᵀ) with E = W̃ − W̃' over the augmented
 * columns (removed columns: W'=0; bias column: b − b').
 */
export async function reconstructionLoss(p: Projection, reduced: { w: Float32Array; bias?: Float32Array }, keptCols: number[], g: Float64Array): Promise<number> {
  const { rows, n } = p;
  const N = n + 1;
  const e = new Float32Array(rows * N);
  const k = keptCols.length;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < n; c++) e[r * N + c] = p.w[r * n + c];
    for (let j = 0; j < k; j++) e[r * N + keptCols[j]] -= reduced.w[r * k + j];
    if (p.bias && reduced.bias) e[r * N + n] = p.bias[r] - reduced.bias[r];
  }
  const eg = await matmul(e, [rows, N], Float32Array.from(g), [N, N]);
  let s = 0;
  for (let i = 0; i < e.length; i++) s += eg[i] * e[i];
  return s;
}
