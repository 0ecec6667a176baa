/**
 * What the driver needs to know about a pruning method: the statistic of each layer input it reads, and
 * the function that prunes one layer given that statistic. One object per method file, listed in
 * methods.ts; the driver never switches on a method's name.
 */
import type { PruneResult, SparsitySpec, Weight } from './spec.js';
import type { LayerInput } from './layer-input.js';

/** none: no calibration; column-norms: Wanda's s_j = (1/N) Σ x_j²; gram: H = (2/N) Σ XᵀX. */
export type Statistic = 'none' | 'column-norms' | 'gram';

/** The options a method may read (a subset of the driver's PruneOptions). */
export interface MethodOptions {
  blocksize?: number;
  damp?: number;
  seed?: number;
  wbits?: number;
}

export interface PruneMethod {
  readonly statistic: Statistic;
  /** Prunes `w` in place (nn.Linear orientation). `index` is the layer's position in the run (seeds random). */
  prune(w: Weight, input: LayerInput, spec: SparsitySpec, opts: MethodOptions, index: number): Promise<PruneResult> | PruneResult;
}
