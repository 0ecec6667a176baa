/**
 * Before any work: every tensor the config implies is in the checkpoint, and every prunable linear has
 * the [out, in] shape the config implies. Only headers are read, so a checkpoint that disagrees with its
 * config.json (a wrong hidden size, a layer count larger than the weights, a transposed matrix) fails in
 * milliseconds instead of at block 17 of a multi-hour run. Norms and biases are checked by count when
 * their block runs (runtime.ts weightFeed).
 */
import { fileError, preview } from '../errors.js';
import type { Architecture, TensorSource } from './types.js';

export function checkTensorsAgainstConfig(
  arch: Architecture,
  src: Pick<TensorSource, 'has' | 'shape'>,
  where: { dir: string; fileOf(name: string): string },
): void {
  const L = arch.spec.numLayers;
  const need = (name: string, what: string): void => {
    if (!src.has(name)) throw fileError(where.dir, `has no tensor ${preview(name)}, which config.json implies (${what})`);
  };
  for (const n of arch.embedTensors()) need(n, 'embeddings');
  for (const n of arch.headTensors()) need(n, 'final norm / LM head');
  for (let b = 0; b < L; b++) {
    for (const n of arch.blockTensors(b)) need(n, `block ${b} of num_hidden_layers = ${L}`);
    for (const l of arch.linears(b)) {
      const shape = src.shape(l.tensor);
      const want = l.part ? l.part.storedShape : l.transposed ? [l.cols, l.rows] : [l.rows, l.cols];
      if (shape.length !== want.length || shape.some((d, k) => d !== want[k])) {
        throw fileError(
          where.fileOf(l.tensor),
          `tensor ${preview(l.tensor)} has shape [${shape.join(', ')}], but config.json implies [${want.join(', ')}] for ${l.name} of block ${b} (hidden_size ${arch.spec.hiddenSize}, intermediate ${arch.spec.intermediateSize}, ${arch.spec.numHeads} heads of ${arch.spec.headDim})`,
        );
      }
    }
  }
}
