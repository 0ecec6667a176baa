/** Opening a model for shears' commands: checkpoint + family adapter (+ tokenizer on demand). */
import { Checkpoint } from './io/checkpoint.js';
import { architectureFor } from './arch/registry.js';
import type { Architecture, TensorSource } from './arch/types.js';
import { join } from 'node:path';

export interface OpenModel {
  ckpt: Checkpoint;
  arch: Architecture;
  /** The checkpoint as the tensor source the runners read from. */
  src: TensorSource;
}

export async function openModel(ref: string, command?: string): Promise<OpenModel> {
  const ckpt = await Checkpoint.open(ref, { command });
  const arch = architectureFor(ckpt.config, join(ckpt.dir, 'config.json'));
  const src: TensorSource = {
    has: (n) => ckpt.has(n),
    shape: (n) => ckpt.info(n).shape,
    readFloat32: (n) => ckpt.readFloat32(n),
  };
  return { ckpt, arch, src };
}
