/**
 * OWL, outlier-weighed layerwise sparsity (Yin et al. 2024; reference luuyin/OWL lib/prune_all.py,
 * prune_wanda_outlier / prune_sparsegpt_outlier / prune_mag_outlier and check_outlier_mean).
 *
 * Before pruning, the dense model runs over the calibration windows. For each decoder block, the Wanda
 * scores |W_ij| · sqrt(s_j) of all its linear layers (s_j: the layer input's mean squared norm, stats.ts)
 * are pooled; the block's outlier ratio D is the share of those scores above M × their mean
 * (reference: --Hyper_m, default 5 in its scripts). Blocks with more outliers keep more weights:
 *     d_i = (D_i − min D)/(max D − min D) · 2λ,   sparsity_i = S − (d_i − mean d)
 * (reference: all_layer_ratio, --Lamda 0.08), so the mean over blocks is the target S.
 *
 * Deliberate differences:
 *  - The reference's values span exactly 2λ with the mean at S, so a block can land up to 2λ from S
 *    (e.g. one outlier-heavy block among many alike: S − 2λ + 2λ/L). The paper states S_i ∈ [S − λ, S + λ];
 *    we keep that bound by shrinking the deviations d_i − mean d by λ / max|d_i − mean d| when that
 *    exceeds λ. The map stays affine in D and the mean stays S; when the deviations already fit (a
 *    symmetric spread of D), the result is the reference's.
 *  - max D = min D (the reference divides by zero and gets NaN) gives every block S.
 *  - Every linear of the block is pooled, including ones left dense by --skip (the reference has no
 *    --skip and pools all of them); the outlier ratio is a fraction, not a percentage (scale-free here).
 *  - N:M is refused: the reference's N:M mode changes N per block, which breaks the N:M contract.
 */
import { usageError } from '../errors.js';
import { wandaScores } from './wanda.js';
import type { Weight } from './spec.js';

export const OWL_DEFAULT_M = 5;
export const OWL_DEFAULT_LAMBDA = 0.08;

export interface OwlSettings {
  m: number;
  lambda: number;
}

/** What the report records. */
export interface OwlReport extends OwlSettings {
  /** Per block: share of its Wanda scores above M × their mean, on the dense model. */
  outlierRatios: number[];
  /** Per block: the sparsity it was pruned to. */
  sparsities: number[];
}

/** Refuses settings that cannot work: one line, exit 2, before any heavy work. */
export function checkOwl(owl: OwlSettings, target: number): void {
  if (!(Number.isFinite(owl.m) && owl.m > 0)) throw usageError(`--owl-m must be a positive number, got ${owl.m}`);
  if (!(Number.isFinite(owl.lambda) && owl.lambda >= 0)) throw usageError(`--owl-lambda must be a number >= 0, got ${owl.lambda}`);
  if (!(target - owl.lambda > 0 && target + owl.lambda < 1)) {
    throw usageError(`--owl-lambda ${owl.lambda} with --sparsity ${target} allows block sparsities outside (0, 1): choose lambda below ${Math.min(target, 1 - target).toPrecision(3)}`);
  }
}

/**
 * Pooled outlier ratio of one block: `layers` are its weights ([rows, cols], nn.Linear orientation) with
 * the column statistic s_j of each one's input. Scores are float32 like Wanda's; sums are float64.
 */
export function blockOutlierRatio(layers: OwlLayer[], m: number): number {
  const t = new OutlierTally();
  for (const l of layers) t.add(l);
  const threshold = t.threshold(m);
  // Scores are recomputed rather than kept: one layer's scores at a time, not the block's.
  for (const l of layers) t.countAbove(l, threshold);
  return t.ratio();
}

/** A linear layer's weight ([rows, cols], nn.Linear orientation) and its input's column statistic s_j. */
export interface OwlLayer {
  weight: Weight;
  colSq: Float32Array | Float64Array;
}

/**
 * blockOutlierRatio in two passes that the caller drives, so that the layers need not be in memory
 * together (MoE experts are read for each pass): add() every layer, then countAbove() every layer with
 * threshold(m), in the same order for the same result.
 */
export class OutlierTally {
  private sum = 0;
  private count = 0;
  private above = 0;

  add(l: OwlLayer): void {
    const s = wandaScores(l.weight, l.colSq);
    for (let i = 0; i < s.length; i++) this.sum += s[i];
    this.count += s.length;
  }

  /** M × the mean score (Infinity when no score was added). */
  threshold(m: number): number {
    return this.count === 0 ? Infinity : m * (this.sum / this.count);
  }

  countAbove(l: OwlLayer, threshold: number): void {
    const s = wandaScores(l.weight, l.colSq);
    for (let i = 0; i < s.length; i++) if (s[i] > threshold) this.above++;
  }

  ratio(): number {
    return this.count === 0 ? 0 : this.above / this.count;
  }
}

/** Per-block sparsities from the outlier ratios (see the file comment): mean `target`, within target ± lambda. */
export function owlSparsities(ratios: readonly number[], target: number, lambda: number): number[] {
  const lo = Math.min(...ratios), hi = Math.max(...ratios);
  if (!(hi > lo)) return ratios.map(() => target);
  const d = ratios.map((r) => ((r - lo) / (hi - lo)) * 2 * lambda);
  const mean = d.reduce((s, v) => s + v, 0) / d.length;
  const dev = d.map((v) => v - mean);
  const worst = Math.max(...dev.map(Math.abs));
  const shrink = worst > lambda ? lambda / worst : 1;
  return dev.map((v) => target - v * shrink);
}
