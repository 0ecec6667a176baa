/**
 * The block runner: pushes hidden states for many token windows through one decoder block at a time.
 * Only the block being run has its weights in memory (of an MoE block: its shared parts and one routed
 * expert at a time, see experts.ts); windows go through in micro-batches (micro-batches.ts).
 */
import type { Architecture, CaptureReduce, TensorSource, Weights } from '../arch/types.js';
import { loadWeights, runCalls, type InputsHook } from './micro-batches.js';
import { runRoutedBlockInPlace } from './experts.js';

export { loadWeights, windowsPerCall, type InputsHook } from './micro-batches.js';

/**
 * Runs block i over x ([windows·seq, hidden]) and writes the result to `out` (may be x itself), or drops
 * it when `out` is null (a statistics-only pass). With `onInputs`, each micro-batch's linear inputs are
 * handed over before the next batch runs; with `reduce`, reduced in the graph when the architecture can
 * (the hook's `reduced` says which it got).
 */
export function runBlockOver(
  arch: Architecture,
  i: number,
  w: Weights,
  x: Float32Array,
  seq: number,
  out: Float32Array | null,
  onInputs?: InputsHook,
  reduce?: CaptureReduce,
): Promise<void> {
  return runCalls(arch, (xs, capture, target) => arch.runBlock(i, w, xs, seq, capture, target, reduce), x, seq, out, onInputs);
}

export interface ForwardHooks {
  /** Called after block i has run over every window. */
  onBlock?: (i: number, seconds: number) => void;
}

/** Hidden states leaving the last block for windows `ids` ([windows·seq]); loads one block at a time. */
export async function forwardHidden(arch: Architecture, src: TensorSource, ids: Int32Array, seq: number, hooks: ForwardHooks = {}): Promise<Float32Array> {
  const x = await arch.embed(loadWeights(src, arch.embedTensors()), ids, seq);
  for (let i = 0; i < arch.spec.numLayers; i++) {
    const t0 = performance.now();
    await runBlockInPlace(arch, i, src, x, seq);
    hooks.onBlock?.(i, (performance.now() - t0) / 1000);
  }
  return x;
}

/** Block i over x in place, its weights read from src: whole, or (MoE) its routed experts one at a time. */
export async function runBlockInPlace(arch: Architecture, i: number, src: TensorSource, x: Float32Array, seq: number): Promise<void> {
  const routed = arch.routed;
  if (routed && routed.count(i) > 0) await runRoutedBlockInPlace(arch, routed, i, src, x, seq);
  else await runBlockOver(arch, i, loadWeights(src, arch.blockTensors(i)), x, seq, x);
}
