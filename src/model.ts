/** Opening a model for shears' commands: checkpoint + family adapter (+ tokenizer on demand). */
import { Checkpoint } from './io/checkpoint.js';
import { architectureFor } from './arch/registry.js';
import { checkTensorsAgainstConfig } from './arch/check-tensors.js';
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
  try {
    // The checkpoint is passed so that adapters can detect naming variants (GPT-2 without "transformer.").
    const arch = architectureFor(ckpt.config, join(ckpt.dir, 'config.json'), ckpt);
    const src: TensorSource = {
      has: (n) => ckpt.has(n),
      shape: (n) => ckpt.info(n).shape,
      readFloat32: (n) => ckpt.readFloat32(n),
      readFloat32Range: (n, start, count) => ckpt.readFloat32Range(n, start, count),
    };
    checkTensorsAgainstConfig(arch, src, { dir: ckpt.dir, fileOf: (n) => ckpt.info(n).file });
    return { ckpt, arch, src };
  } catch (e) {
    ckpt.close();
    throw e;
  }
}
