/**
 * --refine: after any method has chosen a layer's mask, re-solve each row's surviving weights to minimise
 * the layer reconstruction error on H = (2/N) Σ XᵀX, towards the dense weights (pcg.ts: ALPS's final PCG
 * step, with its defaults). The mask does not change, so N:M patterns and the sparsity hold; the
 * error can only fall from the method's (CG starts at the method's weights and never raises it).
 * With --wbits the refined weights are rounded onto the grid afterwards (round to nearest, quant/block.ts),
 * which also undoes SparseGPT's joint quantization.
 */
import type { Weight } from './spec.js';
import type { LayerInput } from './layer-input.js';
import { PCG_ITERATIONS, PCG_TOLERANCE, pcgRefine } from './pcg.js';

/** What refine reports per layer (shears-report.json). */
export interface RefineReport {
  /** PCG steps run (at most `REFINE_SETTINGS.iterations`). */
  iterations: number;
  /** Rows that met the tolerance. */
  converged: number;
  /** Largest relative residual ‖r_S‖/‖b_S‖ over the rows at the end. */
  residual: number;
  /** ‖(W − Ŵ)X‖² (scaled like H) before and after. */
  errorBefore: number;
  errorAfter: number;
  seconds: number;
}

/** Fixed, reported in shears-report.json's options. */
export const REFINE_SETTINGS = { iterations: PCG_ITERATIONS, tolerance: PCG_TOLERANCE } as const;

/** Refines `w` (pruned, in place) towards `dense` on `input`'s H, ridge damp · mean(diag H). */
export async function refineLayer(w: Weight, dense: Float32Array, input: LayerInput, damp: number): Promise<RefineReport> {
  const t = performance.now();
  const h = input.gram();
  const n = w.cols;
  let mean = 0;
  for (let j = 0; j < n; j++) mean += h[j * n + j];
  mean /= n;
  const r = await pcgRefine(h, n, dense, w.data, w.rows, { ...REFINE_SETTINGS, ridge: damp * mean });
  return {
    iterations: r.iterations, converged: r.converged, residual: r.residual,
    errorBefore: r.errorBefore, errorAfter: r.errorAfter, seconds: (performance.now() - t) / 1000,
  };
}
