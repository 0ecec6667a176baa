/**
 * Which tensors the compressed formats compress: the 2-D linear weights inside the decoder blocks (what
 * shears prunes), as the architecture adapter names them. Everything else — embeddings, norms, biases,
 * the LM head — is stored unchanged.
 */
import { join } from 'node:path';
import { architectureFor } from '../arch/registry.js';
import type { Family } from '../arch/types.js';
import type { Checkpoint } from '../io/checkpoint.js';

export interface Target {
  /** Tensor name, e.g. "model.layers.0.mlp.down_proj.weight". */
  tensor: string;
  /** Stored as [in, out] (GPT-2 Conv1D): its output channels are the stored columns. */
  transposed: boolean;
}

export interface Targets {
  family: Family;
  byName: Map<string, Target>;
}

export function targetsOf(ckpt: Checkpoint): Targets {
  const arch = architectureFor(ckpt.config, join(ckpt.dir, 'config.json'), ckpt);
  const byName = new Map<string, Target>();
  for (let b = 0; b < arch.spec.numLayers; b++) {
    for (const l of arch.linears(b)) {
      if (ckpt.has(l.tensor) && ckpt.info(l.tensor).shape.length === 2) byName.set(l.tensor, { tensor: l.tensor, transposed: l.transposed });
    }
  }
  return { family: arch.spec.family, byName };
}

/** The module name of a weight tensor, as compressed-tensors' `ignore` lists it. */
export function moduleOf(tensor: string): string {
  return tensor.endsWith('.weight') ? tensor.slice(0, -'.weight'.length) : tensor;
}

/** The LM head's module name, which is a Linear that the formats never compress. */
export function headModule(family: Family): string {
  return family === 'gpt_neox' ? 'embed_out' : 'lm_head';
}
